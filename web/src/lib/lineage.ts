// The platform's lineage graph (GET /llm-ops/v1/lineage) drawn as a DAG: a box per node
// (its label and kind), an arrow per edge the way data flows, named by its relation. The
// layout is lib/dag.ts's; this turns the graph into its input and places the labels.
import { layoutDag, type LayoutOptions } from "@/lib/dag";

export interface LineageNode {
  id: string;
  kind: string;
  entityId: string;
  label: string;
  page?: string | null;
}

export interface LineageEdge {
  source: string;
  target: string;
  relation: string;
}

export interface LineageGraph {
  root: string;
  nodes: readonly LineageNode[];
  edges: readonly LineageEdge[];
}

/** ``<kind>:<id>``, the name of a node for ``GET /lineage?node=``. */
export function nodeKey(kind: string, id: string): string {
  return `${kind}:${id}`;
}

/** The console route of the lineage graph around a node. */
export function lineageRoute(kind: string, id: string): { path: string; query: { node: string } } {
  return { path: "/lineage", query: { node: nodeKey(kind, id) } };
}

// the console's own routes per kind: the API's ``page`` names the platform's page of a
// node, which for some kinds is not where the console shows it
const CONSOLE_PAGES: Record<string, (id: string) => string> = {
  dataset: (id) => `/datasets/${encodeURIComponent(id)}`,
  "training-job": (id) => `/training/${encodeURIComponent(id)}`,
  pipeline: (id) => `/pipelines/${encodeURIComponent(id)}`,
  model: (id) => `/models/${encodeURIComponent(id)}`,
  "serving-endpoint": (id) => `/serving/${encodeURIComponent(id)}`,
  // the console has no page of its own for these: the graph around them
  "dataset-version": (id) => lineagePath("dataset-version", id),
  "experiment-run": (id) => lineagePath("experiment-run", id),
};

function lineagePath(kind: string, id: string): string {
  return `/lineage?node=${encodeURIComponent(nodeKey(kind, id))}`;
}

/**
 * Where a node links to in the console: its kind's console page (the graph around it
 * for a dataset version or an experiment run, which have none); for a kind the console
 * does not know, the API's ``page`` when that is a path of this site, else its graph.
 */
export function nodeLink(node: Pick<LineageNode, "kind" | "entityId" | "page">): string {
  const own = CONSOLE_PAGES[node.kind];
  if (own) return own(node.entityId);
  if (node.page && node.page.startsWith("/") && !node.page.startsWith("//")) return node.page;
  return lineagePath(node.kind, node.entityId);
}

export interface PlacedNode extends LineageNode {
  x: number;
  y: number;
  width: number;
  height: number;
  root: boolean;
  link: string;
}

export interface PlacedEdge extends LineageEdge {
  key: string;
  path: string;
  /** where the relation's name goes: the middle between the two boxes */
  labelX: number;
  labelY: number;
  back: boolean;
}

export interface LineageLayout {
  nodes: PlacedNode[];
  edges: PlacedEdge[];
  width: number;
  height: number;
}

/**
 * Where to draw each node and edge: layers left to right along the edges (a source
 * before its targets), edges to unknown nodes and repeated edges left out, the nodes
 * in the answer's order within a layer before the layout orders them.
 */
export function layoutLineage(graph: LineageGraph, options: LayoutOptions = {}): LineageLayout {
  const known = new Set(graph.nodes.map((n) => n.id));
  const seen = new Set<string>();
  const edges = graph.edges.filter((e) => {
    const key = `${e.source}\u0000${e.target}\u0000${e.relation}`;
    if (!known.has(e.source) || !known.has(e.target) || e.source === e.target || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const parents = new Map<string, string[]>();
  for (const e of edges) parents.set(e.target, [...(parents.get(e.target) ?? []), e.source]);
  const layout = layoutDag(
    graph.nodes.map((n) => ({ name: n.id, dependsOn: parents.get(n.id) ?? [] })),
    { nodeWidth: 188, nodeHeight: 52, gapX: 96, gapY: 22, ...options },
  );
  const nodes: PlacedNode[] = layout.nodes.map((p) => {
    const n = graph.nodes[p.index]!;
    return { ...n, x: p.x, y: p.y, width: p.width, height: p.height, root: n.id === graph.root, link: nodeLink(n) };
  });
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const pathOf = new Map(layout.edges.map((e) => [`${graph.nodes[e.from]!.id}\u0000${graph.nodes[e.to]!.id}`, e]));
  const placed: PlacedEdge[] = [];
  // two relations between the same pair share one drawn path; their labels stack
  const perPair = new Map<string, number>();
  for (const e of edges) {
    const pair = `${e.source}\u0000${e.target}`;
    const drawn = pathOf.get(pair);
    const a = byId.get(e.source)!;
    const b = byId.get(e.target)!;
    const k = perPair.get(pair) ?? 0;
    perPair.set(pair, k + 1);
    const x1 = a.x + a.width;
    const y1 = a.y + a.height / 2;
    const x2 = b.x;
    const y2 = b.y + b.height / 2;
    placed.push({
      ...e,
      key: `${pair}\u0000${e.relation}`,
      path: drawn?.path ?? `M ${x1} ${y1} L ${x2} ${y2}`,
      labelX: (x1 + x2) / 2,
      labelY: (y1 + y2) / 2 - 6 + k * 13,
      back: drawn?.back ?? false,
    });
  }
  return { nodes, edges: placed, width: layout.width, height: layout.height };
}

/** A label cut to ``max`` characters with an ellipsis. */
export function shorten(text: string, max: number): string {
  if (!text) return "(unnamed)";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
