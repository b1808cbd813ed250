"""Scrubbing secret values out of stage output: every printed form, any chunking."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from llmops.redaction import MASK, Redactor

SECRET = "llmops_abc123_s3cr3t+/value=="


@pytest.mark.parametrize(
    "printed",
    [
        SECRET,
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        base64.b64encode(SECRET.encode()).decode().rstrip("="),
    ],
    ids=["plain", "percent-encoded", "form-encoded", "json-escaped", "base64"],
)
def test_every_common_printed_form_of_a_secret_is_masked(printed: str) -> None:
    assert Redactor([SECRET]).redact(f"before {printed} after") == f"before {MASK.decode()} after"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 64])
def test_a_secret_split_across_chunks_of_any_size_is_still_masked(size: int) -> None:
    data = f"line one\ntoken={SECRET}\nagain {SECRET}{SECRET} end\n".encode()
    stream = Redactor([SECRET, "other-secret"]).stream()

    out = b"".join(stream.feed(data[i : i + size]) for i in range(0, len(data), size))
    out += stream.flush()

    assert out == data.replace(SECRET.encode(), MASK)


def test_short_values_are_not_scrubbed_and_no_secrets_changes_nothing() -> None:
    text = "exit code 1, retries 2"
    assert Redactor(["1", "ab"]).redact(text) == text
    assert Redactor([]).redact(text) == text
    stream = Redactor([]).stream()
    assert stream.feed(b"abc") + stream.flush() == b"abc"


def test_a_secret_that_contains_another_is_masked_whole() -> None:
    assert Redactor(["secret-one", "secret-one-two"]).redact("x secret-one-two y") == (
        f"x {MASK.decode()} y"
    )
