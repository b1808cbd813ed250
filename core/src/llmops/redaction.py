"""Scrubbing known secret values out of text: stage logs before they are stored, and
every log before it is served.

A secret is matched as its exact value and as the forms a program commonly prints it in
(percent-encoded, base64 of the value alone, JSON-escaped). Values shorter than
:data:`MIN_SECRET_LENGTH` are left alone: scrubbing "1" or "ab" out of a log would destroy
it and protect nothing.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable

#: What a secret is replaced with.
MASK = b"[redacted]"
#: Shorter values are not scrubbed (see the module's docstring).
MIN_SECRET_LENGTH = 6


def _forms(value: str) -> set[bytes]:
    raw = value.encode()
    forms = {
        raw,
        urllib.parse.quote(value, safe="").encode(),
        urllib.parse.quote_plus(value).encode(),
        json.dumps(value)[1:-1].encode(),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """Replaces every form of the given secret values with :data:`MASK`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[bytes] = set()
        for value in secrets:
            if len(value) >= MIN_SECRET_LENGTH:
                forms |= _forms(value)
        # longest first, so a value that contains another is masked whole
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(f) for f in ordered)) if ordered else None
        #: The longest form: a stream keeps this many bytes minus one back between chunks.
        self.longest = len(ordered[0]) if ordered else 0

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact_bytes(self, data: bytes) -> bytes:
        return data if self._pattern is None else self._pattern.sub(MASK, data)

    def redact(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self.redact_bytes(text.encode("utf-8", errors="surrogateescape")).decode(
            "utf-8", errors="replace"
        )

    def stream(self) -> RedactingStream:
        return RedactingStream(self)


class RedactingStream:
    """Scrubs a byte stream that arrives in chunks: a secret split across two chunks is
    still found, because the last ``longest - 1`` bytes wait for the next chunk."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The scrubbed bytes that are safe to write now."""
        if not self._redactor:
            return chunk
        data = self._redactor.redact_bytes(self._pending + chunk)
        keep = self._redactor.longest - 1
        if keep <= 0 or len(data) <= keep:
            self._pending = data
            return b""
        # a match cannot start in the part written out and end in the part kept back:
        # it would have been replaced already
        self._pending = data[-keep:]
        return data[:-keep]

    def flush(self) -> bytes:
        """What is left at the end of the stream."""
        data, self._pending = self._redactor.redact_bytes(self._pending), b""
        return data
