import { describe, expect, it } from "vitest";
import {
  buildChanges,
  describeSchema,
  initialValues,
  labelFor,
  markSecrets,
  optionKey,
  parseValue,
  settingErrors,
  validate,
  type FieldDescriptor,
  type JsonSchema,
} from "./schemaForm";

// The example plugin's settings model, as the API serves it (tests/example_plugin).
const EXAMPLE: JsonSchema = {
  additionalProperties: false,
  properties: {
    root: {
      anyOf: [{ format: "path", type: "string" }, { type: "null" }],
      default: null,
      description: "where runs are kept; the plugin's data dir when unset",
      title: "Root",
    },
    api_token: {
      anyOf: [{ format: "password", type: "string", writeOnly: true }, { type: "null" }],
      default: null,
      description: "unused by the tracker",
      title: "Api Token",
    },
  },
  title: "ExampleSettings",
  type: "object",
};

// The local executor's.
const LOCAL: JsonSchema = {
  properties: {
    max_parallel: { default: 4, maximum: 64, minimum: 1, title: "Max Parallel", type: "integer" },
    kill_grace_seconds: { default: 1.0, maximum: 60, minimum: 0, title: "Kill Grace Seconds", type: "number" },
  },
  type: "object",
};

// Everything else a pydantic settings model may hold.
const RICH: JsonSchema = {
  $defs: {
    Mode: { enum: ["fast", "safe"], title: "Mode", type: "string" },
  },
  properties: {
    endpoint: { title: "Tracking server", type: "string", pattern: "^https?:", minLength: 5 },
    mode: { $ref: "#/$defs/Mode", default: "safe" },
    legacy_mode: { allOf: [{ $ref: "#/$defs/Mode" }], default: "fast" },
    verify_tls: { default: true, title: "Verify Tls", type: "boolean" },
    insecure: { anyOf: [{ type: "boolean" }, { type: "null" }], default: null, title: "Insecure" },
    tags: { items: { type: "string" }, type: "array", title: "Tags", default: [] },
    ports: { items: { type: "integer" }, type: "array", title: "Ports", default: [80] },
    ratio: { exclusiveMinimum: 0, exclusiveMaximum: 1, type: "number", title: "Ratio", default: 0.5 },
    password: { format: "password", type: "string", writeOnly: true, title: "Password" },
    extra: { additionalProperties: { type: "string" }, type: "object", title: "Extra", default: {} },
    level: { const: "debug", title: "Level", default: "debug" },
    region: { anyOf: [{ enum: ["eu", "us"], type: "string" }, { type: "null" }], default: null, title: "Region" },
  },
  required: ["endpoint", "password"],
  type: "object",
};

function field(fields: FieldDescriptor[], name: string): FieldDescriptor {
  const found = fields.find((f) => f.name === name);
  if (!found) throw new Error(`no field ${name}`);
  return found;
}

describe("describeSchema", () => {
  it("reads the example plugin's path and its SecretStr", () => {
    const fields = describeSchema(EXAMPLE);
    expect(fields.map((f) => f.name)).toEqual(["root", "api_token"]);
    const root = field(fields, "root");
    expect(root).toMatchObject({ kind: "string", nullable: true, required: false, label: "Root", format: "path" });
    expect(root.description).toContain("where runs are kept");
    const token = field(fields, "api_token");
    expect(token).toMatchObject({ kind: "secret", nullable: true, label: "API token" });
  });

  it("reads numbers with their bounds and sentence-cases generated titles", () => {
    const fields = describeSchema(LOCAL);
    expect(field(fields, "max_parallel")).toMatchObject({
      kind: "integer",
      label: "Max parallel",
      minimum: 1,
      maximum: 64,
      default: 4,
      hasDefault: true,
      required: false,
    });
    expect(field(fields, "kill_grace_seconds")).toMatchObject({ kind: "number", label: "Kill grace seconds" });
  });

  it("resolves $ref and allOf into $defs, enums, const, lists, nullable booleans and objects", () => {
    const fields = describeSchema(RICH);
    expect(field(fields, "endpoint")).toMatchObject({ kind: "string", label: "Tracking server", required: true, minLength: 5 });
    expect(field(fields, "mode")).toMatchObject({ kind: "enum", options: ["fast", "safe"], default: "safe", label: "Mode" });
    expect(field(fields, "legacy_mode")).toMatchObject({ kind: "enum", options: ["fast", "safe"], default: "fast" });
    expect(field(fields, "verify_tls")).toMatchObject({ kind: "boolean", label: "Verify TLS" });
    expect(field(fields, "insecure")).toMatchObject({ kind: "enum", options: [true, false], nullable: true });
    expect(field(fields, "tags")).toMatchObject({ kind: "list", itemKind: "string" });
    expect(field(fields, "ports")).toMatchObject({ kind: "list", itemKind: "integer" });
    expect(field(fields, "ratio")).toMatchObject({ kind: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 });
    expect(field(fields, "password")).toMatchObject({ kind: "secret", required: true, nullable: false });
    expect(field(fields, "extra")).toMatchObject({ kind: "json" });
    expect(field(fields, "level")).toMatchObject({ kind: "enum", options: ["debug"] });
    expect(field(fields, "region")).toMatchObject({ kind: "enum", options: ["eu", "us"], nullable: true });
  });

  it("takes a field the API lists in secretsSet as secret", () => {
    const fields = markSecrets(describeSchema({ properties: { key: { type: "string" } } }), { key: true });
    expect(field(fields, "key").kind).toBe("secret");
  });

  it("has no fields for a missing schema", () => {
    expect(describeSchema(null)).toEqual([]);
    expect(describeSchema({ type: "object" })).toEqual([]);
  });
});

describe("labelFor", () => {
  it("keeps acronyms", () => {
    expect(labelFor("tracking_uri")).toBe("Tracking URI");
    expect(labelFor("maxRetries")).toBe("Max retries");
  });
});

describe("initialValues", () => {
  it("prefills from the settings, falls back to defaults, and never prefills a secret", () => {
    const fields = describeSchema(RICH);
    const values = initialValues(fields, { endpoint: "https://x", mode: "fast", tags: ["a", "b"], password: "leaked?" });
    expect(values.endpoint).toBe("https://x");
    expect(values.mode).toBe(optionKey("fast"));
    expect(values.legacy_mode).toBe(optionKey("fast"));
    expect(values.verify_tls).toBe(true);
    expect(values.insecure).toBe("");
    expect(values.tags).toBe("a, b");
    expect(values.ports).toBe("80");
    expect(values.ratio).toBe("0.5");
    expect(values.password).toBe("");
    expect(values.extra).toBe("{}");
  });
});

describe("validate", () => {
  const fields = describeSchema(RICH);
  const good = () => ({ ...initialValues(fields, { endpoint: "https://tracker" }), password: "s3cret" });

  it("accepts valid values", () => {
    expect(validate(fields, good())).toEqual({});
  });

  it("checks required fields, types, ranges, patterns and JSON", () => {
    const errors = validate(fields, {
      ...good(),
      endpoint: "ftp://x",
      ratio: "1",
      ports: "80, http",
      extra: "{not json",
      mode: optionKey("other"),
    });
    expect(Object.keys(errors).sort()).toEqual(["endpoint", "extra", "mode", "ports", "ratio"]);
    expect(errors.ratio).toBe("Less than 1.");
    expect(validate(fields, { ...good(), endpoint: "" }).endpoint).toBe("Required.");
  });

  it("checks integers and their bounds", () => {
    const local = describeSchema(LOCAL);
    const max = field(local, "max_parallel");
    expect(parseValue(max, "8")).toEqual({ ok: true, value: 8 });
    expect(parseValue(max, "2.5")).toEqual({ ok: false, error: "Enter a whole number." });
    expect(parseValue(max, "0")).toEqual({ ok: false, error: "At least 1." });
    expect(parseValue(max, "65")).toEqual({ ok: false, error: "At most 64." });
    expect(parseValue(max, "")).toEqual({ ok: true, value: null });
    expect(parseValue(field(local, "kill_grace_seconds"), "abc")).toEqual({ ok: false, error: "Enter a number." });
  });

  it("requires a required secret that is not stored, and refuses to clear it", () => {
    const values = { ...good(), password: "" };
    expect(validate(fields, values, {}, { password: false }).password).toBe("Required.");
    expect(validate(fields, values, {}, { password: true }).password).toBeUndefined();
    expect(validate(fields, values, { password: true }, { password: true }).password).toBe("Required.");
  });
});

describe("buildChanges", () => {
  it("sends only the fields that changed", () => {
    const fields = describeSchema(LOCAL);
    const settings = { max_parallel: 4, kill_grace_seconds: 1 };
    const values = initialValues(fields, settings);
    expect(buildChanges(fields, values, settings)).toEqual({});
    values.max_parallel = "8";
    expect(buildChanges(fields, values, settings)).toEqual({ max_parallel: 8 });
    values.kill_grace_seconds = "1.0";
    expect(buildChanges(fields, values, settings)).toEqual({ max_parallel: 8 });
  });

  it("sends null when the user empties a stored value, unless the default is what is there", () => {
    const fields = describeSchema(EXAMPLE);
    const stored = { root: "/data/runs" };
    const values = initialValues(fields, stored);
    values.root = "";
    expect(buildChanges(fields, values, stored)).toEqual({ root: null });
    expect(buildChanges(fields, { root: "" }, { root: null })).toEqual({});

    const local = describeSchema(LOCAL);
    const settings = { max_parallel: 8, kill_grace_seconds: 1 };
    expect(buildChanges(local, { max_parallel: "", kill_grace_seconds: "" }, settings)).toEqual({ max_parallel: null });
  });

  it("sends a secret only when a new one was typed, and null when a stored one is cleared", () => {
    const fields = describeSchema(EXAMPLE);
    const settings = { root: null };
    // empty input: the stored secret is kept, so the field is left out
    expect(buildChanges(fields, { root: "", api_token: "" }, settings, {}, { api_token: true })).toEqual({});
    // a new value replaces it
    expect(buildChanges(fields, { root: "", api_token: "tok-123" }, settings, {}, { api_token: true })).toEqual({
      api_token: "tok-123",
    });
    // "Clear" removes the stored one
    expect(buildChanges(fields, { root: "", api_token: "" }, settings, { api_token: true }, { api_token: true })).toEqual({
      api_token: null,
    });
    // clearing a secret that is not set sends nothing
    expect(buildChanges(fields, { root: "", api_token: "" }, settings, { api_token: true }, { api_token: false })).toEqual({});
  });

  it("never sends a secret the settings happen to contain", () => {
    const fields = describeSchema(EXAMPLE);
    const values = initialValues(fields, { root: null, api_token: "**********" });
    expect(values.api_token).toBe("");
    expect(buildChanges(fields, values, { root: null, api_token: "**********" }, {}, { api_token: true })).toEqual({});
  });

  it("parses lists, enums, booleans and JSON before comparing", () => {
    const fields = describeSchema(RICH);
    const settings = {
      endpoint: "https://tracker",
      mode: "safe",
      legacy_mode: "fast",
      verify_tls: true,
      insecure: null,
      tags: ["a"],
      ports: [80],
      ratio: 0.5,
      extra: {},
      level: "debug",
      region: null,
    };
    const values = initialValues(fields, settings);
    expect(buildChanges(fields, values, settings)).toEqual({});
    values.tags = "a, b\nc";
    values.ports = "80,443";
    values.mode = optionKey("fast");
    values.verify_tls = false;
    values.insecure = optionKey(true);
    values.extra = '{"k": "v"}';
    values.region = optionKey("eu");
    expect(buildChanges(fields, values, settings)).toEqual({
      tags: ["a", "b", "c"],
      ports: [80, 443],
      mode: "fast",
      verify_tls: false,
      insecure: true,
      extra: { k: "v" },
      region: "eu",
    });
    values.tags = "";
    expect(buildChanges(fields, values, settings).tags).toEqual([]);
  });
});

describe("settingErrors", () => {
  it("maps a 422's field paths to setting names", () => {
    expect(settingErrors({ max_parallel: "too big", "settings.root": "bad", "settings.tags.1": "x" })).toEqual({
      max_parallel: "too big",
      root: "bad",
      tags: "x",
    });
  });
});
