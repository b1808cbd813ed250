import { describe, expect, it } from "vitest";
import { cellText, changeTone, isTabular, pageWindow, rowCells, shortChecksum } from "./rowdiff";

describe("rowCells", () => {
  it("marks only the fields of a JSON row that changed", () => {
    const cells = rowCells({ kind: "changed", before: { id: 1, text: "hi", n: 2 }, after: { id: 1, text: "hello", n: 2 } });
    expect(cells.map((c) => [c.field, c.before, c.after, c.changed])).toEqual([
      ["id", "1", "1", false],
      ["text", "hi", "hello", true],
      ["n", "2", "2", false],
    ]);
  });

  it("marks a field only one side has, after before's fields", () => {
    const cells = rowCells({ kind: "changed", before: { id: 1 }, after: { id: 1, label: "x" } });
    expect(cells.map((c) => [c.field, c.before, c.after, c.changed])).toEqual([
      ["id", "1", "1", false],
      ["label", null, "x", true],
    ]);
  });

  it("tells a number from the same digits as a string", () => {
    const [cell] = rowCells({ kind: "changed", before: { n: 1 }, after: { n: "1" } });
    expect(cell!.changed).toBe(true);
  });

  it("shows an added row's fields after only, none marked", () => {
    const cells = rowCells({ kind: "added", after: { id: 3, text: "new" } });
    expect(cells.map((c) => [c.before, c.after, c.changed])).toEqual([
      [null, "3", false],
      [null, "new", false],
    ]);
  });

  it("names a CSV row's columns by the header", () => {
    const cells = rowCells({ kind: "changed", before: ["1", "a"], after: ["1", "b", "extra"] }, ["id", "text"]);
    expect(cells.map((c) => [c.field, c.before, c.after, c.changed])).toEqual([
      ["id", "1", "1", false],
      ["text", "a", "b", true],
      ["3", null, "extra", true],
    ]);
  });

  it("shows a row that is neither an object nor a list as one field", () => {
    const cells = rowCells({ kind: "removed", before: "not json {" });
    expect(cells).toEqual([{ field: "row", before: "not json {", after: null, changed: false }]);
  });

  it("keeps markup as text", () => {
    const [cell] = rowCells({ kind: "added", after: { html: "<b>x</b>" } });
    expect(cell!.after).toBe("<b>x</b>");
  });
});

describe("cellText", () => {
  it("shows strings as they are and other values as JSON", () => {
    expect(cellText("a b")).toBe("a b");
    expect(cellText(3)).toBe("3");
    expect(cellText(null)).toBe("null");
    expect(cellText({ a: [1] })).toBe('{"a":[1]}');
  });
});

describe("changeTone", () => {
  it("gives added green, removed red and changed yellow", () => {
    expect([changeTone("added"), changeTone("removed"), changeTone("changed"), changeTone("x")]).toEqual([
      "success",
      "failure",
      "warning",
      "neutral",
    ]);
  });
});

describe("pageWindow", () => {
  it("gives the range shown and the offsets before and after", () => {
    expect(pageWindow(50, 50, 50, 120, true)).toEqual({ first: 51, last: 100, total: 120, previous: 0, next: 100 });
    expect(pageWindow(0, 50, 0, 0, false)).toEqual({ first: 0, last: 0, total: 0, previous: null, next: null });
    expect(pageWindow(20, 50, 10, 30, false).previous).toBe(0);
  });
});

describe("isTabular and shortChecksum", () => {
  it("knows the row-diffed formats by name", () => {
    expect(["a.jsonl", "b.CSV", "c.tsv", "d.json", "e.txt"].map(isTabular)).toEqual([true, true, true, false, false]);
  });

  it("shortens a checksum after its prefix", () => {
    expect(shortChecksum("md5:0123456789abcdef")).toBe("0123456789");
    expect(shortChecksum(null)).toBe("—");
  });
});
