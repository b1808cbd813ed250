"""huggingface_hub, set up the way the plugin needs it, and its errors in the core's terms.

huggingface_hub retries on its own: a paginated listing waits 1, 2, 4, 8 and 8 seconds
on a refused connection, and ``Retry-After`` + 1 s (thirty seconds and more) on each of
five 429s, all inside one call. The plugin bounds that itself (its ``retry_budget_seconds``
over the whole call), so its requests must fail at once instead. huggingface_hub sends
every request through one shared ``httpx2.Client`` made by a factory it lets a program
replace (:func:`huggingface_hub.set_client_factory`); :func:`install` replaces it with
huggingface_hub's own default client plus two event hooks that act on the plugin's
requests only (their User-Agent starts with ``llmops-hf/``, which ``library_name`` puts
there):

* a request without a timeout (listings, whoami, create_repo) gets the plugin's;
* an answer 429 or 5xx raises :class:`HubBusy` before huggingface_hub sees it, which none
  of its retry loops catches.

Everyone else's requests (transformers', a script's) go through unchanged. The plugin
also makes its own paginated reads (search, commits) one page at a time without retries,
and reads the file list with ``model_info`` (one request, never retried) before any
download (and an export starts with ``create_repo``, never retried either), so a Hub
that is down is seen at once. What is left to huggingface_hub: a download cut mid-way is
resumed (a Range request a second later, up to five times while no data comes); an
upload's requests that fail to connect after the first one did (preupload, the LFS
batch, the commit) are retried as it decides, and so is an LFS upload's PUT to the
storage host, which carries no User-Agent of the plugin. A program that sets its own
client factory after the plugin's first call removes the hooks, and with them the
plugin's bound on waiting.

Xet is turned off (``HF_HUB_DISABLE_XET``): files travel over plain HTTP and LFS, which
every Hub, mirror and private hub serves, and which the plugin's progress reporting and
hash checks see; telemetry is turned off too (it would go to huggingface.co, whatever
the endpoint).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from huggingface_hub import HfApi, constants, get_session, hf_raise_for_status, set_client_factory
from huggingface_hub.errors import (
    DisabledRepoError,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._headers import build_hf_headers

# the factory huggingface_hub uses when no program replaced it (not exported by name)
from huggingface_hub.utils._http import default_client_factory

from llmops.errors import (
    Conflict,
    IntegrationRejected,
    IntegrationUnavailable,
    InvalidRequest,
    LlmopsError,
    NotFound,
)
from llmops_hf import __version__

log = logging.getLogger(__name__)

#: ``library_name`` of every call the plugin makes: the start of its User-Agent.
LIBRARY = "llmops-hf"
_MARK = f"{LIBRARY}/"
#: Seconds a request of the plugin waits when no call set its timeout (worker threads).
DEFAULT_TIMEOUT = 10.0
MASK = "[redacted]"

_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "llmops_hf_timeout", default=None
)
_installed = False
_install_lock = threading.Lock()


class HubBusy(Exception):
    """The Hub answered one of the plugin's requests with 429 or 5xx. Raised from the
    client's response hook, so that none of huggingface_hub's retry loops (which catch
    httpx2's errors and its own) waits on it."""

    def __init__(self, status: int, retry_after: float | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.message = message


@dataclass(frozen=True)
class Outage:
    """Why the Hub could not answer: rate limited, failing or out of reach."""

    reason: str
    status: int | None = None
    retry_after: float | None = None

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


# -- the client -----------------------------------------------------------------------------


def install() -> None:
    """Set huggingface_hub up for the plugin, once per process (see the module's text)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        constants.HF_HUB_DISABLE_XET = True
        constants.HF_HUB_DISABLE_TELEMETRY = True
        set_client_factory(_client_factory)
        _installed = True


def _client_factory() -> httpx2.Client:
    client = default_client_factory()
    hooks = client.event_hooks
    client.event_hooks = {
        "request": [*hooks.get("request", []), _on_request],
        "response": [*hooks.get("response", []), _on_response],
    }
    return client


def _ours(request: httpx2.Request) -> bool:
    return request.headers.get("user-agent", "").startswith(_MARK)


def _on_request(request: httpx2.Request) -> None:
    if not _ours(request):
        return
    timeout = request.extensions.get("timeout")
    if isinstance(timeout, dict) and all(value is None for value in timeout.values()):
        seconds = _timeout.get() or DEFAULT_TIMEOUT
        request.extensions["timeout"] = httpx2.Timeout(seconds).as_dict()


def _on_response(response: httpx2.Response) -> None:
    status = response.status_code
    if not (status == 429 or status >= 500) or not _ours(response.request):
        return
    message = response.headers.get("X-Error-Message") or response.reason_phrase or ""
    raise HubBusy(status, retry_after_of(response.headers), message)


def retry_after_of(headers: httpx2.Headers) -> float | None:
    """Seconds ``Retry-After`` asks for (a number; an HTTP date is not read), else the
    reset of the ``RateLimit`` header (``"api";r=0;t=30``)."""
    value = headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    for part in headers.get("RateLimit", "").split(";"):
        key, _, number = part.strip().partition("=")
        if key == "t" and number.strip().isdigit():
            return float(number)
    return None


@contextmanager
def request_timeout(seconds: float) -> Iterator[None]:
    """The timeout of the plugin's requests without one, made on this thread."""
    token = _timeout.set(seconds)
    try:
        yield
    finally:
        _timeout.reset(token)


def make_api(endpoint: str, token: str | bool) -> HfApi:
    """An HfApi on ``endpoint`` that sends ``token`` (False: none, and never the token of
    huggingface_hub's own login or HF_TOKEN)."""
    install()
    return HfApi(endpoint=endpoint, token=token, library_name=LIBRARY, library_version=__version__)


def headers(token: str | bool) -> dict[str, str]:
    """The headers of a request the plugin makes itself (its User-Agent, the token)."""
    return build_hf_headers(token=token, library_name=LIBRARY, library_version=__version__)


def get_json(url: str, *, token: str | bool, params: Any, timeout: float) -> httpx2.Response:
    """One GET through huggingface_hub's session, never retried; raises its errors."""
    install()
    response = get_session().get(url, headers=headers(token), params=params, timeout=timeout)
    hf_raise_for_status(response)
    return response


def pages(
    url: str, *, token: str | bool, params: Any, timeout: float
) -> Iterator[list[dict[str, Any]]]:
    """The pages of a listing the Hub pages through its ``Link`` header, one request per
    page, asked only when the caller reads on."""
    response = get_json(url, token=token, params=params, timeout=timeout)
    while True:
        body = response.json()
        yield body if isinstance(body, list) else []
        following = response.links.get("next", {}).get("url")
        if not following:
            return
        response = get_json(following, token=token, params=None, timeout=timeout)


# -- errors -----------------------------------------------------------------------------------


def _chain(exc: BaseException, limit: int = 10) -> Iterator[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < limit and current not in seen:
        seen.append(current)
        yield current
        current = current.__cause__ or current.__context__


def outage_of(exc: BaseException) -> Outage | None:
    """Whether ``exc`` says the Hub is rate limiting, failing or out of reach (what a
    wait, or the local cache, may get around), and how."""
    for cause in _chain(exc):
        if isinstance(cause, HubBusy):
            what = "rate limited" if cause.status == 429 else f"failing ({cause.status})"
            detail = f": {cause.message}" if cause.message else ""
            return Outage(f"the Hub is {what}{detail}", cause.status, cause.retry_after)
        if isinstance(cause, HfHubHTTPError) and not isinstance(cause, RepositoryNotFoundError):
            status = cause.response.status_code if cause.response is not None else None
            if status is not None and (status in (408, 429) or status >= 500):
                after = retry_after_of(cause.response.headers)
                return Outage(f"the Hub answered {status}", status, after)
        if isinstance(cause, httpx2.TransportError):
            return Outage(f"the Hub cannot be reached ({type(cause).__name__})")
        if isinstance(cause, OfflineModeIsEnabled):
            return Outage("huggingface_hub is in offline mode (HF_HUB_OFFLINE)")
        if isinstance(cause, LocalEntryNotFoundError):
            return Outage("the Hub cannot be reached and the file is not in the cache")
    return None


def scrub(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` in it."""
    return text.replace(secret, MASK) if secret else text


def translate(exc: BaseException, *, where: str, secret: str | None) -> LlmopsError | None:
    """The core's error for what huggingface_hub raised during ``where`` ("import of
    acme/tiny@main"), with a message of the plugin's own making (never huggingface_hub's
    text with URLs, and never the token); None when it is not the Hub's doing."""
    if isinstance(exc, LlmopsError):
        return exc
    outage = outage_of(exc)
    if outage is not None:
        extensions: dict[str, Any] = {}
        if outage.status is not None:
            extensions["upstream_status"] = outage.status
        if outage.retry_after is not None:
            extensions["retry_after"] = outage.retry_after
        return IntegrationUnavailable(scrub(f"{where}: {outage.reason}", secret), **extensions)
    error = _translate_known(exc, where)
    if error is not None:
        error.detail = scrub(error.detail, secret)
        error.args = (error.detail,)
    return error


def _translate_known(exc: BaseException, where: str) -> LlmopsError | None:
    server = _server_message(exc)
    if isinstance(exc, GatedRepoError):
        return IntegrationRejected(
            f"{where}: the model is gated on the Hub: the token's user must be granted "
            "access there first" + server,
            upstream_status=_status(exc),
        )
    if isinstance(exc, RepositoryNotFoundError):
        return NotFound(
            f"{where}: no such model on the Hub (or it is private and the token, if any, "
            "may not read it)"
        )
    if isinstance(exc, RevisionNotFoundError):
        return NotFound(f"{where}: the model has no such revision")
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return NotFound(f"{where}: no such file at that revision")
    if isinstance(exc, DisabledRepoError):
        return IntegrationRejected(f"{where}: the Hub has disabled this model" + server)
    if isinstance(exc, HfHubHTTPError):
        status = _status(exc)
        if status in (401, 403):
            hint = (
                "check LLMOPS_HF__TOKEN"
                if status == 401
                else "the token may not do this (exports need a write token in the namespace)"
            )
            return IntegrationRejected(
                f"{where}: the Hub refused the request ({status}): {hint}" + server,
                upstream_status=status,
            )
        if status == 404:
            return NotFound(f"{where}: not found on the Hub" + server)
        if status in (409, 412):
            return Conflict(f"{where}: the Hub answered {status}" + server)
        if status in (400, 422):
            return InvalidRequest(f"{where}: the Hub refused the request ({status})" + server)
        return IntegrationRejected(
            f"{where}: the Hub answered {status}" + server, upstream_status=status
        )
    if isinstance(exc, HFValidationError):
        return InvalidRequest(f"{where}: {exc}")
    return None


def _status(exc: HfHubHTTPError) -> int | None:
    return exc.response.status_code if exc.response is not None else None


def _server_message(exc: BaseException) -> str:
    message = getattr(exc, "server_message", None)
    if isinstance(message, str) and message.strip():
        return f" (the Hub says: {message.strip()[:300]})"
    return ""
