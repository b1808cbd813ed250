"""Encryption at rest for plugin secret settings (the ``SecretStr`` fields of a settings model).

``integration_configs.settings`` keeps each secret as ``{"$encrypted": "<Fernet token>"}``
(the token encrypts the value's JSON), so a stored secret is told apart from a clear value
at a glance: clear values stored before encryption existed are still read, and are
encrypted on the plugin's next configuration change.

Keys, the first of which encrypts and all of which decrypt (key rotation):

* ``LLMOPS_SECRET_KEY``: one key or a comma-separated list. An entry that is a Fernet key
  (32 url-safe base64-encoded bytes, as ``Fernet.generate_key()`` prints) is used as is;
  any other entry is a passphrase, and HKDF-SHA256 derives the Fernet key from it. HKDF
  does not slow down guessing: a passphrase must be long and random.
* otherwise ``<data_dir>/secret.key`` (same format, one key a line), created with mode
  0600 the first time a secret is stored. A key file that other users may read is refused.

Errors name the plugin and the field, never a value.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import threading
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from llmops.config import CoreSettings
from llmops.errors import LlmopsError

log = logging.getLogger(__name__)

#: The key of the one-entry dict that marks a stored value as encrypted.
ENCRYPTED = "$encrypted"
KEY_FILE_NAME = "secret.key"

_HKDF_SALT = b"llmops secret key v1"
_HKDF_INFO = b"llmops plugin secret settings"


class SecretKeyError(LlmopsError):
    """The configured keys cannot be used (an empty list, an unsafe or unreadable key file)."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "secret-key-error"
    title: ClassVar[str] = "Secret key unusable"


class SecretUndecryptable(LlmopsError):
    """Stored secrets that none of the configured keys decrypts."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "secret-undecryptable"
    title: ClassVar[str] = "Stored secret cannot be decrypted"

    def __init__(self, plugin: str, fields: Sequence[str], reason: str) -> None:
        self.plugin = plugin
        self.fields = tuple(fields)
        self.reason = reason
        names = ", ".join(self.fields)
        super().__init__(
            f"secret setting(s) {names} of plugin {plugin!r} cannot be decrypted: {reason}",
            plugin=plugin,
            fields=list(self.fields),
        )

    def validation_error(self, title: str) -> ValidationError:
        """The same failure as a settings validation error, one line per field, so it is
        shown and refused like any other invalid setting (no value in it)."""
        message = "stored secret cannot be decrypted ({reason}); store it again"
        errors = [
            InitErrorDetails(
                type=PydanticCustomError("secret_undecryptable", message, {"reason": self.reason}),
                loc=(name,),
                input="[encrypted]",
            )
            for name in self.fields
        ]
        return ValidationError.from_exception_data(title, errors)


def is_encrypted(value: Any) -> bool:
    """Whether ``value`` is the stored form of an encrypted secret."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(ENCRYPTED), str)


def derive_key(passphrase: str) -> bytes:
    """A Fernet key derived from ``passphrase`` with HKDF-SHA256 (fixed salt and info)."""
    raw = HKDF(algorithm=SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
        passphrase.encode()
    )
    return base64.urlsafe_b64encode(raw)


def parse_keys(value: str, *, source: str) -> list[bytes]:
    """Fernet keys from a comma- or newline-separated list of keys or passphrases."""
    keys: list[bytes] = []
    for entry in value.replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            Fernet(entry.encode())
        except ValueError:
            keys.append(derive_key(entry))
        else:
            keys.append(entry.encode())
    if not keys:
        raise SecretKeyError(f"{source} holds no key")
    return keys


class SecretCipher:
    """Encrypts and decrypts plugin secret settings with the platform's keys.

    Keys are read when built; a missing key file is created on the first encryption, so
    a platform that never stores a secret never writes one.
    """

    def __init__(self, keys: Sequence[bytes] = (), *, key_file: Path | None = None) -> None:
        self.key_file = key_file
        self._lock = threading.Lock()
        self._fernet: MultiFernet | None = None
        self._key_values: list[str] = []
        if keys:
            self._use(keys)
        elif key_file is not None and key_file.exists():
            self._use(*self._read_key_file(key_file))

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> SecretCipher:
        """``LLMOPS_SECRET_KEY`` when set, else ``<data_dir>/secret.key``."""
        if settings.secret_key is not None:
            keys = parse_keys(settings.secret_key.get_secret_value(), source="LLMOPS_SECRET_KEY")
            return cls(keys)
        return cls(key_file=settings.data_dir / KEY_FILE_NAME)

    # -- single values ---------------------------------------------------------------

    def encrypt(self, value: Any) -> dict[str, str]:
        """The stored form of ``value`` (any JSON value), encrypted with the first key."""
        fernet = self._keys(create=True)
        if fernet is None:  # no key given and no key file to create
            raise SecretKeyError("no secret key: set LLMOPS_SECRET_KEY")
        token = fernet.encrypt(json.dumps(value).encode())
        return {ENCRYPTED: token.decode()}

    def decrypt(self, stored: Any, *, plugin: str, field: str) -> Any:
        """The clear value of a stored setting; a value stored in clear is returned as is."""
        if not is_encrypted(stored):
            return stored
        fernet = self._keys(create=False)
        if fernet is None:
            raise SecretUndecryptable(plugin, [field], self._no_key_reason())
        try:
            return json.loads(fernet.decrypt(stored[ENCRYPTED].encode()))
        except (InvalidToken, ValueError):
            raise SecretUndecryptable(
                plugin, [field], "none of the configured secret keys matches"
            ) from None

    # -- a plugin's stored settings ------------------------------------------------------

    def seal(
        self, settings: Mapping[str, Any], secret_names: Collection[str], *, plugin: str
    ) -> dict[str, Any]:
        """``settings`` as they are stored: each secret encrypted with the first key
        (clear ones encrypted, encrypted ones re-encrypted, which completes a rotation)."""
        sealed: dict[str, Any] = {}
        for key, value in settings.items():
            if key in secret_names and value is not None:
                value = self.encrypt(self.decrypt(value, plugin=plugin, field=key))
            sealed[key] = value
        return sealed

    def reveal(self, settings: Mapping[str, Any], *, plugin: str) -> dict[str, Any]:
        """``settings`` with every encrypted value decrypted; raises
        :class:`SecretUndecryptable` naming every field that could not be."""
        clear: dict[str, Any] = {}
        failed: list[str] = []
        reason = ""
        for key, value in settings.items():
            try:
                clear[key] = self.decrypt(value, plugin=plugin, field=key)
            except SecretUndecryptable as exc:
                failed.append(key)
                reason = exc.reason
        if failed:
            raise SecretUndecryptable(plugin, failed, reason)
        return clear

    # -- keys ------------------------------------------------------------------------

    def _keys(self, *, create: bool) -> MultiFernet | None:
        """The keys; a key file another process created since is picked up here."""
        with self._lock:
            if self._fernet is None and self.key_file is not None:
                if create:
                    create_key_file(self.key_file)
                if self.key_file.exists():
                    self._use(*self._read_key_file(self.key_file))
            return self._fernet

    def _use(self, keys: Sequence[bytes], given: str = "") -> None:
        """Encrypt and decrypt with ``keys``, parsed from ``given`` (their text as
        written: passphrases too, which :meth:`key_values` names with their keys)."""
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        written = [e.strip() for e in given.replace("\n", ",").split(",")]
        self._key_values = [k.decode() for k in keys] + [e for e in written if e]

    def key_values(self) -> list[str]:
        """The keys in use, in clear, for scrubbing them out of what is shown (never to
        be sent anywhere); a key file another process created since is picked up."""
        self._keys(create=False)
        with self._lock:
            return list(self._key_values)

    def _no_key_reason(self) -> str:
        return f"LLMOPS_SECRET_KEY is unset and the key file {self.key_file} does not exist"

    @staticmethod
    def _read_key_file(path: Path) -> tuple[list[bytes], str]:
        try:
            mode = path.stat().st_mode
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise SecretKeyError(
                    f"secret key file {path} is accessible by other users (mode "
                    f"{stat.S_IMODE(mode):04o}); restrict it with `chmod 600 {path}`"
                )
            text = path.read_text()
        except OSError as exc:
            raise SecretKeyError(
                f"cannot read secret key file {path}: {exc.strerror or exc}"
            ) from None
        return parse_keys(text, source=str(path)), text


def create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` with mode 0600, unless it exists already.

    The key is written to a private temporary file first and then hard-linked into
    place, so a concurrent reader sees either no file or the whole key, and of two
    processes creating it at once, one wins and both use its key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return
        except OSError as exc:
            raise SecretKeyError(
                f"cannot create secret key file {path}: {exc.strerror or exc}"
            ) from None
    finally:
        temporary.unlink(missing_ok=True)
    log.info("created secret key file %s for plugin secret settings", path)
