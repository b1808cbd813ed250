// The pipeline document, YAML or JSON (the format of examples/pipeline.yaml), for the
// pipeline editor's text mode: parsing with the line of each error, and writing it back.
import { Document, LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, visit, type Node } from "yaml";
import { MAX_RETRIES, quote } from "./dag";

export interface StageDoc {
  name: string;
  command: string[];
  dependsOn?: string[];
  env?: Record<string, string>;
  workingDir?: string | null;
  retries?: number;
  timeoutSeconds?: number | null;
  image?: string | null;
}

export interface PipelineDoc {
  name: string;
  stages: StageDoc[];
  maxParallel?: number | null;
  labels?: Record<string, string>;
  provider?: string | null;
}

export interface DocError {
  /** 1-based line of the text, when known */
  line: number | null;
  message: string;
  /** the stage it concerns, when it concerns one */
  index?: number;
  field?: string;
}

export interface ParsedDoc {
  doc: PipelineDoc | null;
  /** syntax and shape errors: the text does not describe a pipeline */
  errors: DocError[];
  /** 1-based line of a stage's field (or of the stage), for placing DAG issues */
  lineOf: (index: number, field?: string) => number | null;
}

const TOP_KEYS = ["name", "stages", "maxParallel", "labels", "provider"];
const STAGE_KEYS = ["name", "command", "dependsOn", "env", "workingDir", "retries", "timeoutSeconds", "image"];

/** Parse the text of a pipeline document (YAML, or JSON, which YAML reads too). */
export function parsePipelineText(text: string): ParsedDoc {
  const counter = new LineCounter();
  const parsed = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const lineAt = (offset: number | undefined): number | null =>
    offset === undefined ? null : counter.linePos(offset).line;
  const nodeLine = (node: unknown): number | null =>
    node && typeof node === "object" && "range" in node ? lineAt((node as Node).range?.[0]) : null;

  const stagesNode = isMap(parsed.contents) ? parsed.contents.get("stages", true) : undefined;
  const stageNode = (index: number): unknown => (isSeq(stagesNode) ? stagesNode.items[index] : undefined);
  const lineOf = (index: number, field?: string): number | null => {
    const node = stageNode(index);
    if (field && isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === field);
      if (pair) return nodeLine(pair.key);
    }
    return nodeLine(node);
  };

  const errors: DocError[] = parsed.errors.map((e) => ({
    line: lineAt(e.pos[0]),
    message: e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, ""),
  }));
  if (errors.length) return { doc: null, errors, lineOf };
  if (text.trim() === "") {
    return { doc: null, errors: [{ line: 1, message: "The document is empty: give a name and stages." }], lineOf };
  }

  const root = parsed.contents;
  if (!isMap(root)) {
    return { doc: null, errors: [{ line: nodeLine(root) ?? 1, message: "The document must be a mapping with name and stages." }], lineOf };
  }
  const where = (node: unknown): number | null => nodeLine(node);
  const fail = (node: unknown, message: string, extra: Partial<DocError> = {}): void => {
    errors.push({ line: where(node), message, ...extra });
  };

  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : "";
    if (!TOP_KEYS.includes(key)) {
      fail(pair.key, `Unknown key ${quote(key)}: the document has ${TOP_KEYS.join(", ")}.`);
    }
  }
  const js = parsed.toJS() as Record<string, unknown>;
  const doc: PipelineDoc = { name: "", stages: [] };
  if (typeof js.name !== "string" || js.name.trim() === "") {
    fail(root.get("name", true) ?? root, "Give the pipeline a name (name: …).", { field: "name" });
  } else doc.name = js.name;
  if (js.maxParallel !== undefined && js.maxParallel !== null) {
    if (!Number.isInteger(js.maxParallel) || (js.maxParallel as number) < 1 || (js.maxParallel as number) > 64) {
      fail(root.get("maxParallel", true), "maxParallel is a whole number from 1 to 64.", { field: "maxParallel" });
    } else doc.maxParallel = js.maxParallel as number;
  }
  if (js.labels !== undefined && js.labels !== null) {
    if (!isStringMap(js.labels)) fail(root.get("labels", true), "labels maps names to strings.", { field: "labels" });
    else doc.labels = js.labels;
  }
  if (js.provider !== undefined && js.provider !== null) {
    if (typeof js.provider !== "string") fail(root.get("provider", true), "provider is the name of an orchestrator.");
    else doc.provider = js.provider;
  }
  if (!Array.isArray(js.stages) || js.stages.length === 0) {
    fail(stagesNode ?? root, "Give a list of stages (stages: - name: …).", { field: "stages" });
    return { doc: null, errors, lineOf };
  }
  js.stages.forEach((raw: unknown, index: number) => {
    const node = stageNode(index);
    const at = (field: string): unknown => (isMap(node) ? node.get(field, true) ?? node : node);
    if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
      fail(node, `Stage ${index + 1} must be a mapping with name and command.`, { index });
      return;
    }
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isPair(pair) && isScalar(pair.key) ? String(pair.key.value) : "";
        if (!STAGE_KEYS.includes(key)) {
          fail(pair.key, `Unknown stage key ${quote(key)}: a stage has ${STAGE_KEYS.join(", ")}.`, { index });
        }
      }
    }
    const r = raw as Record<string, unknown>;
    const stage: StageDoc = { name: "", command: [] };
    if (typeof r.name === "string") stage.name = r.name;
    else if (typeof r.name === "number") stage.name = String(r.name);
    else fail(at("name"), `Stage ${index + 1} needs a name.`, { index, field: "name" });
    if (Array.isArray(r.command) && r.command.every((a) => typeof a === "string" || typeof a === "number" || typeof a === "boolean")) {
      stage.command = r.command.map(String);
    } else if (r.command !== undefined) {
      fail(at("command"), "command is a list of words, e.g. [sh, -c, \"echo hi\"].", { index, field: "command" });
    }
    if (r.dependsOn !== undefined && r.dependsOn !== null) {
      if (Array.isArray(r.dependsOn) && r.dependsOn.every((d) => typeof d === "string" || typeof d === "number")) {
        stage.dependsOn = r.dependsOn.map(String);
      } else if (typeof r.dependsOn === "string") {
        stage.dependsOn = [r.dependsOn];
      } else fail(at("dependsOn"), "dependsOn is a list of stage names.", { index, field: "dependsOn" });
    }
    if (r.env !== undefined && r.env !== null) {
      if (isStringMap(r.env)) stage.env = r.env;
      else fail(at("env"), "env maps variable names to strings (quote numbers).", { index, field: "env" });
    }
    for (const key of ["workingDir", "image"] as const) {
      const v = r[key];
      if (v === undefined || v === null) continue;
      if (typeof v === "string") stage[key] = v;
      else fail(at(key), `${key} is a string.`, { index, field: key });
    }
    if (r.retries !== undefined && r.retries !== null) {
      if (typeof r.retries === "number") stage.retries = r.retries;
      else fail(at("retries"), `Retries is a whole number from 0 to ${MAX_RETRIES}.`, { index, field: "retries" });
    }
    if (r.timeoutSeconds !== undefined && r.timeoutSeconds !== null) {
      if (typeof r.timeoutSeconds === "number") stage.timeoutSeconds = r.timeoutSeconds;
      else fail(at("timeoutSeconds"), "timeoutSeconds is a number of seconds.", { index, field: "timeoutSeconds" });
    }
    doc.stages.push(stage);
  });
  return { doc: errors.length ? null : doc, errors, lineOf };
}

function isStringMap(value: unknown): value is Record<string, string> {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === "string")
  );
}

/** The document as YAML in the style of examples/pipeline.yaml (flow lists for argv). */
export function stringifyPipeline(doc: PipelineDoc): string {
  const clean: Record<string, unknown> = { name: doc.name };
  if (doc.provider) clean.provider = doc.provider;
  if (doc.maxParallel) clean.maxParallel = doc.maxParallel;
  if (doc.labels && Object.keys(doc.labels).length) clean.labels = doc.labels;
  clean.stages = doc.stages.map((s) => {
    const out: Record<string, unknown> = { name: s.name, command: s.command };
    if (s.dependsOn?.length) out.dependsOn = s.dependsOn;
    if (s.retries) out.retries = s.retries;
    if (s.timeoutSeconds) out.timeoutSeconds = s.timeoutSeconds;
    if (s.env && Object.keys(s.env).length) out.env = s.env;
    if (s.workingDir) out.workingDir = s.workingDir;
    if (s.image) out.image = s.image;
    return out;
  });
  const document = new Document(clean);
  visit(document, {
    Pair(_, pair) {
      if (isScalar(pair.key) && (pair.key.value === "command" || pair.key.value === "dependsOn") && isSeq(pair.value)) {
        pair.value.flow = true;
        // words with spaces read better quoted, as in examples/pipeline.yaml
        for (const item of pair.value.items) {
          if (isScalar(item) && typeof item.value === "string" && /\s/.test(item.value)) item.type = "QUOTE_DOUBLE";
        }
      }
    },
  });
  return document.toString({ lineWidth: 0, flowCollectionPadding: false });
}
