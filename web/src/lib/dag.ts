// Pipelines as DAGs of stages: the checks the platform makes before it runs one (so the
// editor can show them while the user types, without a round trip that fails), a layout
// for drawing the graph, and shell-like command lines. The YAML/JSON document is in
// pipelineDoc.ts (it pulls in the YAML parser, which only the editor needs).

/** The platform's stage-name rule (STAGE_NAME_PATTERN in llmops.capabilities.orchestration). */
export const STAGE_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
export const MAX_RETRIES = 20;

export type StageRule =
  | "duplicate"
  | "unknown-dependency"
  | "self-dependency"
  | "cycle"
  | "empty-name"
  | "name-pattern"
  | "empty-command"
  | "retries"
  | "timeout";

export type StageField = "name" | "command" | "dependsOn" | "retries" | "timeoutSeconds";

export interface StageIssue {
  /** the stage's position in the list */
  index: number;
  /** its name as typed (may be empty) */
  stage: string;
  field: StageField;
  rule: StageRule;
  message: string;
}

export interface StageInput {
  name: string;
  dependsOn?: string[] | null;
  /** the argv; left out when the caller checks commands itself */
  command?: string[] | null;
  retries?: number | null;
  timeoutSeconds?: number | null;
}

export const quote = (name: string): string => `“${name}”`;

/**
 * Everything the platform would refuse about these stages, per stage and field: the DAG
 * rules of ``validate_pipeline`` (duplicate names, unknown dependencies, cycles; a stage
 * depending on itself is reported apart from longer cycles), the name pattern, an empty
 * command, and the retries/timeout bounds. Unlike the platform, which stops at the first
 * rule broken, every issue is reported, and a cycle names only the stages on it.
 */
export function validateStages(stages: readonly StageInput[]): StageIssue[] {
  const issues: StageIssue[] = [];
  const add = (index: number, field: StageField, rule: StageRule, message: string): void => {
    issues.push({ index, stage: stages[index]?.name ?? "", field, rule, message });
  };
  const counts = new Map<string, number>();
  for (const s of stages) counts.set(s.name, (counts.get(s.name) ?? 0) + 1);
  const known = new Set(stages.map((s) => s.name).filter((n) => n !== ""));

  stages.forEach((s, index) => {
    if (s.name === "") add(index, "name", "empty-name", "Give the stage a name.");
    else if (!STAGE_NAME_PATTERN.test(s.name)) {
      add(
        index,
        "name",
        "name-pattern",
        "Use letters, digits, '.', '_' and '-' (up to 63), starting with a letter or digit.",
      );
    } else if ((counts.get(s.name) ?? 0) > 1) {
      add(index, "name", "duplicate", `Another stage is also named ${quote(s.name)}; names must be unique.`);
    }
    if (s.command !== undefined && (s.command === null || s.command.length === 0 || s.command.every((a) => a === ""))) {
      add(index, "command", "empty-command", "Give the command to run.");
    }
    for (const dep of new Set(s.dependsOn ?? [])) {
      if (dep === s.name && dep !== "") {
        // with a duplicate name it may mean the other stage: the duplicate is the error
        if (counts.get(dep) === 1) add(index, "dependsOn", "self-dependency", "A stage cannot depend on itself.");
      } else if (!known.has(dep)) {
        add(index, "dependsOn", "unknown-dependency", `Depends on ${quote(dep)}, which is not a stage of this pipeline.`);
      }
    }
    if (s.retries !== undefined && s.retries !== null) {
      if (!Number.isInteger(s.retries) || s.retries < 0 || s.retries > MAX_RETRIES) {
        add(index, "retries", "retries", `Retries is a whole number from 0 to ${MAX_RETRIES}.`);
      }
    }
    if (s.timeoutSeconds !== undefined && s.timeoutSeconds !== null) {
      if (!Number.isFinite(s.timeoutSeconds) || s.timeoutSeconds <= 0) {
        add(index, "timeoutSeconds", "timeout", "The timeout is a number of seconds above 0.");
      }
    }
  });

  // like the platform, which stops at duplicate names: a graph by name is ambiguous then,
  // so cycles are only looked for among uniquely named stages
  const unique = stages.filter((s) => counts.get(s.name) === 1);
  for (const cycle of findCycles(unique)) {
    const members = new Set(cycle.slice(0, -1));
    const path = cycle.join(" → ");
    stages.forEach((s, index) => {
      if (members.has(s.name)) add(index, "dependsOn", "cycle", `Dependency cycle: ${path}.`);
    });
  }
  return issues.sort((a, b) => a.index - b.index);
}

/** The graph by name: each known name and its (known, distinct, non-self) dependencies. */
function dependencyMap(stages: readonly { name: string; dependsOn?: readonly string[] | null }[]): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const s of stages) if (s.name !== "" && !deps.has(s.name)) deps.set(s.name, []);
  for (const s of stages) {
    const mine = deps.get(s.name);
    if (!mine) continue;
    for (const d of s.dependsOn ?? []) {
      if (d !== s.name && deps.has(d) && !mine.includes(d)) mine.push(d);
    }
  }
  return deps;
}

/**
 * The cycles among the stages (self-dependencies aside): one per strongly connected
 * component of more than one stage, as a closed path ``[a, b, a]`` in dependency order
 * (a depends on b, which depends on a).
 */
export function findCycles(stages: readonly { name: string; dependsOn?: readonly string[] | null }[]): string[][] {
  const deps = dependencyMap(stages);
  // Tarjan's strongly connected components
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  const strong = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of deps.get(v) ?? []) {
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) components.push(component);
    }
  };
  for (const v of deps.keys()) if (!index.has(v)) strong(v);

  const order = [...deps.keys()];
  return components.map((component) => {
    const inside = new Set(component);
    const start = order.find((n) => inside.has(n))!;
    // the shortest way back to start, through the component
    const previous = new Map<string, string>();
    const queue = [start];
    const seen = new Set([start]);
    let last: string | null = null;
    while (queue.length && last === null) {
      const v = queue.shift()!;
      for (const w of deps.get(v) ?? []) {
        if (!inside.has(w)) continue;
        if (w === start) {
          last = v;
          break;
        }
        if (!seen.has(w)) {
          seen.add(w);
          previous.set(w, v);
          queue.push(w);
        }
      }
    }
    const path = [start];
    for (let v: string | undefined = last ?? undefined; v !== undefined && v !== start; v = previous.get(v)) {
      path.splice(1, 0, v);
    }
    path.push(start);
    return path;
  });
}

// -- layout ----------------------------------------------------------------------------

export interface LayoutOptions {
  nodeWidth?: number;
  nodeHeight?: number;
  /** horizontal gap between layers */
  gapX?: number;
  /** vertical gap between nodes of a layer */
  gapY?: number;
  padding?: number;
}

export interface LayoutNode {
  index: number;
  name: string;
  /** the longest path from a root (a stage with no dependencies) */
  layer: number;
  /** position within the layer, top to bottom */
  order: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface LayoutEdge {
  /** index of the stage depended on */
  from: number;
  /** index of the dependent stage */
  to: number;
  /** goes back to an earlier or the same layer (part of a cycle) */
  back: boolean;
  /** SVG path data from the right of ``from`` to the left of ``to`` */
  path: string;
}

export interface DagLayout {
  nodes: LayoutNode[];
  edges: LayoutEdge[];
  /** names per layer, in drawing order */
  layers: string[][];
  width: number;
  height: number;
}

/**
 * Where to draw each stage: layers left to right by the longest path from the roots
 * (stages in a cycle go after the stages they depend on that are placed), ordered within
 * a layer to keep edges short, and an edge per dependency on a known stage.
 */
export function layoutDag(
  stages: readonly { name: string; dependsOn?: readonly string[] | null }[],
  options: LayoutOptions = {},
): DagLayout {
  const width = options.nodeWidth ?? 168;
  const height = options.nodeHeight ?? 52;
  const gapX = options.gapX ?? 56;
  const gapY = options.gapY ?? 20;
  const pad = options.padding ?? 12;

  // a name means its first stage; duplicates are drawn but nothing points at them
  const byName = new Map<string, number>();
  stages.forEach((s, i) => {
    if (s.name !== "" && !byName.has(s.name)) byName.set(s.name, i);
  });
  const parents: number[][] = stages.map((s, i) => {
    const out: number[] = [];
    for (const d of s.dependsOn ?? []) {
      const j = byName.get(d);
      if (j !== undefined && j !== i && !out.includes(j)) out.push(j);
    }
    return out;
  });

  // longest path from the roots (Kahn's order), then whatever a cycle left unplaced
  const layer: (number | null)[] = stages.map(() => null);
  const remaining = parents.map((p) => p.length);
  const children: number[][] = stages.map(() => []);
  parents.forEach((ps, i) => ps.forEach((p) => children[p]!.push(i)));
  const queue = stages.map((_, i) => i).filter((i) => remaining[i] === 0);
  while (queue.length) {
    const i = queue.shift()!;
    layer[i] = Math.max(0, ...parents[i]!.map((p) => (layer[p] ?? -1) + 1));
    for (const c of children[i]!) {
      remaining[c]! -= 1;
      if (remaining[c] === 0) queue.push(c);
    }
  }
  // a cycle leaves stages unplaced: break it at its first stage, then go on
  for (;;) {
    let progress = false;
    stages.forEach((_, i) => {
      if (layer[i] === null && parents[i]!.every((p) => layer[p] !== null)) {
        layer[i] = Math.max(0, ...parents[i]!.map((p) => layer[p]! + 1));
        progress = true;
      }
    });
    if (progress) continue;
    const first = layer.findIndex((l) => l === null);
    if (first < 0) break;
    layer[first] = Math.max(0, ...parents[first]!.filter((p) => layer[p] !== null).map((p) => layer[p]! + 1));
  }
  const layerOf = layer.map((l) => l ?? 0);

  // order within each layer: by index first, then by the mean position of the parents
  const count = Math.max(0, ...layerOf) + 1;
  const columns: number[][] = Array.from({ length: stages.length ? count : 0 }, () => []);
  layerOf.forEach((l, i) => columns[l]!.push(i));
  const position = new Map<number, number>();
  columns.forEach((col) => col.forEach((i, k) => position.set(i, k)));
  for (let pass = 0; pass < 2; pass += 1) {
    for (const col of columns.slice(1)) {
      const key = (i: number): number => {
        const ps = parents[i]!.filter((p) => layerOf[p]! < layerOf[i]!);
        return ps.length ? ps.reduce((sum, p) => sum + position.get(p)!, 0) / ps.length : position.get(i)!;
      };
      const keys = new Map(col.map((i) => [i, key(i)]));
      col.sort((a, b) => keys.get(a)! - keys.get(b)! || a - b);
      col.forEach((i, k) => position.set(i, k));
    }
  }

  const tallest = Math.max(0, ...columns.map((c) => c.length));
  const totalHeight = tallest ? pad * 2 + tallest * height + (tallest - 1) * gapY : pad * 2;
  const totalWidth = columns.length ? pad * 2 + columns.length * width + (columns.length - 1) * gapX : pad * 2;
  const nodes: LayoutNode[] = [];
  columns.forEach((col, l) => {
    const colHeight = col.length * height + (col.length - 1) * gapY;
    const top = pad + (totalHeight - pad * 2 - colHeight) / 2;
    col.forEach((i, k) => {
      nodes.push({
        index: i,
        name: stages[i]!.name,
        layer: l,
        order: k,
        x: pad + l * (width + gapX),
        y: top + k * (height + gapY),
        width,
        height,
      });
    });
  });
  nodes.sort((a, b) => a.index - b.index);

  // edges: a curve from the right of a stage to the left of its dependent; one that would
  // cut through a stage of a layer in between, or that goes back (a cycle), is routed
  // through the gaps between the columns and a lane of its own above the graph
  const LANE = 10;
  const R = 6;
  const edges: LayoutEdge[] = [];
  const routed: { edge: LayoutEdge; a: LayoutNode; b: LayoutNode }[] = [];
  parents.forEach((ps, to) => {
    for (const from of ps) {
      const a = nodes[from]!;
      const b = nodes[to]!;
      const back = a.layer >= b.layer;
      const x1 = a.x + a.width;
      const y1 = a.y + a.height / 2;
      const x2 = b.x;
      const y2 = b.y + b.height / 2;
      const blocked =
        back ||
        nodes.some((n) => {
          if (n.layer <= a.layer || n.layer >= b.layer) return false;
          const y = y1 + ((y2 - y1) * (n.x + n.width / 2 - x1)) / (x2 - x1);
          return y >= n.y - 4 && y <= n.y + n.height + 4;
        });
      const edge: LayoutEdge = { from, to, back, path: "" };
      if (blocked) routed.push({ edge, a, b });
      else {
        const bend = Math.max(20, (x2 - x1) / 2);
        edge.path = `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
      }
      edges.push(edge);
    }
  });
  const gutter = routed.length ? Math.round(gapX / 2) : 0;
  const lift = routed.length * LANE + (routed.length ? 6 : 0);
  routed.forEach(({ edge, a, b }, k) => {
    const lane = pad - (k + 1) * LANE;
    const x1 = a.x + a.width;
    const y1 = a.y + a.height / 2;
    const x2 = b.x;
    const y2 = b.y + b.height / 2;
    const g1 = x1 + gapX / 2;
    const g2 = x2 - gapX / 2;
    const dir = g2 >= g1 ? 1 : -1;
    edge.path = [
      `M ${x1} ${y1}`,
      `L ${g1 - R} ${y1}`,
      `Q ${g1} ${y1}, ${g1} ${y1 - R}`,
      `L ${g1} ${lane + R}`,
      `Q ${g1} ${lane}, ${g1 + dir * R} ${lane}`,
      `L ${g2 - dir * R} ${lane}`,
      `Q ${g2} ${lane}, ${g2} ${lane + R}`,
      `L ${g2} ${y2 - R}`,
      `Q ${g2} ${y2}, ${g2 + R} ${y2}`,
      `L ${x2} ${y2}`,
    ].join(" ");
  });
  if (lift || gutter) {
    for (const n of nodes) {
      n.x += gutter;
      n.y += lift;
    }
    for (const e of edges) e.path = shiftPath(e.path, gutter, lift);
  }
  return {
    nodes,
    edges,
    layers: columns.map((col) => col.map((i) => stages[i]!.name)),
    width: totalWidth + 2 * gutter,
    height: totalHeight + lift,
  };
}

function shiftPath(path: string, dx: number, dy: number): string {
  // every coordinate pair is "x y"
  return path.replace(/(-?[\d.]+) (-?[\d.]+)/g, (_, x: string, y: string) => `${Number(x) + dx} ${Number(y) + dy}`);
}

// -- command lines ---------------------------------------------------------------------

export class CommandSyntaxError extends Error {}

/**
 * A command line split like a POSIX shell would into an argv, without running anything:
 * spaces separate words; 'single quotes' keep everything; "double quotes" keep spaces
 * and take \" \\ \$ \` escapes; a backslash outside quotes escapes the next character.
 * No variables, globs or pipes: ``sh -c "…"`` runs a shell when one is needed.
 */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === " " || c === "\t" || c === "\n") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i += 1;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new CommandSyntaxError("A single quote (') is not closed.");
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i += 1;
      let closed = false;
      while (i < line.length) {
        const d = line[i]!;
        if (d === '"') {
          closed = true;
          i += 1;
          break;
        }
        if (d === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!)) {
          word += line[i + 1];
          i += 2;
        } else {
          word += d;
          i += 1;
        }
      }
      if (!closed) throw new CommandSyntaxError('A double quote (") is not closed.');
      inWord = true;
    } else if (c === "\\") {
      if (i + 1 >= line.length) throw new CommandSyntaxError("The line ends with a lone backslash.");
      word += line[i + 1];
      inWord = true;
      i += 2;
    } else {
      word += c;
      inWord = true;
      i += 1;
    }
  }
  if (inWord) words.push(word);
  return words;
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** An argv as one command line that :func:`splitCommand` turns back into the same argv. */
export function joinCommand(argv: readonly string[]): string {
  return argv
    .map((a) => {
      if (SAFE_WORD.test(a)) return a;
      if (!a.includes("'")) return `'${a}'`;
      return `"${a.replace(/["\\$`]/g, (m) => `\\${m}`)}"`;
    })
    .join(" ");
}
