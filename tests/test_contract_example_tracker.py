"""The example plugin's JsonFileTracker passes the tracking contract suite.

A deliberately broken tracker (it forgets idempotency keys) must fail the suite: that
proves the suite's idempotency tests assert something.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.capabilities.tracking import RunInfo, RunSpec
from llmops.testing.contracts.tracking import TrackingContract
from llmops_example.tracker import JsonFileTracker

pytest_plugins = ["pytester"]

#: Plugins the pytester run does without: it forgets the modules it imported, so it would
#: import hypothesis again, which costs a second.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio")


class TestJsonFileTrackerContract(TrackingContract):
    supports = frozenset(
        {"artifacts", "search_filter", "search_order", "immutable_params", "restart", "unreachable"}
    )

    @pytest.fixture
    def provider(self, tmp_path: Path) -> JsonFileTracker:
        return JsonFileTracker(tmp_path / "runs")

    @pytest.fixture
    def restarted_provider(self, provider: JsonFileTracker) -> JsonFileTracker:
        return JsonFileTracker(provider.root)

    @pytest.fixture
    def unreachable_provider(self, tmp_path: Path) -> JsonFileTracker:
        blocker = tmp_path / "a-file"
        blocker.write_text("no folder can be made under a file")
        return JsonFileTracker(blocker / "runs")


class ForgetfulTracker(JsonFileTracker):
    """Broken on purpose: drops the idempotency key, so a redelivery makes a second run."""

    def create_run(self, spec: RunSpec) -> RunInfo:
        return super().create_run(spec.model_copy(update={"idempotency_key": None}))


class BrokenTrackerContract(TestJsonFileTrackerContract):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> JsonFileTracker:
        return ForgetfulTracker(tmp_path / "runs")


def test_the_suite_fails_a_tracker_that_forgets_idempotency_keys(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_broken=f"""
        import importlib.util
        import sys

        _spec = importlib.util.spec_from_file_location("contract_module", {str(__file__)!r})
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _module  # dataclasses look their module up
        _spec.loader.exec_module(_module)


        class TestBroken(_module.BrokenTrackerContract):
            pass
        """
    )

    result = pytester.inline_run(*QUIET_PLUGINS)

    passed, _skipped, failed = result.listoutcomes()
    assert sorted(report.nodeid.rsplit("::", 1)[1] for report in failed) == [
        "test_a_restarted_provider_honours_the_first_ones_idempotency_keys",
        "test_the_same_idempotency_key_returns_the_first_run",
    ]
    assert passed, "the rest of the suite runs and passes"
