"""A Hub that is down, failing or rate limiting: what the cache holds is served, marked
degraded; the rest is a 503 within the retry budget, huggingface_hub's own waits never
taken."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from huggingface_hub import HfApi

from llmops.capabilities.common import HealthStatus
from llmops.capabilities.registry import ImportRequest
from llmops.errors import IntegrationUnavailable
from llmops.testing.contracts import read_tree
from llmops.testing.hf import HfHubDouble
from llmops_hf.provider import HfRegistry

if TYPE_CHECKING:
    from conftest import Kit

MakeProvider = Callable[..., HfRegistry]


def test_with_the_hub_down_a_cached_commit_is_imported_and_described_from_the_cache(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path, sleeps: list[float]
) -> None:
    head = kit.seed()
    registry = make_provider()
    first = registry.import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "first")
    )
    hub.down()

    again = registry.import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "again")
    )
    described = registry.metadata(kit.repo, head)

    assert again.revision == head
    assert again.degraded is not None
    assert "local cache" in again.degraded
    assert "cannot be reached" in again.degraded
    assert again.metadata.degraded == again.degraded
    assert read_tree(tmp_path / "again") == read_tree(tmp_path / "first")
    assert [f.sha256 for f in again.files] == [f.sha256 for f in first.files]
    assert described.degraded is not None
    assert described.card is not None
    assert "license: mit" in described.card
    assert described.license == "mit"
    assert sleeps == [], "a pinned commit in the cache is served at once, without waiting"


def test_with_the_hub_down_a_branch_is_served_at_its_last_seen_commit_after_the_budget(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path, sleeps: list[float]
) -> None:
    head = kit.seed()
    registry = make_provider(retry_budget_seconds=1)
    registry.import_model(ImportRequest(repo_id=kit.repo, destination=tmp_path / "first"))
    hub.push_commit(kit.repo, {"extra.txt": "moved on"})
    hub.down()

    again = registry.import_model(ImportRequest(repo_id=kit.repo, destination=tmp_path / "again"))
    described = registry.metadata(kit.repo)

    assert again.revision == described.revision == head
    assert again.degraded is not None
    assert f"main as last seen: {head}" in again.degraded
    assert described.degraded is not None
    # each call asks again while its budget (1 s) lasts, then the cache answers
    assert sleeps == [0.2, 0.4] * 2


def test_a_429_storm_is_waited_out_as_retry_after_says_then_served_from_the_cache(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path, sleeps: list[float]
) -> None:
    head = kit.seed()
    registry = make_provider(retry_budget_seconds=2.5)
    registry.import_model(ImportRequest(repo_id=kit.repo, destination=tmp_path / "first"))
    hub.rate_limit(None, retry_after=1)
    hub.clear_requests()

    pinned = registry.import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "pinned")
    )
    assert sleeps == []
    branch = registry.import_model(
        ImportRequest(repo_id=kit.repo, revision="main", destination=tmp_path / "branch")
    )

    assert pinned.degraded is not None
    assert "rate limited" in pinned.degraded
    assert branch.revision == head
    assert branch.degraded is not None
    assert sleeps == [1.0, 1.0], "Retry-After honoured while the budget (2.5 s) lasts"
    # one model_info for the pinned import, three for the branch: huggingface_hub retried none
    assert [r.status for r in hub.requests] == [429] * 4


def test_an_uncached_model_with_the_hub_down_is_503_within_the_retry_budget(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path
) -> None:
    kit.seed()
    registry = make_provider(retry_budget_seconds=0.5)
    hub.down()

    started = time.monotonic()
    with pytest.raises(IntegrationUnavailable) as unavailable:
        registry.import_model(ImportRequest(repo_id=kit.repo, destination=tmp_path / "model"))
    with pytest.raises(IntegrationUnavailable):
        registry.metadata(kit.repo)
    took = time.monotonic() - started

    assert "not in the local cache" in unavailable.value.detail
    assert unavailable.value.status == 503
    assert took < 0.5 * 2 + 3, f"bounded by the budget, not huggingface_hub's 23 s ({took:.1f} s)"
    assert not (tmp_path / "model").exists()


def test_a_429_whose_retry_after_outlasts_the_budget_is_503_at_once_with_the_retry_after(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path, sleeps: list[float]
) -> None:
    kit.seed()
    hub.rate_limit(None, retry_after=30)

    with pytest.raises(IntegrationUnavailable) as unavailable:
        make_provider(retry_budget_seconds=5).import_model(
            ImportRequest(repo_id=kit.repo, destination=tmp_path / "model")
        )

    assert unavailable.value.extensions["retry_after"] == 30
    assert unavailable.value.extensions["upstream_status"] == 429
    assert sleeps == []
    assert len(hub.requests) == 1, "neither the plugin nor huggingface_hub asked again"


def test_a_429_on_a_download_is_retried_after_retry_after_and_the_import_completes(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, tmp_path: Path, sleeps: list[float]
) -> None:
    head = kit.seed()
    hub.rate_limit(1, retry_after=2, path_prefix=f"/{kit.repo}/resolve/{head}/model.safetensors")

    result = make_provider(retry_budget_seconds=3).import_model(
        ImportRequest(repo_id=kit.repo, revision=head, destination=tmp_path / "model")
    )

    assert result.degraded is None
    assert sleeps == [2.0]
    assert {f.path: f.sha256 for f in result.files} == hub.file_hashes(kit.repo, head)


def test_a_failing_hub_is_asked_again_after_a_short_backoff(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, sleeps: list[float]
) -> None:
    head = kit.seed()
    hub.fail(503, path_prefix="/api/models/", times=2, message="Service Unavailable")

    described = make_provider().metadata(kit.repo)

    assert (described.revision, described.degraded) == (head, None)
    assert sleeps == [0.2, 0.4]


def test_health_is_ok_degraded_on_a_429_and_down_with_the_reason(
    make_provider: MakeProvider, hub: HfHubDouble
) -> None:
    registry = make_provider()
    anonymous = make_provider(token=None)

    ok = registry.health()
    hub.rate_limit(None, retry_after=7)
    limited = registry.health()
    hub.clear_faults()
    hub.revoke_token(hub.write_token)
    refused = registry.health()
    hub.down()
    down = anonymous.health()

    assert ok.status is HealthStatus.OK
    assert hub.user in ok.detail
    assert (limited.status, "retry after 7 s" in limited.detail) == (HealthStatus.DEGRADED, True)
    assert refused.status is HealthStatus.DOWN
    assert "LLMOPS_HF__TOKEN" in refused.detail
    assert down.status is HealthStatus.DOWN
    assert "cannot be reached" in down.detail


def test_other_callers_of_huggingface_hub_keep_its_own_retries(
    make_provider: MakeProvider, hub: HfHubDouble, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub.utils import _http as hub_http

    kit.seed()
    make_provider().metadata(kit.repo)  # the plugin's client factory is in place
    waited: list[float] = []
    monkeypatch.setattr(hub_http.time, "sleep", waited.append)
    hub.rate_limit(1, retry_after=3)

    found = [m.id for m in HfApi(endpoint=hub.url, token=False).list_models(search="tiny")]

    assert found == [kit.repo]
    assert waited == [4], "huggingface_hub's own wait (Retry-After + 1 s), as before"
