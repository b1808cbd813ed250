import { describe, expect, it } from "vitest";
import { barBoxes, columns, describeBars, formatAmount } from "./bars";

describe("columns", () => {
  it("centres a column in each equal slot, with the gap around it and at least 1 wide", () => {
    expect(columns(3, 300, 0.2)).toEqual([
      { x: 10, width: 80 },
      { x: 110, width: 80 },
      { x: 210, width: 80 },
    ]);
    expect(columns(2, 100)).toEqual([
      { x: 5, width: 40 },
      { x: 55, width: 40 },
    ]);
    expect(columns(4, 2, 0.5)).toEqual([
      { x: -0.25, width: 1 },
      { x: 0.25, width: 1 },
      { x: 0.75, width: 1 },
      { x: 1.25, width: 1 },
    ]);
    expect(columns(0, 100)).toEqual([]);
  });
});

describe("barBoxes", () => {
  it("gives each value an equal slot and a height in proportion to the largest", () => {
    const boxes = barBoxes([1, 4, 2], 300, 100, 0.2);
    expect(boxes.map((b) => b.height)).toEqual([25, 100, 50]);
    expect(boxes.map((b) => b.y)).toEqual([75, 0, 50]);
    expect(boxes.map((b) => b.width)).toEqual([80, 80, 80]);
    expect(boxes.map((b) => b.x)).toEqual([10, 110, 210]);
  });

  it("draws no bar for zero, negative or non-finite values, and none at all when nothing is positive", () => {
    expect(barBoxes([0, -1, Number.NaN, 2], 40, 10).map((b) => b.height)).toEqual([0, 0, 0, 10]);
    expect(barBoxes([0, 0], 40, 10).map((b) => b.height)).toEqual([0, 0]);
    expect(barBoxes([], 40, 10)).toEqual([]);
  });
});

describe("describeBars", () => {
  it("says the span, the total and the largest bar", () => {
    const bars = [
      { label: "Mar 9", value: 272.75 },
      { label: "Mar 10", value: 107.25 },
    ];
    expect(describeBars("Estimated cost per day", bars, "EUR")).toBe(
      "Estimated cost per day, 2 bars from Mar 9 to Mar 10: 380 EUR in all, the most 272.75 EUR at Mar 9",
    );
  });

  it("says when there is nothing to show", () => {
    expect(describeBars("Cost", [], "USD")).toBe("Cost: no data");
    expect(describeBars("Cost", [{ label: "Mar 9", value: 0 }], "USD")).toBe("Cost, 1 bar from Mar 9: 0 USD in all");
  });
});

describe("formatAmount", () => {
  it("keeps at most the digits asked for and drops trailing zeros", () => {
    expect(formatAmount(6.5)).toBe("6.5");
    expect(formatAmount(1234.5678)).toBe("1,234.57");
    expect(formatAmount(Number.NaN)).toBe("—");
  });
});
