// Server-sent events read from a fetch() body (EventSource cannot POST or send a key):
// a parser that takes text as it arrives, in pieces cut anywhere, and hands back whole
// events (WHATWG HTML, "event stream interpretation"); a reader over a ReadableStream; and
// the meaning of one event of an OpenAI chat completion stream.

export interface ServerSentEvent {
  /** the `event:` field; "message" when the event named none */
  event: string;
  /** the `data:` lines, joined with "\n" */
  data: string;
  /** the last `id:` seen so far (it carries over to later events), or null */
  id: string | null;
  /** a `retry:` the event set, in ms */
  retry?: number;
}

/**
 * Turns text into events. ``feed`` takes any piece of the stream (a line, or an event,
 * may be split across pieces, a "\r\n" too) and returns the events it completed;
 * ``end`` returns the last event when the stream ended without the blank line that
 * closes it (the standard drops it; a server that broke off mid-answer still said it).
 */
export class SseParser {
  private buffer = "";
  private started = false;
  /** the previous piece ended with "\r": a "\n" that starts this one belongs to it */
  private afterCR = false;
  private data: string[] = [];
  private hasData = false;
  private eventType = "";
  private lastId: string | null = null;
  private retry: number | undefined;

  feed(text: string): ServerSentEvent[] {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a byte order mark
    }
    if (this.afterCR && text.startsWith("\n")) text = text.slice(1);
    this.afterCR = false;
    this.buffer += text;
    const out: ServerSentEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue; // \n, \r
      const line = this.buffer.slice(start, i);
      if (ch === 13) {
        if (i + 1 < this.buffer.length) {
          if (this.buffer.charCodeAt(i + 1) === 10) i++;
        } else {
          this.afterCR = true; // the "\n" of a "\r\n" may come in the next piece
        }
      }
      start = i + 1;
      const event = this.line(line);
      if (event) out.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  end(): ServerSentEvent[] {
    const out: ServerSentEvent[] = [];
    if (this.buffer) {
      const event = this.line(this.buffer);
      if (event) out.push(event);
      this.buffer = "";
    }
    const last = this.dispatch();
    if (last) out.push(last);
    return out;
  }

  private line(line: string): ServerSentEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment (a keep-alive)
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (name) {
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "event":
        this.eventType = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
    return null;
  }

  private dispatch(): ServerSentEvent | null {
    const event: ServerSentEvent | null = this.hasData
      ? {
          event: this.eventType || "message",
          data: this.data.join("\n"),
          id: this.lastId,
          ...(this.retry !== undefined ? { retry: this.retry } : {}),
        }
      : null;
    this.data = [];
    this.hasData = false;
    this.eventType = "";
    this.retry = undefined;
    return event;
  }
}

/**
 * The events of a response body, each as soon as its closing blank line arrives. Bytes
 * are decoded as UTF-8 across reads (a character split between two reads stays whole).
 * Aborting the fetch ends this with the fetch's AbortError.
 */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      yield* parser.feed(decoder.decode(value, { stream: true }));
    }
    yield* parser.feed(decoder.decode());
    yield* parser.end();
  } finally {
    reader.releaseLock();
  }
}

// -- OpenAI chat completion streams -----------------------------------------------------

export interface OpenAIErrorBody {
  message: string;
  type?: string | null;
  code?: string | null;
  param?: string | null;
}

/** What one event of a chat completion stream means. */
export type ChatStreamPart =
  | { kind: "text"; text: string }
  | { kind: "finish"; reason: string }
  | { kind: "usage"; promptTokens: number; completionTokens: number }
  | { kind: "done" }
  | { kind: "error"; error: OpenAIErrorBody };

function errorOf(value: unknown): OpenAIErrorBody | null {
  if (!value || typeof value !== "object") return null;
  const inner = (value as { error?: unknown }).error ?? null;
  if (typeof inner === "string") return { message: inner };
  if (!inner || typeof inner !== "object") return null;
  const e = inner as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === "string" ? v : null);
  return {
    message: text(e.message) ?? JSON.stringify(inner),
    type: text(e.type),
    code: text(e.code),
    param: text(e.param),
  };
}

/**
 * The parts of one event: the text it adds, why the answer ended, the token usage, the
 * end of the stream ("[DONE]"), or an error (OpenAI sends `{"error": …}` as data once
 * the status line is gone; some servers name the event "error").
 */
export function chatStreamParts(event: ServerSentEvent): ChatStreamPart[] {
  const data = event.data.trim();
  if (data === "[DONE]") return [{ kind: "done" }];
  let payload: unknown;
  try {
    payload = JSON.parse(data);
  } catch {
    if (event.event === "error") return [{ kind: "error", error: { message: data || "the stream reported an error" } }];
    return [{ kind: "error", error: { message: `the stream sent something that is not JSON: ${data.slice(0, 200)}` } }];
  }
  const error = errorOf(payload);
  if (error) return [{ kind: "error", error }];
  if (event.event === "error") {
    return [{ kind: "error", error: { message: typeof payload === "string" ? payload : JSON.stringify(payload) } }];
  }
  const parts: ChatStreamPart[] = [];
  if (!payload || typeof payload !== "object") return parts;
  const chunk = payload as {
    choices?: { index?: number; delta?: { content?: unknown }; finish_reason?: unknown }[];
    usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
  };
  for (const choice of chunk.choices ?? []) {
    if ((choice.index ?? 0) !== 0) continue; // the chat box shows the first choice
    const content = choice.delta?.content;
    if (typeof content === "string" && content.length > 0) parts.push({ kind: "text", text: content });
    if (typeof choice.finish_reason === "string") parts.push({ kind: "finish", reason: choice.finish_reason });
  }
  const usage = chunk.usage;
  if (usage && typeof usage.prompt_tokens === "number" && typeof usage.completion_tokens === "number") {
    parts.push({ kind: "usage", promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens });
  }
  return parts;
}
