// Model registries (the Hugging Face Hub) in the console: the rows of a search of the
// catalog and a registry together, the revision picker of an import, an import's
// progress, an update check in words, and the small parsing an import or an export form
// needs. Pure functions only; the pages (ModelImportPage, ModelDetailPage, ModelListPage)
// and components (ImportProgress, ModelRegistryPanel) draw them.
import type { Schemas } from "@/api/client";
import { formatBytes, humanize } from "@/lib/format";

type ModelOut = Schemas["ModelOut"];
type RegistryModelSummary = Schemas["RegistryModelSummaryOut"];
type RegistryRevision = Schemas["RegistryRevisionOut"];
type ImportStatus = Schemas["ImportStatusOut"];
type SearchHit = Schemas["ModelSearchHitOut"];

/** ``T`` with its lists ``K`` always there (the API sends them; its schema makes them
 * optional because they have defaults). */
type WithLists<T, K extends keyof T> = Omit<T, K> & { [P in K]-?: NonNullable<T[P]> };

export type RegistryMetadata = WithLists<
  Schemas["RegistryMetadataOut"],
  "tags" | "files" | "links" | "revisions" | "catalogModelIds"
>;
export type RegistryCommit = WithLists<Schemas["RegistryCommitOut"], "authors">;
export type UpdateCheck = Omit<
  WithLists<Schemas["UpdateCheckOut"], "filesAdded" | "filesRemoved" | "filesModified">,
  "commits"
> & { commits: RegistryCommit[] };

/** A repository's metadata with every list there. */
export function filledMetadata(m: Schemas["RegistryMetadataOut"]): RegistryMetadata {
  return {
    ...m,
    tags: m.tags ?? [],
    files: m.files ?? [],
    links: m.links ?? [],
    revisions: m.revisions ?? [],
    catalogModelIds: m.catalogModelIds ?? [],
  };
}

/** An update check with every list there. */
export function filledCheck(c: Schemas["UpdateCheckOut"]): UpdateCheck {
  return {
    ...c,
    filesAdded: c.filesAdded ?? [],
    filesRemoved: c.filesRemoved ?? [],
    filesModified: c.filesModified ?? [],
    commits: (c.commits ?? []).map((commit) => ({ ...commit, authors: commit.authors ?? [] })),
  };
}

/** The registries the console knows by name; another shows as its provider name. */
const REGISTRY_NAMES: Record<string, string> = { hf: "Hugging Face" };

/** "catalog" → "Catalog", "hf" → "Hugging Face": where a search result comes from. */
export function sourceLabel(source: string): string {
  if (source === "catalog") return "Catalog";
  return REGISTRY_NAMES[source] ?? humanize(source);
}

// -- commits and revisions ------------------------------------------------------------------

/** The first 12 characters of a commit sha (as the registry's links label it). */
export function shortCommit(sha: string | null | undefined): string {
  if (!sha) return "—";
  return sha.length > 12 ? sha.slice(0, 12) : sha;
}

/** A full commit sha (40 hex digits, git's sha1; 64 for a sha256 repository). */
export function isCommitSha(text: string): boolean {
  return /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i.test(text.trim());
}

/** The revision picker's choice that stands for "a commit typed in". */
export const COMMIT_CHOICE = "@commit";

export interface RevisionOption {
  value: string;
  label: string;
}

/** The picker's choices: the branches (the default one first), then the tags, each with
 * the short commit it points at, then "A commit…". */
export function revisionOptions(revisions: readonly RegistryRevision[]): RevisionOption[] {
  const rank = (r: RegistryRevision) => (r.kind === "branch" ? (r.name === "main" ? 0 : 1) : 2);
  const sorted = [...revisions].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
  return [
    ...sorted.map((r) => ({ value: r.name, label: `${r.name} (${r.kind === "tag" ? "tag" : "branch"}) · ${shortCommit(r.commit)}` })),
    { value: COMMIT_CHOICE, label: "A commit…" },
  ];
}

/** The revision the picker starts on: ``wanted`` (from the URL) when it is a branch or a
 * tag, "main" when the repository has it, else its first branch; a commit sha (or a
 * revision the list does not have, when the list is empty) goes to the commit field. */
export function initialRevision(
  revisions: readonly RegistryRevision[],
  wanted?: string | null,
): { choice: string; commit: string } {
  const want = (wanted ?? "").trim();
  if (want && revisions.some((r) => r.name === want)) return { choice: want, commit: "" };
  if (want) return { choice: COMMIT_CHOICE, commit: want };
  const main = revisions.find((r) => r.kind === "branch" && r.name === "main");
  const branch = main ?? revisions.find((r) => r.kind === "branch") ?? revisions[0];
  return branch ? { choice: branch.name, commit: "" } : { choice: "", commit: "" };
}

/** What the picker asks the registry for: the branch or tag chosen, or the commit typed
 * in; "" (the default branch) when nothing is chosen. An error when the typed commit is
 * not a full sha. */
export function chosenRevision(choice: string, commit: string): { revision: string; error: string | null } {
  if (choice !== COMMIT_CHOICE) return { revision: choice, error: null };
  const typed = commit.trim();
  if (!typed) return { revision: "", error: "Give the commit's full sha (40 hexadecimal digits)." };
  if (!isCommitSha(typed)) return { revision: "", error: "A commit is its full sha: 40 hexadecimal digits." };
  return { revision: typed.toLowerCase(), error: null };
}

/** "acme/tiny-model" → "acme-tiny-model": the catalog name an import takes by default. */
export function defaultCatalogName(repoId: string): string {
  return repoId.replace(/\//g, "-");
}

/** A repository id: "owner/name", each part letters, digits, '.', '_' or '-'. */
export function isRepoId(text: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(text.trim()) && text.trim().length <= 96;
}

/** Allow patterns typed one a line or comma-separated: trimmed, empty ones and repeats
 * dropped. */
export function parsePatterns(text: string): string[] {
  const seen = new Set<string>();
  for (const part of text.split(/[\n,]/)) {
    const pattern = part.trim();
    if (pattern) seen.add(pattern);
  }
  return [...seen];
}

/** ``hf://acme/tiny@<sha>`` → its parts; null for a source that names no registry. */
export function parseSource(source: string): { provider: string; repoId: string; revision: string | null } | null {
  const found = /^([a-z][a-z0-9+.-]*):\/\/([^@]+?)(?:@([^@]+))?$/i.exec(source);
  if (!found || !found[1] || !found[2]) return null;
  return { provider: found[1], repoId: found[2], revision: found[3] ?? null };
}

// -- an import's progress -------------------------------------------------------------------

export interface ProgressView {
  /** "Resolving", "Checking", "Downloading", "Done", "Waiting" */
  phase: string;
  /** "3 of 5 files" (null until the files are counted) */
  files: string | null;
  /** "1.2 KB of 4.0 KB" (null until the sizes are known) */
  bytes: string | null;
  /** 0–100, or null when it cannot be told yet (an indeterminate bar) */
  percent: number | null;
  /** importing, ready or failed */
  state: string;
}

/** An imported model's ``importStatus`` (and its ``status``) as the progress panel shows
 * it: the bytes decide the bar once their total is known, the files before that; a model
 * that is ready is at 100 %. */
export function importProgress(status: ImportStatus | null | undefined, modelStatus?: string): ProgressView {
  const state = status?.state ?? modelStatus ?? "importing";
  const p = status?.progress ?? null;
  let phase: string;
  if (state === "ready") phase = "Done";
  else if (state === "failed") phase = "Failed";
  else if (p) phase = humanize(p.phase);
  else phase = status?.operationStatus === "running" ? "Starting" : "Waiting";
  const files = p && p.filesTotal > 0 ? `${p.filesDone} of ${p.filesTotal} ${p.filesTotal === 1 ? "file" : "files"}` : null;
  const total = p?.bytesTotal ?? null;
  const bytes = p && total !== null ? `${formatBytes(p.bytesDone)} of ${formatBytes(total)}` : null;
  let percent: number | null = null;
  if (state === "ready") percent = 100;
  else if (p && total !== null && total > 0) percent = clampPercent((p.bytesDone / total) * 100);
  else if (p && p.filesTotal > 0) percent = clampPercent((p.filesDone / p.filesTotal) * 100);
  else if (p && p.phase === "done") percent = 100;
  return { phase, files, bytes, percent, state };
}

function clampPercent(value: number): number {
  if (!Number.isFinite(value)) return 0;
  return Math.max(0, Math.min(100, Math.floor(value)));
}

// -- an update check ----------------------------------------------------------------------

export interface ChangeRow {
  path: string;
  change: "added" | "removed" | "modified";
  /** "84 B", "21 B → 27 B" */
  size: string;
}

/** The files an update check found changed, one row each, by path. */
export function changeRows(check: UpdateCheck): ChangeRow[] {
  const rows: ChangeRow[] = [
    ...check.filesAdded.map((f) => ({ path: f.path, change: "added" as const, size: formatBytes(f.sizeBytes) })),
    ...check.filesRemoved.map((f) => ({ path: f.path, change: "removed" as const, size: formatBytes(f.sizeBytes) })),
    ...check.filesModified.map((f) => ({
      path: f.path,
      change: "modified" as const,
      size: `${formatBytes(f.oldSizeBytes)} → ${formatBytes(f.newSizeBytes)}`,
    })),
  ];
  return rows.sort((a, b) => a.path.localeCompare(b.path));
}

/** An update check in one sentence: "Update available on dev: 2 commits, 1 file added, 1
 * removed, 1 modified." or "Up to date with main." */
export function updateSummary(check: UpdateCheck): string {
  const branch = check.branch ? ` ${check.branch}` : " the default branch";
  if (!check.updateAvailable) return `Up to date with${branch} (${shortCommit(check.latestRevision)}).`;
  const parts: string[] = [];
  const commits = check.commits.length;
  if (commits) parts.push(`${commits}${check.commitsTruncated ? "+" : ""} ${commits === 1 ? "commit" : "commits"}`);
  const counts: [number, string][] = [
    [check.filesAdded.length, "added"],
    [check.filesRemoved.length, "removed"],
    [check.filesModified.length, "modified"],
  ];
  const changed = counts.filter(([n]) => n > 0);
  changed.forEach(([n, what], i) => parts.push(i === 0 ? `${n} ${n === 1 ? "file" : "files"} ${what}` : `${n} ${what}`));
  if (!changed.length) parts.push("no file changed");
  return `Update available on${branch} (${shortCommit(check.latestRevision)}): ${parts.join(", ")}.`;
}

// -- the model list's search --------------------------------------------------------------

/** One row of the model list: a catalog model, or (while the search box has text) a
 * registry's model, marked with where it comes from. */
export type ModelRow =
  | { id: string; source: "catalog"; model: ModelOut }
  | { id: string; source: string; hit: RegistryModelSummary; catalogModelIds: string[] };

export type RegistryRow = Extract<ModelRow, { hit: RegistryModelSummary }>;

export function catalogRow(model: ModelOut): ModelRow {
  return { id: model.id, source: "catalog", model };
}

export function isRegistryRow(row: ModelRow): row is RegistryRow {
  return "hit" in row;
}

/** The registry's hits of a search as rows, narrowed by the list's other filters where
 * the registry says as much (a task is its pipeline tag, a framework its library); none
 * under a status filter, which registry models do not have. */
export function registryRows(
  hits: readonly SearchHit[],
  filters: { task?: string | undefined; framework?: string | undefined; status?: string | undefined },
): RegistryRow[] {
  if (filters.status) return [];
  const task = filters.task?.trim().toLowerCase();
  const framework = filters.framework?.trim().toLowerCase();
  const rows: RegistryRow[] = [];
  for (const item of hits) {
    const hit = item.registryModel;
    if (item.source === "catalog" || !hit) continue;
    if (task && (hit.pipelineTag ?? "").toLowerCase() !== task) continue;
    if (framework && (hit.library ?? "").toLowerCase() !== framework) continue;
    rows.push({ id: `${item.source}:${hit.repoId}`, source: item.source, hit, catalogModelIds: item.catalogModelIds ?? [] });
  }
  return rows;
}

/** The import page, preselected with a registry's repository (and a revision). */
export function importLink(repoId: string, revision?: string | null): string {
  const query = new URLSearchParams({ repoId });
  if (revision) query.set("revision", revision);
  return `/models/import?${query.toString()}`;
}

/** A count as the Hub shows it: 1234 → "1.2k", 3400000 → "3.4M". */
export function compactCount(value: number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  if (value < 1000) return String(value);
  if (value < 1_000_000) return `${(value / 1000).toFixed(value < 10_000 ? 1 : 0)}k`;
  return `${(value / 1_000_000).toFixed(1)}M`;
}
