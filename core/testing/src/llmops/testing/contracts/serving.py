"""The serving contract: what the core relies on from every
:class:`~llmops.capabilities.serving.ServingProvider`.

Subclass :class:`ServingContract`, provide ``provider`` and ``model_uris`` (two models the
backend can serve), and declare ``supports``. Override :meth:`ServingContract.deployment_spec`
to add the ``model_format``, ``runtime`` or ``options`` your framework needs. Deployments
get unique names, so the suite also runs against one cluster shared by the session; the
suite deletes what it deployed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from llmops.capabilities.common import HealthStatus, Provider
from llmops.capabilities.serving import (
    AutoscalingSpec,
    CanarySpec,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
    DeploymentUpdate,
    FrameworkInfo,
    InferenceProtocol,
    InferenceTarget,
    ServingProvider,
    TrafficSplit,
)
from llmops.errors import Conflict, InvalidRequest, NotFound
from llmops.testing.contracts import ContractSuite, eventually, requires, timed_health

__all__ = ["ServingContract"]


class ServingContract(ContractSuite):
    """The suite every serving provider passes."""

    capability = "serving"
    protocol = ServingProvider
    features = {
        "traffic": "status() reports the traffic split: one 'stable' split at 100% without "
        "a canary",
        "canary": "update() starts, promotes and rolls back a canary (needs traffic); "
        "FrameworkInfo.supports_canary says so too",
        "autoscaling": "desired_replicas follows AutoscalingSpec; "
        "FrameworkInfo.supports_autoscaling says so too",
        "restart": "a second provider on the same cluster (fixture restarted_provider) "
        "knows the first one's deployments and idempotency keys",
        "unreachable": "the subclass can build a provider whose framework cannot be reached "
        "(fixture unreachable_provider)",
    }

    #: Seconds a deployment may take to become ready (or to go away after delete).
    ready_timeout: ClassVar[float] = 60.0
    #: Seconds health() may take.
    health_deadline: ClassVar[float] = 5.0
    #: Seconds between two status() calls while waiting.
    poll_interval: ClassVar[float] = 0.05

    # -- what the subclass provides ----------------------------------------------------

    @pytest.fixture
    def provider(self) -> ServingProvider:
        """The serving backend under test (override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a `provider` fixture returning the "
            "ServingProvider under test"
        )

    @pytest.fixture
    def model_uris(self) -> tuple[str, str]:
        """Two different models the backend can serve (override this)."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a `model_uris` fixture returning two "
            "model URIs the backend can serve"
        )

    @pytest.fixture
    def restarted_provider(self, provider: ServingProvider) -> ServingProvider:
        """Another provider on the same cluster as ``provider`` (needed by ``restart``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'restart' and must define a "
            "`restarted_provider` fixture"
        )

    @pytest.fixture
    def unreachable_provider(self) -> ServingProvider:
        """A provider whose framework cannot be reached (needed by ``unreachable``)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares 'unreachable' and must define an "
            "`unreachable_provider` fixture"
        )

    @pytest.fixture
    def missing_id(self) -> str:
        """An external id that names no deployment."""
        return f"contract-missing-{uuid.uuid4().hex[:8]}"

    @pytest.fixture
    def deploy(self, provider: ServingProvider) -> Iterator[Callable[..., DeploymentStatus]]:
        """``deploy(model_uri, **fields)``: deploy a uniquely named spec, deleted after."""
        deployed: list[str] = []

        def make(model_uri: str, **fields: Any) -> DeploymentStatus:
            status = provider.deploy(self.deployment_spec(_unique_name(), model_uri, **fields))
            deployed.append(status.external_id)
            return status

        yield make
        for external_id in deployed:
            with contextlib.suppress(NotFound):  # the test deleted it
                provider.delete(external_id)

    # -- helpers ---------------------------------------------------------------------

    def deployment_spec(self, name: str, model_uri: str, **fields: Any) -> DeploymentSpec:
        """The spec the suite deploys; override to add what your framework needs."""
        values: dict[str, Any] = {
            "endpoint_id": uuid.uuid4().hex,
            "name": name,
            "model_uri": model_uri,
        }
        values.update(fields)
        return DeploymentSpec.model_validate(values)

    def wait_until_ready(self, provider: ServingProvider, external_id: str) -> DeploymentStatus:
        def ready() -> DeploymentStatus | None:
            status = provider.status(external_id)
            assert status.state is not DeploymentState.FAILED, (
                f"deployment {external_id} failed: {status.message}"
            )
            return status if status.ready and status.state is DeploymentState.READY else None

        return eventually(
            ready,
            timeout=self.ready_timeout,
            what=f"deployment {external_id} to be ready",
            interval=self.poll_interval,
        )

    def wait_for_traffic(
        self, provider: ServingProvider, external_id: str, expected: list[TrafficSplit]
    ) -> DeploymentStatus:
        want = sorted(expected, key=lambda s: s.tag)

        def matches() -> DeploymentStatus | None:
            status = provider.status(external_id)
            got = sorted(status.traffic, key=lambda s: s.tag)
            return status if status.ready and got == want else None

        try:
            return eventually(
                matches,
                timeout=self.ready_timeout,
                what=f"deployment {external_id} to be ready with traffic {want}",
                interval=self.poll_interval,
            )
        except AssertionError as exc:
            last = provider.status(external_id)
            raise AssertionError(f"{exc}; last status: {last.traffic} ready={last.ready}") from None

    # -- the Protocol ----------------------------------------------------------------

    def test_provider_is_a_serving_provider(self, provider: ServingProvider) -> None:
        assert isinstance(provider, ServingProvider), (
            f"{type(provider).__name__} lacks methods of the ServingProvider Protocol"
        )
        assert isinstance(provider, Provider)

    def test_framework_describes_the_backend(self, provider: ServingProvider) -> None:
        info = provider.framework()

        assert isinstance(info, FrameworkInfo)
        assert info.name, "a framework has a name (unique across plugins)"
        assert info.display_name
        assert info.protocols, "a framework serves at least one inference protocol"
        assert all(isinstance(p, InferenceProtocol) for p in info.protocols)

    def test_the_framework_flags_match_the_declared_features(
        self, provider: ServingProvider
    ) -> None:
        info = provider.framework()
        for flag, feature in (
            ("supports_canary", "canary"),
            ("supports_autoscaling", "autoscaling"),
        ):
            claimed = bool(getattr(info, flag))
            declared = feature in self.supports
            assert claimed == declared, (
                f"FrameworkInfo.{flag} is {claimed} but {type(self).__name__} "
                f"{'declares' if declared else 'does not declare'} the {feature!r} feature: "
                "what the framework claims must be what the suite checks"
            )

    def test_health_answers_within_the_deadline(self, provider: ServingProvider) -> None:
        health = timed_health(provider, self.health_deadline)
        assert health.status in {HealthStatus.OK, HealthStatus.DEGRADED}, (
            f"a working provider reports {health.status}: {health.detail}"
        )

    @requires("unreachable")
    def test_health_of_an_unreachable_framework_is_down_and_says_why(
        self, unreachable_provider: ServingProvider
    ) -> None:
        health = timed_health(unreachable_provider, self.health_deadline)
        assert health.status is HealthStatus.DOWN, f"got {health.status}: {health.detail}"
        assert health.detail, "a DOWN health must say why in detail"

    # -- deployments -----------------------------------------------------------------

    def test_a_deployment_becomes_ready(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        deployed = deploy(model_uris[0])

        ready = self.wait_until_ready(provider, deployed.external_id)

        assert isinstance(deployed, DeploymentStatus)
        assert deployed.external_id, "deploy() returns the deployment's external id"
        assert ready.external_id == deployed.external_id
        assert ready.observed_at.tzinfo is not None, "observed_at is timezone-aware"
        if ready.desired_replicas is not None:
            assert ready.desired_replicas >= 0

    def test_a_ready_deployment_has_an_inference_target(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        external_id = deploy(model_uris[0]).external_id
        ready = self.wait_until_ready(provider, external_id)

        target = provider.inference_target(external_id)

        assert isinstance(target, InferenceTarget)
        assert target.base_url.startswith(("http://", "https://")), target.base_url
        assert target.protocol in provider.framework().protocols, (
            f"the target speaks {target.protocol}, which the framework does not list"
        )
        assert target.model_name, "the target names the model to ask for"
        if ready.target is not None:
            assert ready.target == target, "status().target and inference_target() agree"

    def test_the_same_idempotency_key_returns_the_first_deployment(
        self, provider: ServingProvider, model_uris: tuple[str, str]
    ) -> None:
        key = f"contract-{uuid.uuid4().hex}"
        spec = self.deployment_spec(_unique_name(), model_uris[0], idempotency_key=key)

        first = provider.deploy(spec)
        deployed = {first.external_id}
        try:
            again = provider.deploy(spec)
            deployed.add(again.external_id)
            assert again.external_id == first.external_id, (
                "a second deploy with the same idempotency key must return the first "
                f"deployment (got {first.external_id} then {again.external_id})"
            )
        finally:
            for external_id in deployed:
                provider.delete(external_id)

    def test_a_second_deployment_with_a_taken_name_is_a_conflict(
        self, provider: ServingProvider, model_uris: tuple[str, str]
    ) -> None:
        name = _unique_name()
        first = provider.deploy(self.deployment_spec(name, model_uris[0]))
        try:
            with pytest.raises(Conflict):
                provider.deploy(self.deployment_spec(name, model_uris[1]))
        finally:
            provider.delete(first.external_id)

    @pytest.mark.parametrize("method", ["status", "update", "delete", "inference_target"])
    def test_an_unknown_deployment_is_not_found(
        self, provider: ServingProvider, missing_id: str, method: str
    ) -> None:
        calls: dict[str, Callable[[], object]] = {
            "status": lambda: provider.status(missing_id),
            "update": lambda: provider.update(missing_id, DeploymentUpdate(model_uri="x://y")),
            "delete": lambda: provider.delete(missing_id),
            "inference_target": lambda: provider.inference_target(missing_id),
        }

        with pytest.raises(NotFound):
            calls[method]()

    def test_update_serves_the_new_model(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        external_id = deploy(model_uris[0]).external_id
        self.wait_until_ready(provider, external_id)

        updated = provider.update(external_id, DeploymentUpdate(model_uri=model_uris[1]))

        assert isinstance(updated, DeploymentStatus)
        assert updated.external_id == external_id, "an update keeps the deployment's id"
        self.wait_until_ready(provider, external_id)

    def test_a_deleted_deployment_goes_away(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        external_id = deploy(model_uris[0]).external_id

        provider.delete(external_id)

        def gone() -> bool:
            try:
                status = provider.status(external_id)
            except NotFound:
                return True
            assert status.state is DeploymentState.DELETING, (
                f"after delete() a deployment is DELETING or gone, not {status.state}"
            )
            return False

        eventually(
            gone,
            timeout=self.ready_timeout,
            what=f"deployment {external_id} to be gone",
            interval=self.poll_interval,
        )

    # -- optional features -------------------------------------------------------------

    @requires("traffic")
    def test_a_deployment_without_a_canary_sends_all_traffic_to_stable(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        external_id = deploy(model_uris[0]).external_id

        self.wait_for_traffic(provider, external_id, [_split("stable", model_uris[0], 100)])
        provider.update(external_id, DeploymentUpdate(model_uri=model_uris[1]))
        self.wait_for_traffic(provider, external_id, [_split("stable", model_uris[1], 100)])

    @requires("canary", "traffic")
    def test_a_canary_takes_its_share_of_traffic(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        stable, candidate = model_uris
        external_id = deploy(stable).external_id
        self.wait_until_ready(provider, external_id)

        provider.update(
            external_id,
            DeploymentUpdate(canary=CanarySpec(model_uri=candidate, traffic_percent=20)),
        )

        self.wait_for_traffic(
            provider,
            external_id,
            [_split("stable", stable, 80), _split("canary", candidate, 20)],
        )

    @requires("canary", "traffic")
    def test_a_canary_deployed_with_the_spec_takes_its_share(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        stable, candidate = model_uris
        canary = CanarySpec(model_uri=candidate, traffic_percent=10)

        external_id = deploy(stable, canary=canary).external_id

        self.wait_for_traffic(
            provider,
            external_id,
            [_split("stable", stable, 90), _split("canary", candidate, 10)],
        )

    @requires("canary", "traffic")
    def test_promoting_a_canary_makes_it_stable(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        stable, candidate = model_uris
        canary = CanarySpec(model_uri=candidate, traffic_percent=30)
        external_id = deploy(stable, canary=canary).external_id
        self.wait_until_ready(provider, external_id)

        provider.update(external_id, DeploymentUpdate(promote_canary=True))

        self.wait_for_traffic(provider, external_id, [_split("stable", candidate, 100)])

    @requires("canary", "traffic")
    def test_rolling_back_a_canary_keeps_the_stable_model(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        stable, candidate = model_uris
        canary = CanarySpec(model_uri=candidate, traffic_percent=30)
        external_id = deploy(stable, canary=canary).external_id
        self.wait_until_ready(provider, external_id)

        provider.update(external_id, DeploymentUpdate(rollback_canary=True))

        self.wait_for_traffic(provider, external_id, [_split("stable", stable, 100)])

    @requires("canary")
    def test_promote_and_rollback_at_once_is_an_invalid_request(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        canary = CanarySpec(model_uri=model_uris[1], traffic_percent=30)
        external_id = deploy(model_uris[0], canary=canary).external_id

        with pytest.raises(InvalidRequest):
            provider.update(
                external_id, DeploymentUpdate(promote_canary=True, rollback_canary=True)
            )

    @requires("autoscaling")
    def test_desired_replicas_follow_the_autoscaling_bounds(
        self,
        provider: ServingProvider,
        deploy: Callable[..., DeploymentStatus],
        model_uris: tuple[str, str],
    ) -> None:
        scaling = AutoscalingSpec(min_replicas=1, max_replicas=3)
        external_id = deploy(model_uris[0], autoscaling=scaling).external_id
        ready = self.wait_until_ready(provider, external_id)
        assert ready.desired_replicas is not None, "an autoscaled deployment reports replicas"
        assert 1 <= ready.desired_replicas <= 3, ready.desired_replicas

        provider.update(
            external_id,
            DeploymentUpdate(autoscaling=AutoscalingSpec(min_replicas=2, max_replicas=2)),
        )

        eventually(
            lambda: provider.status(external_id).desired_replicas == 2,
            timeout=self.ready_timeout,
            what=f"deployment {external_id} to want 2 replicas after min=max=2",
            interval=self.poll_interval,
        )

    @requires("restart")
    def test_a_restarted_provider_knows_the_first_ones_deployments_and_keys(
        self,
        provider: ServingProvider,
        restarted_provider: ServingProvider,
        model_uris: tuple[str, str],
    ) -> None:
        key = f"contract-{uuid.uuid4().hex}"
        spec = self.deployment_spec(_unique_name(), model_uris[0], idempotency_key=key)
        first = provider.deploy(spec)
        try:
            self.wait_until_ready(restarted_provider, first.external_id)
            again = restarted_provider.deploy(spec)
            assert again.external_id == first.external_id, (
                "after a restart, deploy with a known idempotency key must return the first "
                "deployment: the outbox redelivers after restarts"
            )
        finally:
            provider.delete(first.external_id)


def _unique_name() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


def _split(tag: str, model_uri: str, percent: int) -> TrafficSplit:
    return TrafficSplit(tag=tag, model_uri=model_uri, percent=percent)
