"""The Hub token is sent to the Hub and nowhere else: never in an answer, an error, a log
record or a file the plugin writes; and a developer's own token (HF_TOKEN, the login of
huggingface_hub) is never picked up."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llmops.capabilities.registry import ExportRequest, ImportRequest
from llmops.errors import IntegrationRejected, LlmopsError, NotFound
from llmops.testing.contracts import write_tree
from llmops.testing.hf import HfHubDouble
from llmops_hf.provider import HfRegistry

if TYPE_CHECKING:
    from conftest import Kit

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

MakeProvider = Callable[..., HfRegistry]


def _texts(error: LlmopsError) -> list[str]:
    return [str(error), error.detail, repr(error.extensions), repr(error.args)]


def test_the_token_is_never_in_answers_errors_logs_or_the_plugins_files(
    make_provider: MakeProvider,
    hub: HfHubDouble,
    kit: Kit,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    token = hub.write_token
    hub.add_org("acme", [hub.user])
    head = kit.seed(private=True)
    registry = make_provider(retry_budget_seconds=0)
    shown: list[str] = []

    shown += [m.model_dump_json() for m in registry.search("tiny")]
    shown.append(registry.metadata(kit.repo).model_dump_json())
    imported = registry.import_model(
        ImportRequest(repo_id=kit.repo, destination=tmp_path / "model")
    )
    shown.append(imported.model_dump_json())
    source = write_tree(tmp_path / "out", {"config.json": b"{}"})
    shown.append(
        registry.export_model(
            ExportRequest(repo_id=f"{hub.user}/out", local_path=source, idempotency_key="k")
        ).model_dump_json()
    )
    shown.append(registry.check_update(kit.repo, head).model_dump_json())
    shown += [link.model_dump_json() for link in registry.links(kit.repo, head)]
    shown.append(registry.health().model_dump_json())
    assert all(r.token_sent for r in hub.requests_to(server="hub")), "the token was used"

    errors: list[LlmopsError] = []
    hub.rate_limit(None, retry_after=5)
    with pytest.raises(LlmopsError) as limited:
        registry.metadata("acme/other")
    errors.append(limited.value)
    hub.clear_faults()
    hub.down()
    with pytest.raises(LlmopsError) as down:
        registry.export_model(ExportRequest(repo_id=f"{hub.user}/out2", local_path=source))
    errors.append(down.value)
    shown.append(registry.health().model_dump_json())
    hub.up()
    hub.revoke_token(token)
    for call in (
        lambda: registry.metadata(kit.repo),
        lambda: registry.search("tiny"),
        lambda: registry.export_model(ExportRequest(repo_id=f"{hub.user}/x", local_path=source)),
    ):
        with pytest.raises(IntegrationRejected) as refused:
            call()
        errors.append(refused.value)
    shown.append(registry.health().model_dump_json())

    assert [e.status for e in errors] == [503, 503, 502, 502, 502]
    for text in [*shown, *(t for e in errors for t in _texts(e))]:
        assert token not in text
    assert caplog.records, "the calls were logged"
    assert token not in caplog.text
    for record in caplog.records:
        assert token not in record.getMessage()
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert written, "the plugin kept its state"
    assert all(token.encode() not in p.read_bytes() for p in written)
    model = [p for p in (tmp_path / "model").rglob("*") if p.is_file()]
    assert all(token.encode() not in p.read_bytes() for p in model)


def test_a_developers_own_token_is_never_sent(
    make_provider: MakeProvider,
    hub: HfHubDouble,
    kit: Kit,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub.add_org("acme", [hub.user])
    kit.seed(private=True)
    monkeypatch.setenv("HF_TOKEN", hub.read_token)
    token_file = tmp_path / "hf-home" / "token"
    token_file.parent.mkdir()
    token_file.write_text(hub.read_token)
    monkeypatch.setenv("HF_HOME", str(token_file.parent))
    registry = make_provider(token=None)

    with pytest.raises(NotFound):
        registry.metadata(kit.repo)
    with pytest.raises(NotFound):
        registry.import_model(ImportRequest(repo_id=kit.repo, destination=tmp_path / "m"))
    registry.health()

    assert hub.requests
    assert not any(r.token_sent for r in hub.requests)
