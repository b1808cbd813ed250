"""The local executor passes the orchestration contract suite, every feature declared.

A deliberately broken executor (it forgets idempotency keys) must fail the suite: that
proves the suite's idempotency tests assert something.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops.builtin.local_executor import LocalExecutor
from llmops.capabilities.orchestration import PipelineSpec, PipelineStatus
from llmops.testing.contracts.orchestration import OrchestrationContract

pytest_plugins = ["pytester"]

#: Plugins the pytester run does without: it forgets the modules it imported, so it would
#: import hypothesis again, which costs a second.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio")


class TestLocalExecutorContract(OrchestrationContract):
    supports = frozenset(OrchestrationContract.features)

    @pytest.fixture
    def provider(self, tmp_path: Path) -> Iterator[LocalExecutor]:
        executor = LocalExecutor(tmp_path / "state", kill_grace_seconds=0.5)
        try:
            yield executor
        finally:
            executor.close()

    @pytest.fixture
    def restarted_provider(self, provider: LocalExecutor) -> Iterator[LocalExecutor]:
        executor = LocalExecutor(provider.state_dir, kill_grace_seconds=0.5)
        try:
            yield executor
        finally:
            executor.close()

    @pytest.fixture
    def unreachable_provider(self, tmp_path: Path) -> LocalExecutor:
        blocker = tmp_path / "a-file"
        blocker.write_text("the state dir cannot be created under a file")
        return LocalExecutor(blocker / "state")


class ForgetfulExecutor(LocalExecutor):
    """Broken on purpose: drops the idempotency key, so a redelivery starts a second run."""

    def submit(self, spec: PipelineSpec) -> PipelineStatus:
        return super().submit(spec.model_copy(update={"idempotency_key": None}))


class BrokenLocalExecutorContract(TestLocalExecutorContract):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> Iterator[LocalExecutor]:
        executor = ForgetfulExecutor(tmp_path / "state", kill_grace_seconds=0.5)
        try:
            yield executor
        finally:
            executor.close()


def test_the_suite_fails_an_executor_that_forgets_idempotency_keys(
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


        class TestBroken(_module.BrokenLocalExecutorContract):
            pass
        """
    )

    result = pytester.inline_run("-k", "idempotency or restarted", *QUIET_PLUGINS)

    _passed, _skipped, failed = result.listoutcomes()
    assert sorted(report.nodeid.rsplit("::", 1)[1] for report in failed) == [
        "test_a_restarted_provider_knows_the_runs_and_keys_of_the_first",
        "test_the_same_idempotency_key_returns_the_first_run",
    ]
