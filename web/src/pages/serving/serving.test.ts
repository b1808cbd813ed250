import { describe, expect, it } from "vitest";
import { checkScaling, scalingOf, type Deployment, type Framework, type ScalingDraft } from "./serving";

function framework(extra: Partial<Framework> = {}): Framework {
  return {
    name: "canaried",
    displayName: "Canaried",
    plugin: "canaried",
    protocols: ["openai"],
    supportsAutoscaling: true,
    supportsCanary: true,
    supportsGpu: false,
    supportsScaleToZero: false,
    scaleMetrics: ["concurrency", "rps"],
    runtimes: ["server-a", "server-b"],
    default: false,
    ...extra,
  };
}

const DRAFT: ScalingDraft = { minReplicas: 1, maxReplicas: 2, targetOngoingRequests: "", scaleMetric: "", scaleTarget: "" };

describe("checkScaling: scale metric and target", () => {
  it("sends the metric and target a framework names", () => {
    const { value, errors } = checkScaling({ ...DRAFT, scaleMetric: "rps", scaleTarget: 40 }, framework());
    expect(errors).toEqual({});
    expect(value).toEqual({ minReplicas: 1, maxReplicas: 2, targetOngoingRequests: null, scaleMetric: "rps", scaleTarget: 40 });
  });

  it("leaves both to the framework when empty", () => {
    const { value } = checkScaling(DRAFT, framework());
    expect(value.scaleMetric).toBeNull();
    expect(value.scaleTarget).toBeNull();
  });

  it("refuses a metric the framework does not name and a target that is not a whole number above 0", () => {
    const { errors } = checkScaling({ ...DRAFT, scaleMetric: "memory", scaleTarget: 2.5 }, framework());
    expect(errors["autoscaling.scaleMetric"]).toBe("One of concurrency, rps, or the framework's default.");
    expect(errors["autoscaling.scaleTarget"]).toBe("A whole number above 0, or empty for the framework's default.");
    expect(checkScaling({ ...DRAFT, scaleTarget: 0 }, framework()).errors["autoscaling.scaleTarget"]).toBeDefined();
  });

  it("sends neither to a framework without scale metrics", () => {
    const { value, errors } = checkScaling({ ...DRAFT, scaleMetric: "rps", scaleTarget: 0 }, framework({ scaleMetrics: [] }));
    expect(errors).toEqual({});
    expect(value.scaleMetric).toBeNull();
    expect(value.scaleTarget).toBeNull();
  });

  it("takes 0 replicas only where the framework scales to zero", () => {
    expect(checkScaling({ ...DRAFT, minReplicas: 0 }, framework({ supportsScaleToZero: true })).errors).toEqual({});
    expect(checkScaling({ ...DRAFT, minReplicas: 0 }, framework()).errors["autoscaling.minReplicas"]).toContain("cannot scale to zero");
  });
});

describe("scalingOf", () => {
  it("reads the scale metric and target from the spec", () => {
    const d: Deployment = {
      endpointId: "e",
      provider: "canaried",
      externalId: "x",
      state: "ready",
      spec: { autoscaling: { minReplicas: 0, maxReplicas: 3, targetOngoingRequests: null, scaleMetric: "concurrency", scaleTarget: 8 } },
      status: {},
      syncedAt: null,
      degraded: false,
    };
    expect(scalingOf(d)).toEqual({ minReplicas: 0, maxReplicas: 3, targetOngoingRequests: null, scaleMetric: "concurrency", scaleTarget: 8 });
  });
});
