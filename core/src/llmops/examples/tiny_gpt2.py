"""A tiny GPT-2 trained from scratch: the platform's example training job.

Run it as ``python -m llmops.examples.tiny_gpt2`` (``--help`` lists the flags). It

1. reads text from a file or folder (``LLMOPS_DATASET_PATH`` or ``--data``; the shipped
   sample when neither is given): ``.txt``/``.md`` files line by line, ``.jsonl`` files
   record by record (a ``"text"`` field, ``"prompt"`` + ``"completion"``, or chat
   ``"messages"``, rendered with the chat template the tokenizer is saved with);
2. trains a byte-level BPE tokenizer on the training split with ``tokenizers``;
3. trains a GPT-2 with a few layers from scratch with AdamW, on the GPU when there is one;
4. logs ``loss`` every ``log_every`` steps, then ``eval_loss`` on the held-out split and
   ``tokens_per_second``, through :class:`llmops.jobclient.JobClient` (a no-op outside the
   platform);
5. saves the model (safetensors) and the tokenizer with ``save_pretrained`` into
   ``<output>/model``, where ``<output>`` is ``LLMOPS_OUTPUT_DIR`` or ``--output``
   (``./outputs`` otherwise), and a ``summary.json`` beside it.

Hyperparameters (the fields of :class:`TrainingConfig`) come from the job's
``LLMOPS_HYPERPARAMETERS``; a command-line flag overrides one. With a seed, two runs on
the same data and device give the same losses. Nothing is downloaded: the script sets
``HF_HUB_OFFLINE=1`` before it imports ``transformers``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops import jobclient
from llmops.examples import sample_dataset
from llmops.jobclient import JobClient

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<|pad|>"
ROLES = ("system", "user", "assistant")
SPECIAL_TOKENS = [EOS, PAD, *(f"<|{role}|>" for role in ROLES)]
#: Each message as ``<|role|>``, a newline, its content and a newline; the prompt for a
#: reply ends with ``<|assistant|>`` and a newline. Chat records are trained in this form.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
TEXT_SUFFIXES = {".txt", ".md"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
SAMPLE_PROMPT = "The town"


@dataclass(frozen=True)
class TrainingConfig:
    """The hyperparameters; each has a flag of the same name (``--batch-size``)."""

    steps: int = 240
    batch_size: int = 16
    lr: float = 3e-3
    block_size: int = 64
    seed: int = 0
    vocab_size: int = 1000
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    log_every: int = 10
    eval_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "block_size", "n_layer", "n_embd", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.log_every < 1:
            raise ValueError("log_every must be at least 1")
        if not self.lr > 0:
            raise ValueError("lr must be positive")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be at least 300 (256 bytes and special tokens)")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head")
        if not 0 < self.eval_fraction < 1:
            raise ValueError("eval_fraction must be between 0 and 1")

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """A config from hyperparameter values (JSON numbers, or strings of them).

        :raises ValueError: for an unknown name or a value of the wrong kind.
        """
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}")
        parsed: dict[str, Any] = {}
        for name, value in values.items():
            parsed[name] = _number(name, value, integer=types[name] == "int")
        return cls(**parsed)


def _number(name: str, value: Any, *, integer: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not integer:
        return number
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


@dataclass
class TrainingResult:
    """What a run measured and wrote."""

    config: TrainingConfig
    model_dir: Path
    device: str
    documents: int
    train_tokens: int
    eval_tokens: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: float = math.nan
    tokens_per_second: float = 0.0
    seconds: float = 0.0
    sample: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "device": self.device,
            "documents": self.documents,
            "trainTokens": self.train_tokens,
            "evalTokens": self.eval_tokens,
            "losses": [{"step": step, "loss": loss} for step, loss in self.losses],
            "evalLoss": self.eval_loss,
            "tokensPerSecond": self.tokens_per_second,
            "seconds": self.seconds,
            "sample": self.sample,
            "modelDir": str(self.model_dir),
        }


class DatasetError(ValueError):
    """The dataset holds no usable text, or a file in it cannot be read."""


# -- the dataset ----------------------------------------------------------------------------


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """Chat messages as :data:`CHAT_TEMPLATE` renders them."""
    return "".join(f"<|{m.get('role', 'user')}|>\n{_content(m.get('content'))}\n" for m in messages)


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts, as in OpenAI's format: [{"type": "text", ...}]
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else str(content)


def record_text(record: Any) -> str | None:
    """The text of one JSONL record: ``text``, ``prompt`` + ``completion``, or chat
    ``messages``; None when it has none of them."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("text"), str):
        return str(record["text"])
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        joined = prompt[-1:].isspace() or completion[:1].isspace() or not prompt or not completion
        return prompt + ("" if joined else " ") + completion
    messages = record.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        return render_chat(messages)
    return None


def dataset_files(path: Path) -> list[Path]:
    """The files of a dataset: ``path`` itself, or every file under it but hidden ones,
    in name order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"no dataset at {path}")
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def read_documents(path: Path) -> list[str]:
    """Every document (a line of text, a JSONL record) of the dataset at ``path``.

    :raises DatasetError: for a malformed JSONL line, or when no text was found.
    """
    documents: list[str] = []
    ignored: list[str] = []
    unusable = 0
    for file in dataset_files(path):
        suffix = file.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
            documents += [line.strip() for line in lines if line.strip()]
        elif suffix in JSONL_SUFFIXES:
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{file}:{number}: not JSON: {exc}") from exc
                text = record_text(record)
                if text is None or not text.strip():
                    unusable += 1
                else:
                    documents.append(text.strip())
        else:
            ignored.append(file.name)
    if ignored:
        print(f"ignored {len(ignored)} files that are not text or JSONL: {', '.join(ignored[:5])}")
    if unusable:
        print(f"skipped {unusable} JSONL records without text, prompt+completion or messages")
    if len(documents) < 2:
        raise DatasetError(
            f"{path}: found {len(documents)} documents; the example needs at least 2 "
            "(lines of .txt/.md files, records of .jsonl files)"
        )
    return documents


def split_documents(
    documents: Sequence[str], *, eval_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Shuffle with the seed, then hold out ``eval_fraction`` of the documents (one at
    least) for evaluation."""
    shuffled = list(documents)
    random.Random(seed).shuffle(shuffled)
    held_out = max(1, round(len(shuffled) * eval_fraction))
    return shuffled[held_out:], shuffled[:held_out]


# -- tokenizer and model --------------------------------------------------------------------


def train_tokenizer(documents: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes; nothing is unknown), with the
    special tokens and the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[2:],
        model_max_length=None,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def token_stream(tokenizer: PreTrainedTokenizerFast, documents: Sequence[str]) -> list[int]:
    """The documents' tokens, each document followed by the end-of-text token."""
    eos = tokenizer.convert_tokens_to_ids(EOS)
    assert isinstance(eos, int)
    ids: list[int] = []
    for encoded in tokenizer(list(documents), add_special_tokens=False)["input_ids"]:
        ids += encoded
        ids.append(eos)
    return ids


def build_model(tokenizer: PreTrainedTokenizerFast, config: TrainingConfig) -> GPT2LMHeadModel:
    """A GPT-2 with fresh weights (no dropout: the run is short and should be exact)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=max(128, config.block_size),
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(model_config)


# -- training -------------------------------------------------------------------------------


def _windows(data: torch.Tensor, length: int) -> Iterator[torch.Tensor]:
    """Consecutive non-overlapping windows of ``length`` tokens (the last may be short)."""
    for start in range(0, max(1, len(data) - 1), length):
        window = data[start : start + length]
        if len(window) >= 2:
            yield window


def evaluate(model: GPT2LMHeadModel, data: torch.Tensor, *, block_size: int) -> float:
    """The mean next-token loss over the held-out tokens."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for window in _windows(data, block_size + 1):
            batch = window.unsqueeze(0).to(model.device)
            loss = model(input_ids=batch, labels=batch).loss
            predicted = len(window) - 1
            total += float(loss) * predicted
            count += predicted
    model.train()
    return total / count


def train(
    config: TrainingConfig,
    *,
    data: Path,
    output: Path,
    client: JobClient,
    device: str | None = None,
    threads: int | None = 1,
) -> TrainingResult:
    """Train on the dataset at ``data``; save into ``output/model``; log through
    ``client``.

    ``threads`` is torch's number of CPU threads (None: torch's default). One is the
    default: a model this small gains little from more, and on a busy machine threads that
    wait for each other make it many times slower.

    :raises DatasetError: when the dataset holds no usable text (before torch is imported).
    """
    started = time.perf_counter()
    documents = read_documents(data)
    os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers reads it
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()

    if threads is not None:
        torch.set_num_threads(threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    train_docs, eval_docs = split_documents(
        documents, eval_fraction=config.eval_fraction, seed=config.seed
    )
    tokenizer = train_tokenizer(train_docs, config.vocab_size)
    train_ids = torch.tensor(token_stream(tokenizer, train_docs), dtype=torch.long)
    eval_ids = torch.tensor(token_stream(tokenizer, eval_docs), dtype=torch.long)
    block_size = min(config.block_size, len(train_ids) - 1)
    if block_size < config.block_size:
        print(f"the training split has {len(train_ids)} tokens: block_size {block_size}")
    print(
        f"{len(documents)} documents from {data}: {len(train_ids)} training and "
        f"{len(eval_ids)} held-out tokens, vocabulary of {len(tokenizer)}; device {device}, "
        f"{torch.get_num_threads()} CPU threads"
    )

    with torch.device(device):  # the weights are made where they are trained
        model = build_model(tokenizer, config)
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"GPT-2 with {config.n_layer} layers, {config.n_head} heads, {config.n_embd} "
        f"dimensions: {parameters:,} parameters"
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.01
    )
    warmup = max(1, min(20, config.steps // 10))

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine down to a tenth
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, config.steps - warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainingResult(
        config=config,
        model_dir=output / "model",
        device=device,
        documents=len(documents),
        train_tokens=len(train_ids),
        eval_tokens=len(eval_ids),
    )

    model.train()
    interval_loss, interval_steps = 0.0, 0
    train_started = time.perf_counter()
    for step in range(1, config.steps + 1):
        starts = torch.randint(
            len(train_ids) - block_size, (config.batch_size,), generator=generator
        )
        batch = torch.stack([train_ids[s : s + block_size + 1] for s in starts.tolist()])
        batch = batch.to(device)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"the loss is {value} at step {step}: lower lr")
        interval_loss += value
        interval_steps += 1
        if step % config.log_every == 0 or step == config.steps:
            mean = interval_loss / interval_steps
            result.losses.append((step, mean))
            client.log_metric("loss", mean, step)
            elapsed = time.perf_counter() - train_started
            rate = step * config.batch_size * block_size / elapsed
            print(
                f"step {step:>5}/{config.steps}  loss {mean:.4f}  "
                f"lr {schedule.get_last_lr()[0]:.2e}  {rate:,.0f} tokens/s",
                flush=True,
            )
            interval_loss, interval_steps = 0.0, 0
    train_seconds = time.perf_counter() - train_started

    result.tokens_per_second = config.steps * config.batch_size * block_size / train_seconds
    result.eval_loss = evaluate(model, eval_ids, block_size=block_size)
    client.log_metric("eval_loss", result.eval_loss, config.steps)
    client.log_metric("tokens_per_second", result.tokens_per_second, config.steps)
    print(
        f"eval_loss {result.eval_loss:.4f} on {len(eval_docs)} held-out documents; "
        f"{result.tokens_per_second:,.0f} tokens/s"
    )

    result.sample = generate(model, tokenizer, SAMPLE_PROMPT)
    print(f"sample: {result.sample!r}")

    result.model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(result.model_dir)
    tokenizer.save_pretrained(result.model_dir)
    result.seconds = time.perf_counter() - started
    (output / "summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    print(f"saved the model and tokenizer to {result.model_dir} in {result.seconds:.1f}s")
    return result


def generate(
    model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, prompt: str, tokens: int = 24
) -> str:
    """A greedy continuation of ``prompt``."""
    import torch

    model.eval()
    encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
    with torch.no_grad():
        output = model.generate(
            **encoded,
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    model.train()
    text = tokenizer.decode(output[0], skip_special_tokens=True)
    assert isinstance(text, str)
    return text


# -- the command ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llmops.examples.tiny_gpt2",
        description="Train a tiny GPT-2 from scratch on a folder of text or JSONL files. "
        "Hyperparameters come from LLMOPS_HYPERPARAMETERS (JSON); these flags override them.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="a file or folder of .txt/.md/.jsonl files "
        "(default: LLMOPS_DATASET_PATH, else the shipped sample)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write model/ and summary.json (default: LLMOPS_OUTPUT_DIR, else ./outputs)",
    )
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch's CPU threads; 0 for torch's default"
    )
    defaults = TrainingConfig()
    for item in fields(TrainingConfig):
        parser.add_argument(
            f"--{item.name.replace('_', '-')}",
            dest=item.name,
            type=int if item.type == "int" else float,
            default=None,
            help=f"default {getattr(defaults, item.name)}",
        )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The command; returns its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    flags = {f.name: getattr(args, f.name) for f in fields(TrainingConfig)}
    try:
        values = dict(jobclient.hyperparameters(env))
        values.update({k: v for k, v in flags.items() if v is not None})
        config = TrainingConfig.from_values(values)
    except ValueError as exc:
        parser.error(str(exc))
    data = args.data or jobclient.dataset_path(env) or sample_dataset()
    output = args.output or jobclient.output_dir(env) or Path("outputs")
    print(f"hyperparameters: {json.dumps(asdict(config), sort_keys=True)}", flush=True)
    with JobClient.from_env(env) as client:
        try:
            train(
                config,
                data=data,
                output=output,
                client=client,
                device=args.device,
                threads=args.threads or None,
            )
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
