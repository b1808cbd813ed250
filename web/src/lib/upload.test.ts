import { describe, expect, it } from "vitest";
import { ApiError } from "@/api/client";
import { isArchive, overallPercent, problemFromXhr, uploadUrl, writtenPaths } from "./upload";

describe("overallPercent", () => {
  it("weighs each file by its size", () => {
    expect(overallPercent([100, 300], 0, 0)).toBe(0);
    expect(overallPercent([100, 300], 0, 0.5)).toBe(12);
    expect(overallPercent([100, 300], 1, 0)).toBe(25);
    expect(overallPercent([100, 300], 1, 0.5)).toBe(62);
    expect(overallPercent([100, 300], 1, 1)).toBe(100);
  });

  it("reaches 100 only when everything is sent", () => {
    expect(overallPercent([1000], 0, 0.999)).toBe(99);
    expect(overallPercent([1000], 0, 1)).toBe(100);
  });

  it("counts empty files one each", () => {
    expect(overallPercent([0, 0], 0, 1)).toBe(50);
    expect(overallPercent([0, 0], 1, 1)).toBe(100);
  });

  it("clamps odd fractions", () => {
    expect(overallPercent([10], 0, 2)).toBe(100);
    expect(overallPercent([10], 0, -1)).toBe(0);
    expect(overallPercent([10], 0, Number.NaN)).toBe(0);
  });
});

describe("isArchive / uploadUrl", () => {
  it("knows the archives the platform unpacks", () => {
    expect(isArchive("data.ZIP")).toBe(true);
    expect(isArchive("data.tar.gz")).toBe(true);
    expect(isArchive("data.tgz")).toBe(true);
    expect(isArchive("data.gz")).toBe(false);
    expect(isArchive("train.jsonl")).toBe(false);
  });

  it("asks to extract only when told", () => {
    expect(uploadUrl("abc", false)).toBe("/llm-ops/v1/catalog/datasets/abc/files");
    expect(uploadUrl("a b", true)).toBe("/llm-ops/v1/catalog/datasets/a%20b/files?extract=true");
  });
});

describe("problemFromXhr", () => {
  const xhr = (status: number, body: string, retry: string | null = null) => ({
    status,
    statusText: "",
    responseText: body,
    getResponseHeader: (name: string) => (name === "Retry-After" ? retry : null),
  });

  it("keeps the platform's problem", async () => {
    const problem = { type: "t", title: "Payload too large", status: 413, detail: "over 10 bytes" };
    const error = await problemFromXhr(xhr(413, JSON.stringify(problem), "7"));
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(413);
    expect(error.message).toBe("over 10 bytes");
    expect(error.retryAfter).toBe(7);
  });

  it("explains an answer that is not a problem", async () => {
    const error = await problemFromXhr(xhr(502, "<html>bad gateway</html>"));
    expect(error.status).toBe(502);
    expect(error.problem.detail).toContain("502");
  });
});

describe("writtenPaths", () => {
  it("lists every written path in order", () => {
    const dataset = {} as never;
    const answers = [
      { dataset, written: ["a"], degraded: false },
      { dataset, written: ["b", "c"], degraded: false },
    ];
    expect(writtenPaths(answers)).toEqual(["a", "b", "c"]);
  });
});
