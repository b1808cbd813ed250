import { describe, expect, it } from "vitest";
import { layoutLineage, lineageRoute, nodeLink } from "./lineage";

const node = (kind: string, id: string, label = id) => ({ id: `${kind}:${id}`, kind, entityId: id, label, page: null });

describe("layoutLineage", () => {
  const graph = {
    root: "dataset-version:v2",
    nodes: [node("model", "m1"), node("dataset-version", "v2"), node("training-job", "j1"), node("dataset", "d1")],
    edges: [
      { source: "dataset-version:v2", target: "dataset:d1", relation: "version-of" },
      { source: "dataset-version:v2", target: "training-job:j1", relation: "trained" },
      { source: "training-job:j1", target: "model:m1", relation: "produced" },
    ],
  };

  it("places each source in a layer before its targets", () => {
    const layout = layoutLineage(graph);
    const x = Object.fromEntries(layout.nodes.map((n) => [n.id, n.x]));
    expect(x["dataset-version:v2"]).toBeLessThan(x["training-job:j1"]!);
    expect(x["training-job:j1"]).toBeLessThan(x["model:m1"]!);
    expect(x["dataset-version:v2"]).toBeLessThan(x["dataset:d1"]!);
  });

  it("marks the root and keeps every node's label and kind", () => {
    const layout = layoutLineage(graph);
    expect(layout.nodes.filter((n) => n.root).map((n) => n.id)).toEqual(["dataset-version:v2"]);
    expect(layout.nodes.map((n) => [n.kind, n.label])).toEqual(graph.nodes.map((n) => [n.kind, n.label]));
  });

  it("names each edge by its relation, its label between the two boxes", () => {
    const layout = layoutLineage(graph);
    expect(layout.edges.map((e) => e.relation)).toEqual(["version-of", "trained", "produced"]);
    const produced = layout.edges.find((e) => e.relation === "produced")!;
    const job = layout.nodes.find((n) => n.id === "training-job:j1")!;
    const model = layout.nodes.find((n) => n.id === "model:m1")!;
    expect(produced.labelX).toBeGreaterThan(job.x + job.width);
    expect(produced.labelX).toBeLessThan(model.x);
    expect(produced.path.startsWith("M ")).toBe(true);
  });

  it("leaves out edges to nodes the answer does not hold, and repeated edges", () => {
    const layout = layoutLineage({
      ...graph,
      edges: [...graph.edges, graph.edges[0]!, { source: "model:m1", target: "serving-endpoint:gone", relation: "served-by" }],
    });
    expect(layout.edges).toHaveLength(3);
  });

  it("stacks the labels of two relations between the same pair", () => {
    const layout = layoutLineage({
      root: "dataset-version:v3",
      nodes: [node("dataset-version", "v3"), node("dataset-version", "v1")],
      edges: [
        { source: "dataset-version:v1", target: "dataset-version:v3", relation: "derived-from" },
        { source: "dataset-version:v1", target: "dataset-version:v3", relation: "restored-from" },
      ],
    });
    const [a, b] = layout.edges;
    expect(a!.path).toBe(b!.path);
    expect(a!.labelY).not.toBe(b!.labelY);
  });

  it("draws an empty graph as nothing", () => {
    const layout = layoutLineage({ root: "model:x", nodes: [], edges: [] });
    expect(layout.nodes).toEqual([]);
    expect(layout.edges).toEqual([]);
  });
});

describe("nodeLink", () => {
  it("links each kind to the console's own page", () => {
    expect(nodeLink({ kind: "dataset", entityId: "d1", page: "/catalog/datasets/d1" })).toBe("/datasets/d1");
    expect(nodeLink({ kind: "model", entityId: "m 1", page: "/catalog/models/m 1" })).toBe("/models/m%201");
    expect(nodeLink({ kind: "pipeline", entityId: "p1", page: "/workflows/pipelines/p1" })).toBe("/pipelines/p1");
    expect(nodeLink({ kind: "training-job", entityId: "j1" })).toBe("/training/j1");
    expect(nodeLink({ kind: "serving-endpoint", entityId: "e1" })).toBe("/serving/e1");
  });

  it("links a kind without a page of its own to the graph around it", () => {
    expect(nodeLink({ kind: "dataset-version", entityId: "v1", page: null })).toBe("/lineage?node=dataset-version%3Av1");
  });

  it("links an experiment run, which has no console page, to the graph around it", () => {
    expect(nodeLink({ kind: "experiment-run", entityId: "r1", page: "/experiments/runs/r1" })).toBe("/lineage?node=experiment-run%3Ar1");
  });

  it("follows the API's page for an unknown kind only when it is a path of this site", () => {
    expect(nodeLink({ kind: "report", entityId: "r1", page: "/reports/r1" })).toBe("/reports/r1");
    expect(nodeLink({ kind: "report", entityId: "r1", page: "//evil.example/x" })).toBe("/lineage?node=report%3Ar1");
    expect(nodeLink({ kind: "report", entityId: "r1", page: "javascript:alert(1)" })).toBe("/lineage?node=report%3Ar1");
  });

  it("names the route of the graph around a node", () => {
    expect(lineageRoute("dataset", "d1")).toEqual({ path: "/lineage", query: { node: "dataset:d1" } });
  });
});
