"""Examples that ship with the platform and really run on it.

* :mod:`llmops.examples.tiny_gpt2`: a training job that trains a byte-level BPE tokenizer
  and a tiny GPT-2 from scratch on a folder of text or JSONL files, logs its loss through
  :class:`llmops.jobclient.JobClient` and saves a model that ``transformers`` reloads.
  ``llmops example train`` submits it to a running platform with the shipped sample,
  ``data/small_town.txt``. It needs the core's ``train`` extra (torch, transformers).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_dataset() -> Path:
    """The shipped sample: a few hundred lines of plain English prose."""
    return Path(str(resources.files("llmops.examples") / "data" / "small_town.txt"))
