// What the serving pages share: the frameworks and what each can do, the endpoint states
// that still change, reading a deployment's free-form spec and status, and the checks of
// the scaling settings (the same on the deploy form and the detail page's scaling edit).
import { api, unwrap, type Schemas } from "@/api/client";

export type Framework = Schemas["FrameworkOut"];
export type Endpoint = Schemas["EndpointOut"];
export type Deployment = Schemas["DeploymentOut"];
export type EndpointHealth = Schemas["EndpointHealthOut"];

/** the enabled serving frameworks with their capabilities */
export function fetchFrameworks(): Promise<Framework[]> {
  return unwrap(api.GET("/llm-ops/v1/serving/frameworks"));
}

/** an endpoint's name, for a link to it */
export async function fetchEndpointName(endpointId: string): Promise<string> {
  const e = await unwrap(api.GET("/llm-ops/v1/serving/endpoints/{endpointId}", { params: { path: { endpointId } } }));
  return e.name;
}

/** the capabilities a framework declares, as the pages list them */
export function capabilityList(f: Framework): { key: string; label: string; on: boolean }[] {
  return [
    { key: "autoscaling", label: "Autoscaling", on: f.supportsAutoscaling },
    { key: "scale-to-zero", label: "Scale to zero", on: f.supportsScaleToZero },
    { key: "canary", label: "Canary traffic", on: f.supportsCanary },
    { key: "gpu", label: "GPUs", on: f.supportsGpu },
  ];
}

/** States after which an endpoint stays as it is until someone changes it. */
const SETTLED = new Set(["ready", "failed"]);
export function isSettled(status: string | null | undefined): boolean {
  return SETTLED.has((status ?? "").toLowerCase());
}

// -- a deployment's spec and status (free-form JSON, keys in camelCase) ------------------

export interface Replica {
  name: string;
  state: string;
  message: string;
}

export interface Scaling {
  minReplicas: number;
  maxReplicas: number;
  targetOngoingRequests: number | null;
  /** one of the framework's scaleMetrics, or null for its default */
  scaleMetric: string | null;
  scaleTarget: number | null;
}

function record(value: unknown): Record<string, unknown> {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export function replicasOf(d: Deployment): Replica[] {
  const list = record(d.status).replicas;
  if (!Array.isArray(list)) return [];
  return list.map((r) => {
    const row = record(r);
    return { name: str(row.name) ?? "?", state: str(row.state) ?? "unknown", message: str(row.message) ?? "" };
  });
}

export function scalingOf(d: Deployment): Scaling {
  const a = record(record(d.spec).autoscaling);
  return {
    minReplicas: num(a.minReplicas) ?? 1,
    maxReplicas: num(a.maxReplicas) ?? 1,
    targetOngoingRequests: num(a.targetOngoingRequests),
    scaleMetric: str(a.scaleMetric),
    scaleTarget: num(a.scaleTarget),
  };
}

export function deploymentFacts(d: Deployment): {
  message: string | null;
  desiredReplicas: number | null;
  modelUri: string | null;
  uiUrl: string | null;
  options: Record<string, unknown>;
  resources: Record<string, unknown>;
} {
  const status = record(d.status);
  const spec = record(d.spec);
  return {
    message: str(status.message) || null,
    desiredReplicas: num(status.desiredReplicas),
    modelUri: str(spec.modelUri),
    uiUrl: str(status.uiUrl),
    options: record(spec.options),
    resources: record(spec.resources),
  };
}

// -- checks ----------------------------------------------------------------------------

export const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const NAME_RULE = "Lower-case letters, digits and '-', up to 63, starting and ending with a letter or digit.";

export interface ScalingDraft {
  minReplicas: number | "";
  maxReplicas: number | "";
  targetOngoingRequests: number | "";
  /** "" for the framework's default */
  scaleMetric: string;
  scaleTarget: number | "";
}

/**
 * The scaling settings as the API takes them, and the errors by field name (the API's
 * names: autoscaling.minReplicas …). A framework without autoscaling runs a fixed number
 * of replicas: min = max, no target. The scale metric and its target are sent only to a
 * framework that names scale metrics.
 */
export function checkScaling(
  draft: ScalingDraft,
  framework: Framework | null,
): { value: Scaling; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const autoscaling = framework?.supportsAutoscaling ?? false;
  const lowest = framework?.supportsScaleToZero ? 0 : 1;
  const min = draft.minReplicas;
  const max = autoscaling ? draft.maxReplicas : draft.minReplicas;
  if (min === "" || !Number.isInteger(min) || min < lowest) {
    errors["autoscaling.minReplicas"] =
      lowest === 0 ? "A whole number, 0 or more." : "A whole number, 1 or more (this framework cannot scale to zero).";
  }
  if (autoscaling) {
    if (max === "" || !Number.isInteger(max) || max < 1) errors["autoscaling.maxReplicas"] = "A whole number, 1 or more.";
    else if (min !== "" && Number.isInteger(min) && max < min) {
      errors["autoscaling.maxReplicas"] = "At least the minimum.";
    }
    const target = draft.targetOngoingRequests;
    if (target !== "" && !(Number(target) > 0)) {
      errors["autoscaling.targetOngoingRequests"] = "A number above 0, or empty for the framework's default.";
    }
  }
  const metrics = autoscaling ? (framework?.scaleMetrics ?? []) : [];
  if (metrics.length) {
    if (draft.scaleMetric && !metrics.includes(draft.scaleMetric)) {
      errors["autoscaling.scaleMetric"] = `One of ${metrics.join(", ")}, or the framework's default.`;
    }
    const scaleTarget = draft.scaleTarget;
    if (scaleTarget !== "" && !(Number.isInteger(scaleTarget) && scaleTarget > 0)) {
      errors["autoscaling.scaleTarget"] = "A whole number above 0, or empty for the framework's default.";
    }
  }
  const target = draft.targetOngoingRequests;
  return {
    value: {
      minReplicas: Number(min),
      maxReplicas: Number(max),
      targetOngoingRequests: autoscaling && target !== "" ? Number(target) : null,
      scaleMetric: metrics.length && draft.scaleMetric ? draft.scaleMetric : null,
      scaleTarget: metrics.length && draft.scaleTarget !== "" ? Number(draft.scaleTarget) : null,
    },
    errors,
  };
}

/** name/value rows of framework options, values read as JSON when they can be */
export function readOptions(rows: { key: string; value: string }[]): {
  value: Record<string, unknown>;
  rowErrors: Record<number, string>;
} {
  const value: Record<string, unknown> = {};
  const rowErrors: Record<number, string> = {};
  rows.forEach((row, i) => {
    const key = row.key.trim();
    if (!key) {
      if (row.value.trim()) rowErrors[i] = "Give the option a name.";
      return;
    }
    if (key in value) {
      rowErrors[i] = `${key} is already set above.`;
      return;
    }
    const text = row.value.trim();
    try {
      value[key] = JSON.parse(text);
    } catch {
      value[key] = text;
    }
  });
  return { value, rowErrors };
}

/** how a value of a spec reads on the page */
export function show(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}
