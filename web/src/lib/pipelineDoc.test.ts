import { describe, expect, it } from "vitest";
import { parsePipelineText, stringifyPipeline } from "./pipelineDoc";

describe("pipeline documents", () => {
  const example = `# llmops pipelines run examples/pipeline.yaml
name: example
stages:
  - name: prepare
    command: [sh, -c, "echo preparing data > prepared.txt"]
  - name: train
    command: [sh, -c, "echo training on $(cat prepared.txt)"]
    dependsOn: [prepare]
    retries: 1
  - name: evaluate
    command: [sh, -c, "echo evaluating"]
    dependsOn: [prepare]
`;

  it("reads the example pipeline", () => {
    const parsed = parsePipelineText(example);
    expect(parsed.errors).toEqual([]);
    expect(parsed.doc!.name).toBe("example");
    expect(parsed.doc!.stages.map((s) => s.name)).toEqual(["prepare", "train", "evaluate"]);
    expect(parsed.doc!.stages[1]).toMatchObject({ dependsOn: ["prepare"], retries: 1 });
    expect(parsed.lineOf(1)).toBe(6);
    expect(parsed.lineOf(1, "dependsOn")).toBe(8);
  });

  it("reads JSON too", () => {
    const parsed = parsePipelineText(JSON.stringify({ name: "j", stages: [{ name: "a", command: ["true"] }] }));
    expect(parsed.doc).toEqual({ name: "j", stages: [{ name: "a", command: ["true"] }] });
  });

  it("gives syntax errors with their line", () => {
    const parsed = parsePipelineText("name: x\nstages:\n  - name: a\n    command: [sh, -c\n");
    expect(parsed.doc).toBeNull();
    expect(parsed.errors.length).toBeGreaterThan(0);
    expect(parsed.errors[0]!.line).toBeGreaterThanOrEqual(4);
  });

  it("gives shape errors with their line", () => {
    const parsed = parsePipelineText("name: x\nstages:\n  - name: a\n    command: echo\n    dependson: [b]\n");
    expect(parsed.doc).toBeNull();
    expect(parsed.errors.map((e) => [e.line, e.field ?? null])).toEqual([
      [5, null],
      [4, "command"],
    ]);
    expect(parsePipelineText("name: x\n").errors[0]!.message).toContain("stages");
  });

  it("writes what it reads", () => {
    const doc = parsePipelineText(example).doc!;
    const text = stringifyPipeline(doc);
    expect(text).toContain('command: [sh, -c, "echo preparing data > prepared.txt"]');
    expect(text).toContain("dependsOn: [prepare]");
    expect(parsePipelineText(text).doc).toEqual(doc);
  });
});
