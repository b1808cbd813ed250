// Chatting with an endpoint from the console: POST .../chat/completions with
// stream=true through fetch (so the key travels in a header and Stop can abort it), the
// answer read event by event (lib/sse.ts), and the gateway's OpenAI-shaped errors.
import { authHeader, reportStatus } from "@/api/client";
import { chatStreamParts, readEvents, type OpenAIErrorBody } from "@/lib/sse";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatOptions {
  maxTokens: number;
  temperature: number;
}

/** The gateway (or the backend) refused or failed: OpenAI's error, with its status. */
export class InferenceError extends Error {
  readonly status: number;
  readonly type: string | null;
  readonly code: string | null;
  readonly retryAfter: number | null;
  constructor(status: number, error: OpenAIErrorBody, retryAfter: number | null = null) {
    super(error.message);
    this.name = "InferenceError";
    this.status = status;
    this.type = error.type ?? null;
    this.code = error.code ?? null;
    this.retryAfter = retryAfter;
  }
  /** one sentence for the page: "503 endpoint_unavailable: no backend could answer: …" */
  describe(): string {
    const head = [this.status > 0 ? String(this.status) : null, this.code ?? this.type].filter(Boolean).join(" ");
    const retry = this.retryAfter ? ` Try again in ${this.retryAfter} s.` : "";
    return `${head ? `${head}: ` : ""}${this.message}${retry}`;
  }
}

export interface StreamStats {
  /** events that carried text */
  chunks: number;
  /** ms from sending to the first text */
  firstTextMs: number | null;
  totalMs: number;
  finishReason: string | null;
  completionTokens: number | null;
}

/** An error answer (OpenAI's shape, or the platform's problem+json before the gateway). */
async function errorFrom(response: Response): Promise<InferenceError> {
  const retry = Number(response.headers.get("Retry-After"));
  const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : null;
  const text = await response.text().catch(() => "");
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the text itself says what happened
  }
  if (body && typeof body === "object") {
    const error = (body as { error?: unknown }).error;
    if (error && typeof error === "object" && typeof (error as { message?: unknown }).message === "string") {
      return new InferenceError(response.status, error as OpenAIErrorBody, retryAfter);
    }
    const problem = body as { title?: unknown; detail?: unknown };
    if (typeof problem.title === "string") {
      const detail = typeof problem.detail === "string" ? problem.detail : problem.title;
      return new InferenceError(response.status, { message: detail, type: problem.title }, retryAfter);
    }
  }
  return new InferenceError(
    response.status,
    { message: text.slice(0, 300) || response.statusText || "the request failed" },
    retryAfter,
  );
}

/**
 * Streams the endpoint's answer to ``messages``: ``onText`` gets each piece as it
 * arrives. Resolves with what the stream said when it ended; rejects with an
 * InferenceError (an error status, or an error event in the stream), or the fetch's
 * AbortError when ``signal`` aborts it.
 */
export async function streamChat(
  endpointId: string,
  messages: ChatMessage[],
  options: ChatOptions,
  onText: (text: string) => void,
  signal: AbortSignal,
): Promise<StreamStats> {
  const started = performance.now();
  const response = await fetch(`/llm-ops/v1/serving/endpoints/${encodeURIComponent(endpointId)}/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeader() },
    body: JSON.stringify({
      messages,
      max_tokens: options.maxTokens,
      temperature: options.temperature,
      stream: true,
      stream_options: { include_usage: true },
    }),
    signal,
  });
  if (!response.ok) {
    reportStatus(response.status);
    throw await errorFrom(response);
  }
  if (!response.body) throw new InferenceError(response.status, { message: "the answer has no body to stream" });
  const stats: StreamStats = { chunks: 0, firstTextMs: null, totalMs: 0, finishReason: null, completionTokens: null };
  let done = false;
  for await (const event of readEvents(response.body)) {
    for (const part of chatStreamParts(event)) {
      if (part.kind === "text") {
        stats.chunks += 1;
        stats.firstTextMs ??= performance.now() - started;
        onText(part.text);
      } else if (part.kind === "finish") {
        stats.finishReason = part.reason;
      } else if (part.kind === "usage") {
        stats.completionTokens = part.completionTokens;
      } else if (part.kind === "error") {
        throw new InferenceError(response.status, part.error);
      } else {
        done = true;
      }
    }
    if (done) break;
  }
  if (!done && stats.finishReason === null) {
    throw new InferenceError(response.status, {
      message: "the stream ended before the answer did (no finish reason, no [DONE])",
      type: "stream_broken",
    });
  }
  stats.totalMs = performance.now() - started;
  return stats;
}

/** Whether ``error`` is the abort of a fetch (the user pressed Stop, or left). */
export function isAbort(error: unknown): boolean {
  return error instanceof DOMException ? error.name === "AbortError" : (error as { name?: unknown })?.name === "AbortError";
}
