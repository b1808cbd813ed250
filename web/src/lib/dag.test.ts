import { describe, expect, it } from "vitest";
import {
  CommandSyntaxError,
  findCycles,
  joinCommand,
  layoutDag,
  splitCommand,
  validateStages,
} from "./dag";

const stage = (name: string, dependsOn: string[] = [], command: string[] = ["true"]) => ({ name, dependsOn, command });
const rules = (issues: ReturnType<typeof validateStages>) => issues.map((i) => `${i.index}:${i.field}:${i.rule}`);

describe("validateStages", () => {
  it("accepts a valid DAG", () => {
    expect(validateStages([stage("prepare"), stage("train", ["prepare"]), stage("evaluate", ["prepare", "train"])])).toEqual([]);
  });

  it("names every stage that shares a name", () => {
    const issues = validateStages([stage("a"), stage("b"), stage("a")]);
    expect(rules(issues)).toEqual(["0:name:duplicate", "2:name:duplicate"]);
    expect(issues[0]!.stage).toBe("a");
  });

  it("reports a dependency on a stage that does not exist on the dependent's field", () => {
    const issues = validateStages([stage("a"), stage("b", ["a", "nope"])]);
    expect(rules(issues)).toEqual(["1:dependsOn:unknown-dependency"]);
    expect(issues[0]!.message).toContain("nope");
  });

  it("reports a stage that depends on itself", () => {
    expect(rules(validateStages([stage("a", ["a"])]))).toEqual(["0:dependsOn:self-dependency"]);
  });

  it("reports the stages on a cycle, not those downstream of it", () => {
    const issues = validateStages([stage("a", ["c"]), stage("b", ["a"]), stage("c", ["b"]), stage("d", ["c"])]);
    expect(rules(issues)).toEqual(["0:dependsOn:cycle", "1:dependsOn:cycle", "2:dependsOn:cycle"]);
    expect(issues[0]!.message).toBe("Dependency cycle: a → c → b → a.");
  });

  it("looks for cycles and self-dependencies only among uniquely named stages", () => {
    const issues = validateStages([stage("a"), stage("b", ["a"]), stage("a", ["b"]), stage("c"), stage("c", ["c"])]);
    expect(rules(issues)).toEqual(["0:name:duplicate", "2:name:duplicate", "3:name:duplicate", "4:name:duplicate"]);
  });

  it("finds a two-stage cycle and each separate cycle", () => {
    expect(findCycles([stage("a", ["b"]), stage("b", ["a"]), stage("x", ["y"]), stage("y", ["x"])])).toEqual([
      ["a", "b", "a"],
      ["x", "y", "x"],
    ]);
  });

  it("checks the name pattern, empty names and empty commands", () => {
    const issues = validateStages([
      { name: "", dependsOn: [], command: ["x"] },
      { name: "-bad", dependsOn: [], command: [] },
      { name: "ok", dependsOn: [], command: [""] },
      { name: "a".repeat(64), dependsOn: [] },
    ]);
    expect(rules(issues)).toEqual([
      "0:name:empty-name",
      "1:name:name-pattern",
      "1:command:empty-command",
      "2:command:empty-command",
      "3:name:name-pattern",
    ]);
  });

  it("checks retries and the timeout", () => {
    const issues = validateStages([
      { name: "a", retries: 21, timeoutSeconds: 0 },
      { name: "b", retries: 1.5, timeoutSeconds: 10 },
      { name: "c", retries: 20, timeoutSeconds: null },
    ]);
    expect(rules(issues)).toEqual(["0:retries:retries", "0:timeoutSeconds:timeout", "1:retries:retries"]);
  });
});

describe("layoutDag", () => {
  it("puts each stage in the layer of its longest path from a root", () => {
    const layout = layoutDag([
      stage("prepare"),
      stage("train", ["prepare"]),
      stage("evaluate", ["prepare", "train"]),
      stage("lint"),
    ]);
    expect(layout.layers).toEqual([["prepare", "lint"], ["train"], ["evaluate"]]);
    expect(layout.nodes.map((n) => n.layer)).toEqual([0, 1, 2, 0]);
    expect(layout.edges.map((e) => [e.from, e.to])).toEqual([
      [0, 1],
      [0, 2],
      [1, 2],
    ]);
    expect(layout.edges.every((e) => !e.back && e.path.startsWith("M "))).toBe(true);
  });

  it("places nodes left to right without overlap and sizes the drawing", () => {
    const layout = layoutDag([stage("a"), stage("b", ["a"]), stage("c", ["a"])], {
      nodeWidth: 100,
      nodeHeight: 40,
      gapX: 50,
      gapY: 10,
      padding: 10,
    });
    const [a, b, c] = layout.nodes;
    expect(a!.x).toBe(10);
    expect(b!.x).toBe(160);
    expect(c!.x).toBe(160);
    expect(c!.y - b!.y).toBe(50);
    expect(a!.y + 20).toBe((b!.y + c!.y + 40) / 2); // the root is centred on its column
    expect(layout.width).toBe(10 + 100 + 50 + 100 + 10);
    expect(layout.height).toBe(10 + 40 + 10 + 40 + 10);
  });

  it("orders a layer after its parents to avoid crossings", () => {
    const layout = layoutDag([stage("a"), stage("b"), stage("from-b", ["b"]), stage("from-a", ["a"])]);
    expect(layout.layers[1]).toEqual(["from-a", "from-b"]);
  });

  it("still places every stage of a cycle, with back edges", () => {
    const layout = layoutDag([stage("a", ["b"]), stage("b", ["a"]), stage("c", ["c"])]);
    expect(layout.nodes).toHaveLength(3);
    expect(layout.edges.filter((e) => e.back)).toHaveLength(1);
    expect(new Set(layout.nodes.map((n) => `${n.x},${n.y}`)).size).toBe(3);
  });

  it("routes an edge that would cut through a stage around it, and no other", () => {
    const layout = layoutDag([stage("a"), stage("b", ["a"]), stage("c", ["b", "a"])]);
    const [ab, bc, ac] = [[0, 1], [1, 2], [0, 2]].map(([f, t]) => layout.edges.find((e) => e.from === f && e.to === t)!);
    expect(ab!.path).toMatch(/^M [\d.]+ [\d.]+ C /);
    expect(bc!.path).toMatch(/^M [\d.]+ [\d.]+ C /);
    expect(ac!.path).toContain(" Q ");
    // its lane runs above every stage
    const laneY = Number(/Q [\d.]+ [\d.]+, [\d.]+ [\d.]+ L [\d.]+ ([\d.]+)/.exec(ac!.path)![1]);
    expect(laneY).toBeLessThan(Math.min(...layout.nodes.map((n) => n.y)));
    expect(laneY).toBeGreaterThanOrEqual(0);
    expect(Math.max(...layout.nodes.map((n) => n.x + n.width))).toBeLessThan(layout.width);
  });

  it("ignores unknown dependencies and draws nothing for an empty pipeline", () => {
    expect(layoutDag([stage("a", ["ghost"])]).edges).toEqual([]);
    expect(layoutDag([]).nodes).toEqual([]);
  });
});

describe("splitCommand", () => {
  it("splits like a shell", () => {
    expect(splitCommand(`python3 -c "print('hello')"`)).toEqual(["python3", "-c", "print('hello')"]);
    expect(splitCommand(`sh -c 'echo "hi there"'  x\\ y ""`)).toEqual(["sh", "-c", 'echo "hi there"', "x y", ""]);
    expect(splitCommand(`echo "a \\"b\\" \\$HOME \\n"`)).toEqual(["echo", 'a "b" $HOME \\n']);
    expect(splitCommand("   ")).toEqual([]);
  });

  it("refuses unclosed quotes", () => {
    expect(() => splitCommand(`echo "hi`)).toThrow(CommandSyntaxError);
    expect(() => splitCommand(`echo 'hi`)).toThrow(/single quote/);
  });

  it("round-trips through joinCommand", () => {
    for (const argv of [
      ["python3", "-c", "print('hello')"],
      ["sh", "-c", 'echo "$X" `date` \\'],
      ["a b", "", "--x=1"],
    ]) {
      expect(splitCommand(joinCommand(argv))).toEqual(argv);
    }
  });
});
