// One mapping from every status the platform reports to a badge tone, so a "failed"
// looks the same on jobs, pipelines, stages, operations and integrations.

export type Tone = "neutral" | "running" | "success" | "failure" | "warning";

const TONES: Record<string, Tone> = {
  pending: "neutral",
  queued: "neutral",
  registered: "neutral",
  skipped: "neutral",
  killed: "neutral",
  scheduled: "neutral",
  unknown: "neutral",
  running: "running",
  importing: "running",
  deploying: "running",
  retrying: "warning",
  cancelling: "warning",
  succeeded: "success",
  pushed: "success",
  finished: "success",
  ready: "success",
  healthy: "success",
  ok: "success",
  success: "success",
  up: "success",
  active: "success",
  enabled: "success",
  closed: "success",
  failed: "failure",
  error: "failure",
  denied: "failure",
  down: "failure",
  dead: "failure",
  unhealthy: "failure",
  open: "failure",
  revoked: "neutral",
  cancelled: "neutral",
  canceled: "neutral",
  discarded: "neutral",
  archived: "neutral",
  disabled: "neutral",
  degraded: "warning",
  "half-open": "warning",
  paused: "warning",
  stale: "warning",
};

export function toneOf(status: string | null | undefined): Tone {
  return TONES[(status ?? "unknown").toLowerCase()] ?? "neutral";
}

/** Statuses after which nothing changes any more: pages stop polling. */
export const FINAL = new Set(["succeeded", "failed", "cancelled", "dead", "discarded"]);
export function isFinal(status: string | null | undefined): boolean {
  return FINAL.has((status ?? "").toLowerCase());
}

/** The statuses of a run: a pipeline's, a training job's (their lists filter by them). */
export const RUN_STATUSES = ["pending", "running", "succeeded", "failed", "cancelled"] as const;
