import { describe, expect, it } from "vitest";
import {
  checkCanaryPercent,
  desiredCanary,
  modelLabel,
  presentRollout,
  rolloutMoving,
  rolloutOf,
  scaleText,
  settingsOf,
  trafficInStep,
  trafficOf,
  type NamedModel,
} from "./rollout";
import type { Deployment } from "./serving";

/** a deployment as GET .../deployment answers it (keys camelized by the API) */
function deployment(spec: Record<string, unknown>, status: Record<string, unknown>): Deployment {
  return {
    endpointId: "e1",
    provider: "canaried",
    externalId: "chat",
    state: "ready",
    spec,
    status,
    syncedAt: null,
    degraded: false,
  };
}

const MODELS: NamedModel[] = [
  { id: "m1", name: "llama", version: "1", uri: "s3://models/llama-1" },
  { id: "m2", name: "llama", version: "2", uri: "s3://models/llama-2" },
  { id: "m3", name: "draft", version: "1", uri: null },
];

describe("trafficOf", () => {
  it("reads the splits with the stable one first", () => {
    const d = deployment(
      {},
      {
        traffic: [
          { tag: "canary", modelUri: "s3://models/llama-2", percent: 20 },
          { tag: "stable", modelUri: "s3://models/llama-1", percent: 80 },
        ],
      },
    );
    expect(trafficOf(d)).toEqual([
      { tag: "stable", modelUri: "s3://models/llama-1", percent: 80 },
      { tag: "canary", modelUri: "s3://models/llama-2", percent: 20 },
    ]);
  });

  it("is empty when the framework reports no traffic", () => {
    expect(trafficOf(deployment({}, {}))).toEqual([]);
    expect(trafficOf(deployment({}, { traffic: "nonsense" }))).toEqual([]);
  });
});

describe("rolloutOf", () => {
  it("reads the state, message and revisions", () => {
    const d = deployment(
      {},
      {
        rollout: {
          state: "progressing",
          message: "revision chat-00002 is starting",
          latestRevision: "chat-00002",
          readyRevision: "chat-00001",
          stableRevision: "chat-00001",
        },
      },
    );
    expect(rolloutOf(d)).toEqual({
      state: "progressing",
      message: "revision chat-00002 is starting",
      latestRevision: "chat-00002",
      readyRevision: "chat-00001",
      stableRevision: "chat-00001",
    });
  });

  it("is null for a framework without revisions", () => {
    expect(rolloutOf(deployment({}, { rollout: null }))).toBeNull();
    expect(rolloutOf(deployment({}, {}))).toBeNull();
  });

  it("leaves out the revisions the framework does not name", () => {
    const r = rolloutOf(deployment({}, { rollout: { state: "stable" } }));
    expect(r).toEqual({ state: "stable", message: "", latestRevision: null, readyRevision: null, stableRevision: null });
  });
});

describe("modelLabel", () => {
  it("names a catalog model by its URI", () => {
    expect(modelLabel("s3://models/llama-2", MODELS)).toEqual({ text: "llama (version 2)", modelId: "m2" });
  });

  it("shows the URI of a model the catalog does not have", () => {
    expect(modelLabel("s3://elsewhere/x", MODELS)).toEqual({ text: "s3://elsewhere/x", modelId: null });
    expect(modelLabel("", MODELS)).toEqual({ text: "—", modelId: null });
  });
});

describe("presentRollout", () => {
  const split = [
    { tag: "stable", modelUri: "s3://models/llama-1", percent: 80 },
    { tag: "canary", modelUri: "s3://models/llama-2", percent: 20 },
  ];
  const allStable = [{ tag: "stable", modelUri: "s3://models/llama-1", percent: 100 }];
  const rollout = (state: string) => ({ state, message: "", latestRevision: null, readyRevision: null, stableRevision: null });

  it("says what keeps serving while a rollout progresses", () => {
    const view = presentRollout(rollout("progressing"), allStable, MODELS);
    expect(view).toMatchObject({ state: "progressing", tone: "running", title: "Progressing" });
    expect(view.serves).toBe("Meanwhile the previous configuration keeps serving: 100% stable (llama (version 1)).");
  });

  it("says the last good revision still serves after a failure, in a tone of its own", () => {
    const view = presentRollout(rollout("failed"), allStable, MODELS);
    expect(view.tone).toBe("failure");
    expect(view.tone).not.toBe(presentRollout(rollout("progressing"), allStable, MODELS).tone);
    expect(view.serves).toBe("The newest revision is not serving; the last good one still is: 100% stable (llama (version 1)).");
  });

  it("says when nothing serves: a first deployment on its way, or failed", () => {
    expect(presentRollout(rollout("progressing"), [], MODELS).serves).toBe("Nothing serves traffic until it is ready.");
    expect(presentRollout(rollout("failed"), [], MODELS).serves).toBe("Nothing serves traffic.");
  });

  it("lists a canary's split", () => {
    const view = presentRollout(rollout("canary"), split, MODELS);
    expect(view.tone).toBe("warning");
    expect(view.serves).toBe("Traffic is split: 80% stable (llama (version 1)), 20% canary (llama (version 2)).");
  });

  it("leaves out splits that take nothing and reads an unknown state as neutral", () => {
    const view = presentRollout(rollout("Paused"), [...allStable, { tag: "canary", modelUri: "x", percent: 0 }], []);
    expect(view).toMatchObject({ state: "paused", tone: "neutral", title: "Paused" });
    expect(view.serves).toBe("Serving: 100% stable (s3://models/llama-1).");
  });
});

describe("trafficInStep and rolloutMoving", () => {
  const canarySpec = { modelUri: "s3://models/llama-1", canary: { modelUri: "s3://models/llama-2", trafficPercent: 20 } };
  const split = [
    { tag: "stable", modelUri: "s3://models/llama-1", percent: 80 },
    { tag: "canary", modelUri: "s3://models/llama-2", percent: 20 },
  ];

  it("is in step when the canary takes the share the spec asks for", () => {
    expect(trafficInStep(deployment(canarySpec, { traffic: split }))).toBe(true);
  });

  it("is not while the framework still sends everything to the stable model", () => {
    const d = deployment(canarySpec, { traffic: [{ tag: "stable", modelUri: "s3://models/llama-1", percent: 100 }] });
    expect(trafficInStep(d)).toBe(false);
  });

  it("is not while a rolled-back canary still takes traffic", () => {
    expect(trafficInStep(deployment({ modelUri: "s3://models/llama-1", canary: null }, { traffic: split }))).toBe(false);
  });

  it("has settled when the rollout failed, or when there is no traffic to compare", () => {
    const failed = { traffic: [{ tag: "stable", modelUri: "s3://models/llama-1", percent: 100 }], rollout: { state: "failed" } };
    expect(trafficInStep(deployment(canarySpec, failed))).toBe(true);
    expect(trafficInStep(deployment(canarySpec, {}))).toBe(true);
  });

  it("moves only while the rollout progresses", () => {
    expect(rolloutMoving(deployment({}, { rollout: { state: "progressing" } }))).toBe(true);
    expect(rolloutMoving(deployment({}, { rollout: { state: "canary" } }))).toBe(false);
    expect(rolloutMoving(deployment({}, {}))).toBe(false);
    expect(rolloutMoving(null)).toBe(false);
  });
});

describe("desiredCanary and settingsOf", () => {
  it("reads the spec's canary", () => {
    const d = deployment({ canary: { modelUri: "s3://m", trafficPercent: 30 } }, {});
    expect(desiredCanary(d)).toEqual({ modelUri: "s3://m", trafficPercent: 30 });
    expect(desiredCanary(deployment({ canary: null }, {}))).toBeNull();
  });

  it("reads the runtime, the scale metric and the GPUs", () => {
    const d = deployment(
      { runtime: "server-b", autoscaling: { minReplicas: 0, maxReplicas: 3, scaleMetric: "rps", scaleTarget: 50 }, resources: { gpus: 1 } },
      {},
    );
    expect(settingsOf(d)).toEqual({ runtime: "server-b", scaleMetric: "rps", scaleTarget: 50, gpus: 1 });
    expect(settingsOf(deployment({}, {}))).toEqual({ runtime: null, scaleMetric: null, scaleTarget: null, gpus: 0 });
  });

  it("words the scale metric", () => {
    const s = { runtime: null, gpus: 0 };
    expect(scaleText({ ...s, scaleMetric: "concurrency", scaleTarget: 10 })).toBe("concurrency, target 10 per replica");
    expect(scaleText({ ...s, scaleMetric: "rps", scaleTarget: null })).toBe("rps, the framework's default target");
    expect(scaleText({ ...s, scaleMetric: null, scaleTarget: 5 })).toBe("the framework's default metric, target 5 per replica");
    expect(scaleText({ ...s, scaleMetric: null, scaleTarget: null })).toBeNull();
  });
});

describe("checkCanaryPercent", () => {
  it("takes some of the traffic, never none or all", () => {
    expect(checkCanaryPercent(1)).toBeNull();
    expect(checkCanaryPercent(99)).toBeNull();
    for (const bad of [0, 100, 12.5, -3, ""] as const) {
      expect(checkCanaryPercent(bad)).toBe("A whole number from 1 to 99.");
    }
  });
});
