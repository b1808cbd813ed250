import { describe, expect, it } from "vitest";
import {
  appendPage,
  BY_CREATION,
  cellText,
  choicesOf,
  filterCodecs,
  filterDebounceMs,
  filterDefaults,
  filterQuery,
  orderingKeys,
  replaceItem,
  selectChoices,
  sortFilter,
  toIsoUtc,
  toLocalInput,
  type Column,
  type FilterField,
} from "./list";

const FIELDS = [
  { key: "q", label: "Search", id: "q", kind: "search" },
  { key: "status", label: "Status", id: "status", kind: "select", options: choicesOf(["pending", "failed"]) },
  { key: "modelId", label: "Model", id: "model", kind: "select", options: () => [{ value: "m1", label: "llama (v1)" }] },
  { key: "since", label: "Since", id: "since", kind: "datetime" },
  sortFilter("sort", BY_CREATION),
] as const satisfies readonly FilterField[];

describe("filterDefaults and orderingKeys", () => {
  it("start every filter at its default, the sort at its first order", () => {
    expect(filterDefaults(FIELDS)).toEqual({ q: "", status: "", modelId: "", since: "", sort: "-createdAt" });
  });

  it("count only the sort order as ordering", () => {
    expect(orderingKeys(FIELDS)).toEqual(["sort"]);
  });
});

describe("filterDebounceMs", () => {
  it("waits for typing, but applies a page of selects at once", () => {
    expect(filterDebounceMs(FIELDS)).toBe(250);
    expect(filterDebounceMs(FIELDS.filter((f) => f.kind === "select"))).toBe(0);
    expect(filterDebounceMs([])).toBe(0);
  });
});

describe("filterQuery", () => {
  it("sends what says something: trimmed text, a select's choice, the sort order", () => {
    const query = filterQuery(FIELDS, { q: "  llama ", status: "failed", modelId: "", since: "", sort: "name" });
    expect(query).toEqual({ q: "llama", status: "failed", sort: "name" });
  });

  it("leaves out spaces only, and sends the default order when none is set", () => {
    expect(filterQuery(FIELDS, { q: "   " })).toEqual({ sort: "-createdAt" });
  });

  it("replaces a value that is not a choice by the default, but keeps any value of choices that load later", () => {
    const query = filterQuery(FIELDS, { status: "bogus", modelId: "m-not-loaded-yet", sort: "-name" });
    expect(query).toEqual({ modelId: "m-not-loaded-yet", sort: "-createdAt" });
  });

  it("sends a local time as an ISO instant in UTC", () => {
    const local = "2024-03-01T12:30";
    expect(filterQuery(FIELDS, { since: local }).since).toBe(new Date(local).toISOString());
    expect(filterQuery(FIELDS, { since: "not a date" }).since).toBeUndefined();
  });
});

describe("filterCodecs", () => {
  const codecs = filterCodecs(FIELDS);

  it("reads a value that is not a choice from the URL as the default", () => {
    expect(codecs.status?.fromQuery?.("failed")).toBe("failed");
    expect(codecs.status?.fromQuery?.("bogus")).toBe("");
    expect(codecs.sort?.fromQuery?.("bogus")).toBe("-createdAt");
    expect(codecs.modelId).toBeUndefined(); // choices that load later: any value stands
  });

  it("writes text trimmed and times as UTC instants, and reads them back", () => {
    expect(codecs.q?.toQuery?.("  bert ")).toBe("bert");
    const iso = "2024-03-01T11:30:00.000Z";
    const local = codecs.since?.fromQuery?.(iso) ?? "";
    expect(local).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d$/);
    expect(codecs.since?.toQuery?.(local)).toBe(iso);
  });
});

describe("selectChoices", () => {
  const [, status, model, , sort] = FIELDS;

  it("offers Any first when the default is nothing, not for the sort order", () => {
    expect(selectChoices(status, "").map((o) => o.label)).toEqual(["Any", "Pending", "Failed"]);
    expect(selectChoices(sort, "-createdAt").map((o) => o.value)).toEqual(["-createdAt", "createdAt", "name"]);
  });

  it("shows a value whose choice is not there (yet) as itself", () => {
    expect(selectChoices(model, "m2")).toEqual([
      { value: "", label: "Any" },
      { value: "m2", label: "m2" },
      { value: "m1", label: "llama (v1)" },
    ]);
    expect(selectChoices(model, "m1")).toHaveLength(2);
  });
});

describe("toLocalInput and toIsoUtc", () => {
  it("round-trip an instant through the form's local time, to the minute", () => {
    const iso = "2024-12-31T23:59:00.000Z";
    expect(toIsoUtc(toLocalInput(iso))).toBe(iso);
  });

  it("turn nothing or nonsense into nothing", () => {
    expect(toLocalInput("")).toBe("");
    expect(toLocalInput("yesterday")).toBe("");
    expect(toIsoUtc("")).toBe("");
    expect(toIsoUtc("yesterday")).toBe("");
  });
});

describe("cellText", () => {
  type Row = { id: string; task: string | null; files: number };
  const row: Row = { id: "1", task: null, files: 0 };

  it("shows a dash for a cell with nothing to show, and zero as zero", () => {
    const task: Column<Row> = { key: "task", label: "Task", value: (r) => r.task };
    const files: Column<Row> = { key: "files", label: "Files", value: (r) => r.files };
    expect(cellText(task, row)).toBe("—");
    expect(cellText({ ...task, value: () => "" }, row)).toBe("—");
    expect(cellText({ key: "slot", label: "Slot" }, row)).toBe("—");
    expect(cellText(files, row)).toBe("0");
  });
});

describe("appendPage and replaceItem", () => {
  const a = { id: "a", n: 1 };
  const b = { id: "b", n: 2 };
  const c = { id: "c", n: 3 };

  it("lists an item a later page repeats once, in its first place", () => {
    expect(appendPage([a, b], [b, c], (item) => item.id)).toEqual([a, b, c]);
  });

  it("joins the pages as they are without a key", () => {
    expect(appendPage([a, b], [b, c])).toEqual([a, b, b, c]);
  });

  it("puts an updated item in place", () => {
    const updated = { id: "b", n: 20 };
    const items = [a, b, c];
    expect(replaceItem(items, updated)).toEqual([a, updated, c]);
    expect(items[1]).toBe(b); // a new list: the old one is left as it was
  });
});
