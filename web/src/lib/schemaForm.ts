// A settings form generated from a plugin's settings model: pydantic's JSON schema
// (IntegrationOut.settingsSchema) becomes field descriptors, the values a user edits are
// checked here before anything is sent, and `buildChanges` makes the body of
// PUT /integrations/{name}/config — only the fields that changed, `null` to remove a stored
// value, secrets only when a new one was typed (the API never returns them).

/** A JSON schema node, as loosely as pydantic writes them. */
export type JsonSchema = { [keyword: string]: unknown };

export type FieldKind =
  | "string"
  | "integer"
  | "number"
  | "boolean"
  | "enum"
  | "list"
  | "secret"
  | "json";

export type EnumValue = string | number | boolean;

export interface FieldDescriptor {
  /** the setting's own name (the key in settings and in the PUT body) */
  name: string;
  /** sentence-case label */
  label: string;
  description: string | null;
  kind: FieldKind;
  /** `null` is a valid value (anyOf [T, null]) */
  nullable: boolean;
  /** in the schema's `required`: no default to fall back to */
  required: boolean;
  hasDefault: boolean;
  default: unknown;
  /** the choices of an enum (a select) */
  options: EnumValue[];
  /** the item type of a list */
  itemKind: "string" | "integer" | "number";
  format: string | null;
  minimum: number | null;
  maximum: number | null;
  exclusiveMinimum: number | null;
  exclusiveMaximum: number | null;
  minLength: number | null;
  maxLength: number | null;
  pattern: string | null;
}

/**
 * What the form holds while the user edits: text for text-like inputs (numbers and lists
 * included, parsed on save), booleans for checkboxes, the option's key for selects
 * (`optionKey`, "" for none). A secret's text is the new value to store ("" keeps it).
 */
export type FormValues = Record<string, string | boolean>;
/** For secret fields: the user asked to remove the stored value. */
export type FormClears = Record<string, boolean>;

// -- reading the schema -----------------------------------------------------------------

const ACRONYMS: Record<string, string> = {
  api: "API",
  url: "URL",
  uri: "URI",
  id: "ID",
  ids: "IDs",
  http: "HTTP",
  https: "HTTPS",
  tls: "TLS",
  ssl: "SSL",
  gpu: "GPU",
  gpus: "GPUs",
  cpu: "CPU",
  json: "JSON",
  s3: "S3",
  aws: "AWS",
  gcp: "GCP",
  sdk: "SDK",
  mlflow: "MLflow",
  ca: "CA",
};

/** "api_token" → "API token" (sentence case, known acronyms kept). */
export function labelFor(name: string): string {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .split(/[\s_-]+/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
  return words
    .map((w, i) => ACRONYMS[w] ?? (i === 0 ? w.charAt(0).toUpperCase() + w.slice(1) : w))
    .join(" ");
}

/** pydantic's own title for a field without one: "api_token" → "Api Token". */
function generatedTitle(name: string): string {
  return name
    .split("_")
    .filter(Boolean)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(" ");
}

function isObject(value: unknown): value is JsonSchema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** Follow "#/$defs/X" (or "#/definitions/X") within ``root``. */
function resolveRef(node: JsonSchema, root: JsonSchema, depth = 0): JsonSchema {
  const ref = node.$ref;
  if (typeof ref !== "string" || depth > 10) return node;
  const match = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
  const defs = match ? root[match[1] as string] : undefined;
  const target = match && isObject(defs) ? defs[decodeURIComponent(match[2] as string)] : undefined;
  if (!isObject(target)) return node;
  // keywords beside the $ref (default, description, title) win over the definition's
  const { $ref: _ignored, ...siblings } = node;
  return { ...resolveRef(target, root, depth + 1), ...siblings };
}

/** A node with its $ref and one-element allOf (older pydantic) resolved. */
function expand(node: JsonSchema, root: JsonSchema): JsonSchema {
  let current = resolveRef(node, root);
  const allOf = current.allOf;
  if (Array.isArray(allOf) && allOf.length === 1 && isObject(allOf[0])) {
    const { allOf: _ignored, ...rest } = current;
    current = { ...expand(allOf[0], root), ...rest };
  }
  return current;
}

function isNullSchema(node: JsonSchema): boolean {
  return node.type === "null" || (Array.isArray(node.enum) && node.enum.length === 1 && node.enum[0] === null);
}

export function isSecretSchema(node: JsonSchema): boolean {
  return node.format === "password" && node.writeOnly === true;
}

/** One property of the settings model. */
export function describeField(
  name: string,
  property: JsonSchema,
  root: JsonSchema,
  required: boolean,
): FieldDescriptor {
  const outer = expand(property, root);
  let node = outer;
  let nullable = false;
  const union = outer.anyOf ?? outer.oneOf;
  if (Array.isArray(union)) {
    const branches = union.filter(isObject).map((b) => expand(b, root));
    const nonNull = branches.filter((b) => !isNullSchema(b));
    nullable = nonNull.length < branches.length;
    if (nonNull.length === 1) {
      const { anyOf: _a, oneOf: _o, ...rest } = outer;
      node = { ...(nonNull[0] as JsonSchema), ...rest };
    } else {
      node = { ...outer, type: "json-union" };
    }
  }
  let type = node.type;
  if (Array.isArray(type)) {
    // ["string", "null"]
    nullable = nullable || type.includes("null");
    const others = type.filter((t) => t !== "null");
    type = others.length === 1 ? others[0] : "json-union";
  }
  const title = typeof property.title === "string" ? property.title : typeof node.title === "string" ? node.title : null;
  const label = title && title !== generatedTitle(name) ? title : labelFor(name);
  const description =
    typeof property.description === "string"
      ? property.description
      : typeof outer.description === "string"
        ? outer.description
        : null;
  const hasDefault = "default" in property || "default" in outer;
  const field: FieldDescriptor = {
    name,
    label,
    description,
    kind: "json",
    nullable,
    required: required && !hasDefault,
    hasDefault,
    default: "default" in property ? property.default : outer.default,
    options: [],
    itemKind: "string",
    format: typeof node.format === "string" ? node.format : null,
    minimum: num(node.minimum),
    maximum: num(node.maximum),
    exclusiveMinimum: num(node.exclusiveMinimum),
    exclusiveMaximum: num(node.exclusiveMaximum),
    minLength: num(node.minLength),
    maxLength: num(node.maxLength),
    pattern: typeof node.pattern === "string" ? node.pattern : null,
  };
  const enumValues = Array.isArray(node.enum)
    ? node.enum
    : "const" in node
      ? [node.const]
      : null;
  if (isSecretSchema(node)) {
    field.kind = "secret";
  } else if (enumValues) {
    const options = enumValues.filter(
      (v): v is EnumValue => typeof v === "string" || typeof v === "number" || typeof v === "boolean",
    );
    if (enumValues.includes(null)) field.nullable = true;
    field.kind = "enum";
    field.options = options;
  } else if (type === "boolean") {
    if (nullable) {
      // three states (unset, yes, no) need a select, not a checkbox
      field.kind = "enum";
      field.options = [true, false];
    } else {
      field.kind = "boolean";
    }
  } else if (type === "integer" || type === "number" || type === "string") {
    field.kind = type;
  } else if (type === "array") {
    const items = isObject(node.items) ? expand(node.items, root) : {};
    const itemType = items.type;
    if (itemType === "string" || itemType === "integer" || itemType === "number") {
      field.kind = "list";
      field.itemKind = itemType;
      if (Array.isArray(items.enum)) {
        field.options = items.enum.filter((v): v is EnumValue => typeof v === "string" || typeof v === "number");
      }
    }
  }
  return field;
}

/** The fields of a settings model's JSON schema, in the model's order. */
export function describeSchema(schema: JsonSchema | null | undefined): FieldDescriptor[] {
  if (!schema) return [];
  const root = expand(schema, schema);
  const properties = isObject(root.properties) ? root.properties : {};
  const required = new Set(Array.isArray(root.required) ? root.required.filter((r) => typeof r === "string") : []);
  return Object.entries(properties)
    .filter((entry): entry is [string, JsonSchema] => isObject(entry[1]))
    .map(([name, property]) => describeField(name, property, schema, required.has(name)));
}

/** Whether a field is secret: the schema says so, or the API lists it in secretsSet. */
export function markSecrets(fields: FieldDescriptor[], secretsSet: Record<string, boolean>): FieldDescriptor[] {
  return fields.map((f) => (f.kind !== "secret" && f.name in secretsSet ? { ...f, kind: "secret" } : f));
}

// -- values ----------------------------------------------------------------------------

/** The select's value for an enum option (keeps 1 and "1" apart). */
export function optionKey(value: EnumValue): string {
  return JSON.stringify(value);
}

export function optionLabel(value: EnumValue): string {
  if (value === true) return "Yes";
  if (value === false) return "No";
  return String(value);
}

/** The form's starting text for one current value. */
export function toFormValue(field: FieldDescriptor, value: unknown): string | boolean {
  switch (field.kind) {
    case "secret":
      return ""; // never prefilled: the API does not return it, and a new one replaces it
    case "boolean":
      return value === true;
    case "enum":
      return value === null || value === undefined ? "" : optionKey(value as EnumValue);
    case "list":
      return Array.isArray(value) ? value.map(String).join(", ") : "";
    case "json":
      return value === null || value === undefined ? "" : JSON.stringify(value, null, 2);
    default:
      return value === null || value === undefined ? "" : String(value);
  }
}

/** The form's values for the current settings (a setting the API left out: its default). */
export function initialValues(fields: FieldDescriptor[], settings: Record<string, unknown>): FormValues {
  const values: FormValues = {};
  for (const field of fields) {
    const current = field.name in settings ? settings[field.name] : field.default;
    values[field.name] = toFormValue(field, current);
  }
  return values;
}

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

const INTEGER = /^[+-]?\d+$/;

function parseNumber(field: FieldDescriptor, text: string, integer: boolean): Parsed {
  if (integer ? !INTEGER.test(text) : !Number.isFinite(Number(text))) {
    return { ok: false, error: integer ? "Enter a whole number." : "Enter a number." };
  }
  const n = Number(text);
  if (field.minimum !== null && n < field.minimum) return { ok: false, error: `At least ${field.minimum}.` };
  if (field.maximum !== null && n > field.maximum) return { ok: false, error: `At most ${field.maximum}.` };
  if (field.exclusiveMinimum !== null && n <= field.exclusiveMinimum) {
    return { ok: false, error: `More than ${field.exclusiveMinimum}.` };
  }
  if (field.exclusiveMaximum !== null && n >= field.exclusiveMaximum) {
    return { ok: false, error: `Less than ${field.exclusiveMaximum}.` };
  }
  return { ok: true, value: n };
}

function checkString(field: FieldDescriptor, text: string): string | null {
  if (field.minLength !== null && text.length < field.minLength) {
    return `At least ${field.minLength} character${field.minLength === 1 ? "" : "s"}.`;
  }
  if (field.maxLength !== null && text.length > field.maxLength) {
    return `At most ${field.maxLength} characters.`;
  }
  if (field.pattern !== null) {
    let re: RegExp | null = null;
    try {
      re = new RegExp(field.pattern, "u");
    } catch {
      re = null; // a Python-only pattern: the platform checks it
    }
    if (re && !re.test(text)) return `Does not match the expected format (${field.pattern}).`;
  }
  return null;
}

/** What an empty input means: null (remove the stored value, so the default applies). */
function emptyValue(field: FieldDescriptor): Parsed {
  if (field.required) return { ok: false, error: "Required." };
  return { ok: true, value: null };
}

/** The value a field's input stands for, or why it is not valid. Not for secrets. */
export function parseValue(field: FieldDescriptor, raw: string | boolean | undefined): Parsed {
  if (field.kind === "boolean") return { ok: true, value: raw === true };
  const text = typeof raw === "string" ? raw : "";
  const trimmed = text.trim();
  switch (field.kind) {
    case "enum": {
      if (text === "") return emptyValue(field);
      const option = field.options.find((o) => optionKey(o) === text);
      return option === undefined ? { ok: false, error: "Choose one of the options." } : { ok: true, value: option };
    }
    case "integer":
    case "number":
      return trimmed === "" ? emptyValue(field) : parseNumber(field, trimmed, field.kind === "integer");
    case "list": {
      const parts = text
        .split(/[,\n]/)
        .map((p) => p.trim())
        .filter(Boolean);
      if (parts.length === 0) {
        if (field.nullable) return emptyValue(field);
        return { ok: true, value: [] };
      }
      const items: unknown[] = [];
      for (const part of parts) {
        if (field.itemKind === "string") {
          if (field.options.length && !field.options.includes(part)) {
            return { ok: false, error: `"${part}" is not one of: ${field.options.join(", ")}.` };
          }
          items.push(part);
        } else {
          const parsed = parseNumber({ ...field, minimum: null, maximum: null, exclusiveMinimum: null, exclusiveMaximum: null }, part, field.itemKind === "integer");
          if (!parsed.ok) return { ok: false, error: `"${part}": ${parsed.error}` };
          items.push(parsed.value);
        }
      }
      return { ok: true, value: items };
    }
    case "json": {
      if (trimmed === "") return emptyValue(field);
      try {
        return { ok: true, value: JSON.parse(trimmed) as unknown };
      } catch {
        return { ok: false, error: "Enter valid JSON." };
      }
    }
    case "secret":
      return { ok: true, value: text === "" ? undefined : text };
    default: {
      if (text === "") return emptyValue(field);
      const problem = checkString(field, text);
      return problem ? { ok: false, error: problem } : { ok: true, value: text };
    }
  }
}

/** The errors of the edited values, keyed by field name (empty when all are valid). */
export function validate(
  fields: FieldDescriptor[],
  values: FormValues,
  clears: FormClears = {},
  secretsSet: Record<string, boolean> = {},
): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const field of fields) {
    const raw = values[field.name];
    if (field.kind === "secret") {
      const typed = typeof raw === "string" ? raw : "";
      if (typed !== "") {
        const problem = checkString(field, typed);
        if (problem) errors[field.name] = problem;
      } else if (field.required && (clears[field.name] || !secretsSet[field.name])) {
        errors[field.name] = "Required.";
      }
      continue;
    }
    const parsed = parseValue(field, raw);
    if (!parsed.ok) errors[field.name] = parsed.error;
  }
  return errors;
}

/** Two settings values are the same (numbers, strings, lists, objects). */
export function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/**
 * The body's `settings` for PUT /integrations/{name}/config: each field whose value
 * differs from the current one (null removes a stored value), a secret only when a new
 * value was typed, or null when the user cleared a stored one. Assumes `validate` passed;
 * invalid fields are left out.
 */
export function buildChanges(
  fields: FieldDescriptor[],
  values: FormValues,
  settings: Record<string, unknown>,
  clears: FormClears = {},
  secretsSet: Record<string, boolean> = {},
): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const field of fields) {
    const raw = values[field.name];
    if (field.kind === "secret") {
      const typed = typeof raw === "string" ? raw : "";
      if (typed !== "") changes[field.name] = typed;
      else if (clears[field.name] && secretsSet[field.name]) changes[field.name] = null;
      continue;
    }
    const parsed = parseValue(field, raw);
    if (!parsed.ok) continue;
    const current = field.name in settings ? settings[field.name] : field.default;
    // an empty input removes the stored value, so the default applies: nothing to send
    // when that is what the setting is now
    const effective = parsed.value === null ? (field.default ?? null) : parsed.value;
    if (!sameValue(effective, current)) changes[field.name] = parsed.value;
  }
  return changes;
}

/** The keys of a 422's field errors mapped to setting names ("settings.root" → "root"). */
export function settingErrors(fieldErrors: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, message] of Object.entries(fieldErrors)) {
    const name = (key.startsWith("settings.") ? key.slice("settings.".length) : key).split(".")[0] ?? key;
    out[name] = out[name] ? `${out[name]}; ${message}` : message;
  }
  return out;
}
