"""Generation and embeddings with a loaded causal LM.

Generation is a plain decoding loop over the model's key/value cache, one token a step, so
that each token's text is handed out as soon as it exists, a stop sequence is cut exactly,
and a cancel flag stops the loop between two tokens. One generation runs at a time per
engine (a lock): a small model on one device gains nothing from interleaving.

Everything here is synchronous and meant to run in a worker thread; :mod:`.app` bridges it
to the event loop.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from llmops.model_runtime.loader import LoadedModel

FinishReason = Literal["stop", "length", "cancelled"]
WARM_UP_PROMPT = "Hello"


class GenerationError(ValueError):
    """A request the model cannot serve (a prompt too long for its context, say)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. ``temperature`` 0 is greedy; ``max_tokens`` None means up to
    the engine's default, within the model's context."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class TextPiece:
    """Text that the last token(s) added to the answer."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The end of a generation: why it ended, its whole text and its token counts."""

    reason: FinishReason
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class EngineStats:
    """Counters since the engine started."""

    generations: int = 0
    cancelled: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    last_finish_reason: FinishReason | None = None


@dataclass
class Engine:
    """Serves one loaded model."""

    loaded: LoadedModel
    default_max_tokens: int = 256
    stats: EngineStats = field(default_factory=EngineStats)
    warmed_up: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        model_config = self.loaded.model.config
        self.context_length: int = int(
            getattr(model_config, "max_position_embeddings", None)
            or getattr(model_config, "n_positions", None)
            or 2048
        )
        self.hidden_size: int = int(model_config.hidden_size)
        eos: set[int] = set()
        for value in (
            getattr(self.loaded.model.generation_config, "eos_token_id", None),
            self.loaded.tokenizer.eos_token_id,
        ):
            if isinstance(value, int):
                eos.add(value)
            elif isinstance(value, list):
                eos.update(v for v in value if isinstance(v, int))
        self.eos_token_ids = frozenset(eos)
        # transformers 5 renamed the key/value cache argument (and output) to ``cache``
        forward = inspect.signature(self.loaded.model.forward).parameters
        self._cache_name = "cache" if "cache" in forward else "past_key_values"

    # -- prompts ---------------------------------------------------------------------------

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The tokens of ``messages`` and the start of the assistant's reply: the model's
        chat template when it has one, else ``role: content`` lines."""
        tokenizer = self.loaded.tokenizer
        if tokenizer.chat_template:
            rendered = tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
            )
            if not isinstance(rendered, str):
                raise TypeError(f"the chat template rendered {type(rendered).__name__}")
            return self._encode(rendered, special=False)
        lines = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return self._encode(lines + "assistant:", special=True)

    def text_prompt(self, text: str) -> list[int]:
        """The tokens of a completion prompt."""
        return self._encode(text, special=True)

    def _encode(self, text: str, *, special: bool) -> list[int]:
        ids = self.loaded.tokenizer(text, add_special_tokens=special)["input_ids"]
        return [int(i) for i in ids]

    # -- generation ------------------------------------------------------------------------

    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[TextPiece | Finished]:
        """Generate after ``prompt``: a :class:`TextPiece` whenever the answer's text
        grows, then one :class:`Finished`. Waits for the engine's lock; setting ``cancel``
        ends the generation (reason ``cancelled``) before the next token.

        :raises GenerationError: when the prompt leaves no room in the model's context.
        """
        cancel = cancel or threading.Event()
        if not prompt:
            raise GenerationError("the prompt is empty", param="prompt")
        room = self.context_length - len(prompt)
        if room < 1:
            raise GenerationError(
                f"the prompt has {len(prompt)} tokens; this model's context holds "
                f"{self.context_length}",
                param="messages",
                code="context_length_exceeded",
            )
        wanted = self.default_max_tokens if params.max_tokens is None else params.max_tokens
        limit = min(wanted, room)
        while not self._lock.acquire(timeout=0.05):
            if cancel.is_set():
                yield Finished("cancelled", "", len(prompt), 0)
                return
        try:
            yield from self._decode(list(prompt), params, limit, cancel)
        finally:
            self._lock.release()

    def _decode(
        self, prompt: list[int], params: SamplingParams, limit: int, cancel: threading.Event
    ) -> Iterator[TextPiece | Finished]:
        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        generator = torch.Generator()
        if params.seed is None:
            generator.seed()
        else:
            generator.manual_seed(params.seed)
        longest_stop = max((len(s) for s in params.stop), default=0)
        generated: list[int] = []
        emitted = 0  # characters of the answer handed out so far
        text = ""
        reason: FinishReason = "length"
        inputs = torch.tensor([prompt], device=self.loaded.device)
        past: Any = None
        while len(generated) < limit:
            if cancel.is_set():
                reason = "cancelled"
                break
            with torch.inference_mode():
                output = model(input_ids=inputs, use_cache=True, **{self._cache_name: past})
            past = getattr(output, self._cache_name)
            token = self._pick(output.logits[0, -1], params, generator)
            generated.append(token)
            if token in self.eos_token_ids and not params.ignore_eos:
                reason = "stop"
                break
            inputs = torch.tensor([[token]], device=self.loaded.device)
            decoded = tokenizer.decode(
                generated, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            text = decoded if isinstance(decoded, str) else "".join(decoded)
            if longest_stop:
                cut = _first_stop(text, params.stop, start=max(0, emitted - longest_stop))
                if cut is not None:
                    text = text[:cut]
                    reason = "stop"
                    break
            ready = len(text) - _held_back(text, params.stop)
            if ready > emitted:
                yield TextPiece(text[emitted:ready])
                emitted = ready
        # what was held back (a stop sequence's start that never completed) is sent now
        if reason != "cancelled" and len(text) > emitted:
            yield TextPiece(text[emitted:])
        self.stats.generations += 1
        self.stats.prompt_tokens += len(prompt)
        self.stats.completion_tokens += len(generated)
        self.stats.cancelled += reason == "cancelled"
        self.stats.last_finish_reason = reason
        yield Finished(reason, text, len(prompt), len(generated))

    @staticmethod
    def _pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
        if params.temperature == 0:
            return int(torch.argmax(logits).item())
        probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
        if params.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
            keep[0] = True
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=generator).item())

    def complete(self, prompt: Sequence[int], params: SamplingParams) -> Finished:
        """Generate to the end and return the result."""
        for event in self.generate(prompt, params):
            if isinstance(event, Finished):
                return event
        raise RuntimeError("the generation ended without a result")  # pragma: no cover

    def warm_up(self) -> None:
        """Generate one token for real; :attr:`warmed_up` says it worked."""
        self.complete(self.text_prompt(WARM_UP_PROMPT), SamplingParams(max_tokens=1))
        self.warmed_up = True

    # -- embeddings ------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """The mean of the last hidden state over each text's tokens, and the number of
        tokens read.

        :raises GenerationError: for an empty text or one longer than the context.
        """
        encoded = [self.text_prompt(text) for text in texts]
        for index, ids in enumerate(encoded):
            if not ids:
                raise GenerationError(f"input {index} is empty", param="input")
            if len(ids) > self.context_length:
                raise GenerationError(
                    f"input {index} has {len(ids)} tokens; this model's context holds "
                    f"{self.context_length}",
                    param="input",
                    code="context_length_exceeded",
                )
        vectors: list[list[float]] = []
        with self._lock:
            for ids in encoded:
                inputs = torch.tensor([ids], device=self.loaded.device)
                with torch.inference_mode():
                    output = self.loaded.model(input_ids=inputs, output_hidden_states=True)
                pooled = output.hidden_states[-1][0].float().mean(dim=0)
                vectors.append([float(v) for v in pooled.cpu().tolist()])
        return vectors, sum(len(ids) for ids in encoded)


def _first_stop(text: str, stops: Sequence[str], *, start: int) -> int | None:
    """Where the first stop sequence begins in ``text`` (searching from ``start``)."""
    found = [i for i in (text.find(s, start) for s in stops if s) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters to keep back: an incomplete character (a byte-level
    token that ends inside a UTF-8 sequence decodes to U+FFFD) or the start of a stop
    sequence, which must not be sent if the rest follows."""
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                held = max(held, size)
                break
    if text.endswith("\ufffd"):
        held = max(held, len(text) - len(text.rstrip("\ufffd")))
    return held
