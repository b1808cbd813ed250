import { describe, expect, it } from "vitest";
import { chatStreamParts, readEvents, SseParser, type ServerSentEvent } from "./sse";

function parseAll(pieces: string[]): ServerSentEvent[] {
  const parser = new SseParser();
  const out: ServerSentEvent[] = [];
  for (const piece of pieces) out.push(...parser.feed(piece));
  out.push(...parser.end());
  return out;
}

/** a body that hands out ``pieces`` one read at a time */
function body(pieces: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const piece = pieces[i++];
      if (piece === undefined) controller.close();
      else controller.enqueue(typeof piece === "string" ? encoder.encode(piece) : piece);
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<ServerSentEvent[]> {
  const out: ServerSentEvent[] = [];
  for await (const event of readEvents(stream)) out.push(event);
  return out;
}

/** the JSON of one chunk of a streamed chat answer */
const payload = (content: string) =>
  JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta: { content }, finish_reason: null }] });
/** that chunk as an event on the wire */
const chunk = (content: string) => `data: ${payload(content)}\n\n`;

describe("SseParser", () => {
  it("gives one event per blank-line-terminated block", () => {
    const events = parseAll(["data: one\n\ndata: two\n\n"]);
    expect(events.map((e) => e.data)).toEqual(["one", "two"]);
    expect(events[0]).toEqual({ event: "message", data: "one", id: null });
  });

  it("completes an event only when its blank line arrives, however the text is cut", () => {
    const text = 'data: {"a": 1}\n\nevent: note\ndata: hello\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new SseParser();
      const first = parser.feed(text.slice(0, cut));
      const second = parser.feed(text.slice(cut));
      const all = [...first, ...second, ...parser.end()];
      expect(all.map((e) => [e.event, e.data])).toEqual([
        ["message", '{"a": 1}'],
        ["note", "hello"],
      ]);
    }
  });

  it("feeds one character at a time", () => {
    const text = "data: a\r\n\r\ndata: b\r\rdata: c\n\n";
    expect(parseAll([...text]).map((e) => e.data)).toEqual(["a", "b", "c"]);
  });

  it("treats a \\r\\n split across two pieces as one line end", () => {
    const events = parseAll(["data: x\r", "\n\r", "\ndata: y\r\n\r\n"]);
    expect(events.map((e) => e.data)).toEqual(["x", "y"]);
  });

  it("joins multi-line data with newlines and keeps empty data lines", () => {
    const events = parseAll(["data: first\ndata:second\ndata\ndata:  indented\n\n"]);
    expect(events).toHaveLength(1);
    // one space after the colon is dropped, a second one is content
    expect(events[0]!.data).toBe("first\nsecond\n\n indented");
  });

  it("ignores comments, unknown fields and blocks without data", () => {
    const events = parseAll([": keep-alive\n\nfoo: bar\n\nevent: ping\n\ndata: real\n\n"]);
    expect(events.map((e) => [e.event, e.data])).toEqual([["message", "real"]]);
  });

  it("carries the last id over to later events and reads retry", () => {
    const events = parseAll(["id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"]);
    expect(events.map((e) => e.id)).toEqual(["7", "7", ""]);
    expect(events[0]!.retry).toBe(1500);
    expect(events[1]!.retry).toBeUndefined();
  });

  it("drops a leading byte order mark", () => {
    expect(parseAll(["\ufeffdata: a\n\n"]).map((e) => e.data)).toEqual(["a"]);
  });

  it("hands over an event the stream ended without closing", () => {
    const parser = new SseParser();
    expect(parser.feed('data: {"error": "cut"}')).toEqual([]);
    expect(parser.end().map((e) => e.data)).toEqual(['{"error": "cut"}']);
    expect(parser.end()).toEqual([]);
  });
});

describe("readEvents", () => {
  it("yields each event of a body whose chunks are split across reads", async () => {
    const stream = body(["da", "ta: hel", "lo\n", "\ndata: [DO", "NE]\n\n"]);
    expect((await collect(stream)).map((e) => e.data)).toEqual(["hello", "[DONE]"]);
  });

  it("keeps a UTF-8 character whole when its bytes are split between reads", async () => {
    const bytes = new TextEncoder().encode("data: café ☕\n\n");
    const cut = bytes.indexOf(0xe2) + 1; // inside the three bytes of ☕
    const stream = body([bytes.slice(0, 9), bytes.slice(9, cut), bytes.slice(cut)]);
    expect((await collect(stream)).map((e) => e.data)).toEqual(["café ☕"]);
  });

  it("gives each event as it comes, before the stream ends", async () => {
    let push: (text: string) => void = () => {};
    let close: () => void = () => {};
    const encoder = new TextEncoder();
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        push = (text) => controller.enqueue(encoder.encode(text));
        close = () => controller.close();
      },
    });
    const events = readEvents(stream);
    push(chunk("Hel"));
    const first = await events.next();
    expect(first.value && chatStreamParts(first.value)).toEqual([{ kind: "text", text: "Hel" }]);
    push(chunk("lo") + "data: [DONE]\n\n");
    close();
    const rest: ServerSentEvent[] = [];
    for await (const event of events) rest.push(event);
    expect(rest.map((e) => e.data)).toEqual([payload("lo"), "[DONE]"]);
  });
});

describe("chatStreamParts", () => {
  const event = (data: string, name = "message"): ServerSentEvent => ({ event: name, data, id: null });

  it("reads the text a chunk adds", () => {
    expect(chatStreamParts(event(payload("Hi")))).toEqual([{ kind: "text", text: "Hi" }]);
  });

  it("adds nothing for the role-only first chunk", () => {
    const first = JSON.stringify({ choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] });
    expect(chatStreamParts(event(first))).toEqual([]);
  });

  it("reads why the answer ended and the usage", () => {
    const last = JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: "length" }] });
    const usage = JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 8, total_tokens: 13 } });
    expect(chatStreamParts(event(last))).toEqual([{ kind: "finish", reason: "length" }]);
    expect(chatStreamParts(event(usage))).toEqual([{ kind: "usage", promptTokens: 5, completionTokens: 8 }]);
  });

  it("reads [DONE] as the end", () => {
    expect(chatStreamParts(event("[DONE]"))).toEqual([{ kind: "done" }]);
  });

  it("reads an OpenAI error sent as data after the stream started", () => {
    const error = JSON.stringify({
      error: { message: "the generation failed: boom", type: "server_error", param: null, code: null },
    });
    expect(chatStreamParts(event(error))).toEqual([
      { kind: "error", error: { message: "the generation failed: boom", type: "server_error", code: null, param: null } },
    ]);
  });

  it("reads an event named error, JSON or not", () => {
    expect(chatStreamParts(event("upstream went away", "error"))).toEqual([
      { kind: "error", error: { message: "upstream went away" } },
    ]);
    expect(chatStreamParts(event(JSON.stringify({ error: "quota" }), "error"))).toEqual([
      { kind: "error", error: { message: "quota" } },
    ]);
  });

  it("calls data that is not JSON an error instead of dropping it", () => {
    const [part] = chatStreamParts(event("<html>bad gateway</html>"));
    expect(part?.kind).toBe("error");
  });

  it("shows only the first choice", () => {
    const two = JSON.stringify({
      choices: [
        { index: 1, delta: { content: "other" }, finish_reason: null },
        { index: 0, delta: { content: "mine" }, finish_reason: null },
      ],
    });
    expect(chatStreamParts(event(two))).toEqual([{ kind: "text", text: "mine" }]);
  });
});
