// How the endpoint page presents a deployment's traffic and rollout: which model each
// split serves (by its catalog name when the URI is a catalog model's), where a rollout
// stands and what serves traffic meanwhile, whether the page should keep reading the
// deployment, and the settings a framework keeps in the spec (runtime, scale metric).
// Framework-agnostic: everything comes from the deployment's spec and status as the API
// answers them (keys in camelCase).
import type { Tone } from "@/lib/status";
import type { Deployment } from "./serving";

export interface TrafficSplit {
  tag: string;
  modelUri: string;
  percent: number;
}

export interface Rollout {
  /** stable, progressing, canary or failed (anything else a framework may say) */
  state: string;
  message: string;
  latestRevision: string | null;
  readyRevision: string | null;
  stableRevision: string | null;
}

export interface CanarySetting {
  modelUri: string;
  trafficPercent: number;
}

/** what the page needs of a catalog model to name it */
export interface NamedModel {
  id: string;
  name: string;
  version: string;
  uri: string | null;
}

function record(value: unknown): Record<string, unknown> {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
const str = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

// -- reading the deployment ------------------------------------------------------------

/** the traffic splits the framework reports, stable first */
export function trafficOf(d: Deployment): TrafficSplit[] {
  const list = record(d.status).traffic;
  if (!Array.isArray(list)) return [];
  const rows = list.map((t) => {
    const row = record(t);
    return { tag: str(row.tag) ?? "?", modelUri: str(row.modelUri) ?? "", percent: num(row.percent) ?? 0 };
  });
  const rank = (tag: string): number => (tag === "stable" ? 0 : tag === "canary" ? 1 : 2);
  return rows.map((r, i) => ({ r, i })).sort((a, b) => rank(a.r.tag) - rank(b.r.tag) || a.i - b.i).map(({ r }) => r);
}

/** where the rollout stands, when the framework keeps revisions (null otherwise) */
export function rolloutOf(d: Deployment): Rollout | null {
  const raw = record(d.status).rollout;
  if (!raw || typeof raw !== "object") return null;
  const r = record(raw);
  const state = str(r.state);
  if (!state) return null;
  return {
    state,
    message: str(r.message) ?? "",
    latestRevision: str(r.latestRevision),
    readyRevision: str(r.readyRevision),
    stableRevision: str(r.stableRevision),
  };
}

/** the canary the platform wants (the spec), or null */
export function desiredCanary(d: Deployment): CanarySetting | null {
  const c = record(record(d.spec).canary);
  const modelUri = str(c.modelUri);
  const trafficPercent = num(c.trafficPercent);
  return modelUri !== null && trafficPercent !== null ? { modelUri, trafficPercent } : null;
}

/** the settings a framework may keep in the spec besides the replica range */
export interface ServingSettings {
  runtime: string | null;
  scaleMetric: string | null;
  scaleTarget: number | null;
  gpus: number;
}

export function settingsOf(d: Deployment): ServingSettings {
  const spec = record(d.spec);
  const autoscaling = record(spec.autoscaling);
  return {
    runtime: str(spec.runtime),
    scaleMetric: str(autoscaling.scaleMetric),
    scaleTarget: num(autoscaling.scaleTarget),
    gpus: num(record(spec.resources).gpus) ?? 0,
  };
}

// -- presenting ------------------------------------------------------------------------

/** a model URI by its catalog model's name when one has that URI, else the URI itself */
export function modelLabel(uri: string, models: readonly NamedModel[]): { text: string; modelId: string | null } {
  const found = uri ? models.find((m) => m.uri === uri) : undefined;
  return found ? { text: `${found.name} (version ${found.version})`, modelId: found.id } : { text: uri || "—", modelId: null };
}

const TONES: Record<string, Tone> = {
  stable: "success",
  progressing: "running",
  canary: "warning",
  failed: "failure",
};


/** "80% stable (llama (version 1))" for each split that takes traffic */
function serving(traffic: readonly TrafficSplit[], models: readonly NamedModel[]): string {
  const taking = traffic.filter((t) => t.percent > 0);
  if (!taking.length) return "";
  return taking.map((t) => `${t.percent}% ${t.tag} (${modelLabel(t.modelUri, models).text})`).join(", ");
}

export interface RolloutView {
  state: string;
  tone: Tone;
  title: string;
  /** what serves traffic now, in words: while rolling out or after a failure, the old one */
  serves: string;
}

/** The rollout's badge and the sentence that says what serves traffic meanwhile. */
export function presentRollout(
  rollout: Rollout,
  traffic: readonly TrafficSplit[],
  models: readonly NamedModel[],
): RolloutView {
  const state = rollout.state.toLowerCase();
  const now = serving(traffic, models);
  let serves: string;
  switch (state) {
    case "progressing":
      serves = now
        ? `Meanwhile the previous configuration keeps serving: ${now}.`
        : "Nothing serves traffic until it is ready.";
      break;
    case "failed":
      serves = now
        ? `The newest revision is not serving; the last good one still is: ${now}.`
        : "Nothing serves traffic.";
      break;
    case "canary":
      serves = now ? `Traffic is split: ${now}.` : "A canary takes part of the traffic.";
      break;
    default:
      serves = now ? `Serving: ${now}.` : "";
  }
  const title = state ? state[0]!.toUpperCase() + state.slice(1) : "Unknown";
  return { state, tone: TONES[state] ?? "neutral", title, serves };
}

/**
 * Whether the framework's traffic already is what the spec asks for: the canary's share
 * when a canary is wanted, else none. A failed rollout has settled too (the last good
 * revision serves and stays); a framework that reports no traffic has nothing to compare.
 */
export function trafficInStep(d: Deployment): boolean {
  const traffic = trafficOf(d);
  if (!traffic.length || rolloutOf(d)?.state === "failed") return true;
  const wanted = desiredCanary(d);
  const canary = traffic.find((t) => t.tag === "canary");
  if (wanted === null) return !canary || canary.percent === 0;
  return canary !== undefined && canary.percent === wanted.trafficPercent && canary.modelUri === wanted.modelUri;
}

/** Whether the rollout is still on its way: the page keeps reading the deployment. */
export function rolloutMoving(d: Deployment | null): boolean {
  return d !== null && rolloutOf(d)?.state === "progressing";
}

/** The share a canary may take from the console: some, never all (that is a promote). */
export function checkCanaryPercent(value: number | ""): string | null {
  return value !== "" && Number.isInteger(value) && value >= 1 && value <= 99 ? null : "A whole number from 1 to 99.";
}

/** the scale metric in words: "concurrency, target 10 per replica" */
export function scaleText(s: ServingSettings): string | null {
  if (s.scaleMetric === null && s.scaleTarget === null) return null;
  const metric = s.scaleMetric ?? "the framework's default metric";
  return s.scaleTarget === null ? `${metric}, the framework's default target` : `${metric}, target ${s.scaleTarget} per replica`;
}
