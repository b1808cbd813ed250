import { describe, expect, it } from "vitest";
import { formatMs } from "./latency";

describe("formatMs", () => {
  it("formats milliseconds", () => {
    expect(formatMs(null)).toBe("—");
    expect(formatMs(3.21)).toBe("3.2 ms");
    expect(formatMs(175.4)).toBe("175 ms");
    expect(formatMs(1400)).toBe("1.40 s");
    expect(formatMs(12_345)).toBe("12.3 s");
  });
});
