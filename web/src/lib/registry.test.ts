import { describe, expect, it } from "vitest";
import type { Schemas } from "@/api/client";
import {
  COMMIT_CHOICE,
  changeRows,
  chosenRevision,
  compactCount,
  defaultCatalogName,
  importLink,
  importProgress,
  initialRevision,
  isCommitSha,
  isRepoId,
  parsePatterns,
  parseSource,
  registryRows,
  revisionOptions,
  shortCommit,
  sourceLabel,
  updateSummary,
  filledCheck,
  filledMetadata,
  type UpdateCheck,
} from "./registry";
import { toneOf } from "./status";

const SHA = "b54236a44027b4f184f38ca93519d817eebdfe19";
const OTHER = "bd9458a5023b7ebcfc4323943ab91063c9553b49";

const revisions: Schemas["RegistryRevisionOut"][] = [
  { name: "v1", kind: "tag", commit: SHA },
  { name: "dev", kind: "branch", commit: OTHER },
  { name: "main", kind: "branch", commit: SHA },
];

const COMMIT = { id: OTHER, title: "Update files", message: "", authors: ["acme"] };

function check(overrides: Partial<UpdateCheck> = {}): UpdateCheck {
  return {
    modelId: "m1",
    provider: "hf",
    repoId: "acme/tiny",
    currentRevision: SHA,
    latestRevision: OTHER,
    updateAvailable: true,
    branch: "dev",
    filesAdded: [{ path: "extra.txt", sizeBytes: 1 }],
    filesRemoved: [{ path: "tokenizer.json", sizeBytes: 2 }],
    filesModified: [{ path: "config.json", oldSizeBytes: 21, newSizeBytes: 27 }],
    commits: [COMMIT],
    commitsTruncated: false,
    degraded: false,
    ...overrides,
  };
}

function hit(repoId: string, extra: Partial<Schemas["RegistryModelSummaryOut"]> = {}, ids: string[] = []): Schemas["ModelSearchHitOut"] {
  return { source: "hf", registryModel: { repoId, tags: [], ...extra }, catalogModelIds: ids };
}

describe("sources and commits", () => {
  it("names where a result comes from", () => {
    expect(sourceLabel("catalog")).toBe("Catalog");
    expect(sourceLabel("hf")).toBe("Hugging Face");
    expect(sourceLabel("model_zoo")).toBe("Model zoo");
  });

  it("shortens a commit to 12 characters and knows a full sha", () => {
    expect(shortCommit(SHA)).toBe("b54236a44027");
    expect(shortCommit(null)).toBe("—");
    expect(isCommitSha(SHA)).toBe(true);
    expect(isCommitSha(SHA.toUpperCase())).toBe(true);
    expect(isCommitSha(SHA.slice(0, 12))).toBe(false);
    expect(isCommitSha("main")).toBe(false);
  });

  it("reads a registry source into its repository and pinned commit", () => {
    expect(parseSource(`hf://acme/tiny-model@${SHA}`)).toEqual({ provider: "hf", repoId: "acme/tiny-model", revision: SHA });
    expect(parseSource("hf://acme/tiny")).toEqual({ provider: "hf", repoId: "acme/tiny", revision: null });
    expect(parseSource("manual")).toBeNull();
  });
});

describe("the revision picker", () => {
  it("lists main, the other branches, then the tags, each with its short commit, then a commit", () => {
    expect(revisionOptions(revisions)).toEqual([
      { value: "main", label: "main (branch) · b54236a44027" },
      { value: "dev", label: "dev (branch) · bd9458a5023b" },
      { value: "v1", label: "v1 (tag) · b54236a44027" },
      { value: COMMIT_CHOICE, label: "A commit…" },
    ]);
  });

  it("starts on main, or the revision the URL names, or a commit typed in", () => {
    expect(initialRevision(revisions)).toEqual({ choice: "main", commit: "" });
    expect(initialRevision(revisions, "v1")).toEqual({ choice: "v1", commit: "" });
    expect(initialRevision(revisions, SHA)).toEqual({ choice: COMMIT_CHOICE, commit: SHA });
    expect(initialRevision([{ name: "trunk", kind: "branch", commit: SHA }])).toEqual({ choice: "trunk", commit: "" });
    expect(initialRevision([])).toEqual({ choice: "", commit: "" });
  });

  it("asks for the branch or tag chosen, or a full commit sha typed in", () => {
    expect(chosenRevision("dev", "")).toEqual({ revision: "dev", error: null });
    expect(chosenRevision(COMMIT_CHOICE, ` ${SHA.toUpperCase()} `)).toEqual({ revision: SHA, error: null });
    expect(chosenRevision(COMMIT_CHOICE, "b54236a").error).toContain("40 hexadecimal digits");
    expect(chosenRevision(COMMIT_CHOICE, "").error).toContain("full sha");
  });
});

describe("the import form", () => {
  it("names the catalog model after the repository and checks repository ids", () => {
    expect(defaultCatalogName("acme/tiny-model")).toBe("acme-tiny-model");
    expect(isRepoId("acme/tiny-model")).toBe(true);
    expect(isRepoId("acme")).toBe(false);
    expect(isRepoId("acme/../x")).toBe(false);
    expect(isRepoId("a/b/c")).toBe(false);
  });

  it("reads allow patterns one a line or comma-separated, without blanks or repeats", () => {
    expect(parsePatterns("*.safetensors, *.json\n\n  tokenizer/*  \n*.json")).toEqual(["*.safetensors", "*.json", "tokenizer/*"]);
    expect(parsePatterns("   ")).toEqual([]);
  });

  it("links the import page with the repository and revision in its query", () => {
    expect(importLink("acme/tiny-model")).toBe("/models/import?repoId=acme%2Ftiny-model");
    expect(importLink("acme/tiny", "v1")).toBe("/models/import?repoId=acme%2Ftiny&revision=v1");
  });
});

describe("an import's progress", () => {
  const status = (progress: Schemas["ImportProgressOut"] | null, state = "importing"): Schemas["ImportStatusOut"] => ({
    state,
    operationStatus: "running",
    progress,
    attempts: 1,
  });

  it("follows the bytes once their total is known", () => {
    const view = importProgress(status({ phase: "downloading", filesTotal: 5, filesDone: 2, bytesTotal: 2048, bytesDone: 512 }));
    expect(view).toEqual({ phase: "Downloading", files: "2 of 5 files", bytes: "512 B of 2.0 KB", percent: 25, state: "importing" });
  });

  it("follows the files while the sizes are unknown, and waits without a number before that", () => {
    expect(importProgress(status({ phase: "checking", filesTotal: 4, filesDone: 1, bytesTotal: null, bytesDone: 0 })).percent).toBe(25);
    const waiting = importProgress({ state: "importing", operationStatus: "pending", progress: null, attempts: 0 });
    expect(waiting).toMatchObject({ phase: "Waiting", percent: null, files: null, bytes: null });
  });

  it("is at 100 % once the model is ready, and says failed when it failed", () => {
    const ready = importProgress(status({ phase: "done", filesTotal: 5, filesDone: 5, bytesTotal: 1731, bytesDone: 1731 }, "ready"));
    expect(ready).toMatchObject({ phase: "Done", percent: 100, files: "5 of 5 files", bytes: "1.7 KB of 1.7 KB" });
    expect(importProgress(status(null, "failed")).phase).toBe("Failed");
    expect(importProgress(null, "ready").percent).toBe(100);
  });

  it("shows an import under way as running", () => {
    expect(toneOf("importing")).toBe("running");
  });

  it("never goes past 100 % or below 0 %", () => {
    expect(importProgress(status({ phase: "downloading", filesTotal: 1, filesDone: 1, bytesTotal: 10, bytesDone: 25 })).percent).toBe(100);
    expect(importProgress(status({ phase: "downloading", filesTotal: 1, filesDone: 0, bytesTotal: 10, bytesDone: -5 })).percent).toBe(0);
  });
});

describe("answers with lists left out", () => {
  it("fill the lists an answer may leave out", () => {
    const filled = filledCheck({ modelId: "m", provider: "hf", repoId: "a/b", currentRevision: SHA, latestRevision: SHA, updateAvailable: false, degraded: false, commitsTruncated: false, commits: [{ id: SHA, title: "", message: "" }] });
    expect([filled.filesAdded, filled.filesRemoved, filled.filesModified, filled.commits[0]?.authors]).toEqual([[], [], [], []]);
    const meta = filledMetadata({ provider: "hf", repoId: "a/b", revision: SHA, degraded: false });
    expect([meta.tags, meta.files, meta.links, meta.revisions, meta.catalogModelIds]).toEqual([[], [], [], [], []]);
  });
});

describe("an update check", () => {
  it("lists each changed file with its size, by path", () => {
    expect(changeRows(check())).toEqual([
      { path: "config.json", change: "modified", size: "21 B → 27 B" },
      { path: "extra.txt", change: "added", size: "1 B" },
      { path: "tokenizer.json", change: "removed", size: "2 B" },
    ]);
  });

  it("says in a sentence what changed, or that the model is up to date", () => {
    expect(updateSummary(check())).toBe(
      "Update available on dev (bd9458a5023b): 1 commit, 1 file added, 1 removed, 1 modified.",
    );
    expect(updateSummary(check({ commitsTruncated: true, commits: [COMMIT, COMMIT], filesRemoved: [], filesModified: [] }))).toBe(
      "Update available on dev (bd9458a5023b): 2+ commits, 1 file added.",
    );
    expect(updateSummary(check({ updateAvailable: false, latestRevision: SHA, branch: null, commits: [], filesAdded: [], filesRemoved: [], filesModified: [] }))).toBe(
      "Up to date with the default branch (b54236a44027).",
    );
  });
});

describe("the model list's search", () => {
  const hits = [
    { source: "catalog", model: null, catalogModelIds: [] },
    hit("acme/tiny", { pipelineTag: "text-generation", library: "transformers" }, ["m1"]),
    hit("acme/embedder", { pipelineTag: "feature-extraction", library: "sentence-transformers" }),
  ] satisfies Schemas["ModelSearchHitOut"][];

  it("keeps the registry's hits, with the catalog models imported from each", () => {
    const rows = registryRows(hits, {});
    expect(rows.map((r) => [r.id, r.source, r.catalogModelIds])).toEqual([
      ["hf:acme/tiny", "hf", ["m1"]],
      ["hf:acme/embedder", "hf", []],
    ]);
  });

  it("narrows them by task and framework, and shows none under a status filter", () => {
    expect(registryRows(hits, { task: "Text-Generation" }).map((r) => r.hit.repoId)).toEqual(["acme/tiny"]);
    expect(registryRows(hits, { framework: "sentence-transformers" }).map((r) => r.hit.repoId)).toEqual(["acme/embedder"]);
    expect(registryRows(hits, { status: "ready" })).toEqual([]);
  });

  it("shows counts as the Hub does", () => {
    expect(compactCount(42)).toBe("42");
    expect(compactCount(1234)).toBe("1.2k");
    expect(compactCount(56_000)).toBe("56k");
    expect(compactCount(3_400_000)).toBe("3.4M");
    expect(compactCount(null)).toBe("—");
  });
});
