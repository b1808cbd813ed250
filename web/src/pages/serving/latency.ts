// Durations as the serving pages show them. The numbers themselves come from the server
// (GET /serving/endpoints/{id}/traffic computes the window's quantiles).

/** "12 ms", "1.4 s"; "—" for nothing */
export function formatMs(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return "—";
  if (value < 10) return `${value.toFixed(1)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
}
