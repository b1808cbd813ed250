"""Discovery, registration and the plugin runtime, without HTTP.

Every fake plugin is installed with :func:`llmops.testing.plugins.temporary_plugin`, so it
is found through a real entry point and removed (module included) when the test ends.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmops import __version__
from llmops.capabilities.common import Capability
from llmops.config import CoreSettings
from llmops.errors import NoProviderEnabled, ProviderChoiceNeeded
from llmops.integrations import IntegrationRuntime, StoredConfig
from llmops.plugins.discovery import (
    PluginLoadError,
    installed_plugins,
    load_plugins,
    make_plugin_manager,
)
from llmops.testing.plugins import PluginInstaller as InstallPlugin

_TRACKER_BODY = textwrap.dedent(
    """
    import llmops
    from pydantic import SecretStr
    from llmops.capabilities.common import Capability, Health, HealthStatus
    from llmops.plugins.info import PluginInfo, PluginSettings

    #: What the core did to this plugin, in order: ("startup"|"build"|"close"|"shutdown", url)
    EVENTS = []


    class Settings(PluginSettings):
        url: str = "memory://default"
        retries: int = 1
        token: SecretStr | None = None


    class MemoryTracker:
        max_metrics_per_batch = 2

        def __init__(self, settings):
            self.settings = settings
            self.closed = False

        def health(self):
            return Health(status=HealthStatus.OK)

        def close(self):
            self.closed = True
            EVENTS.append(("close", self.settings.url))


    @llmops.hookimpl
    def llmops_plugin_info():
        return PluginInfo(
            name=INFO_NAME,
            version="1.0",
            display_name="Memory tracker",
            capabilities=frozenset(CAPABILITIES),
            settings_model=Settings,
            core_version=CORE_VERSION,
        )


    @llmops.hookimpl
    def llmops_startup(settings, context):
        EVENTS.append(("startup", settings.url))


    @llmops.hookimpl
    def llmops_shutdown(context):
        EVENTS.append(("shutdown", context.plugin_name))
    """
)

_TRACKER_HOOK = textwrap.dedent(
    """

    @llmops.hookimpl
    def llmops_tracking(settings, context):
        EVENTS.append(("build", settings.url))
        return MemoryTracker(settings)
    """
)


def tracker_plugin(
    name: str,
    *,
    info_name: str | None = None,
    core_version: str = ">=0.1",
    implement_hook: bool = True,
) -> str:
    """The source of a tracking plugin whose provider records what the core did to it."""
    header = (
        f"INFO_NAME = {info_name or name!r}\n"
        f"CORE_VERSION = {core_version!r}\n"
        "CAPABILITIES = {'tracking'}\n"
    )
    return header + _TRACKER_BODY + (_TRACKER_HOOK if implement_hook else "")


BROKEN_PLUGIN = """
raise RuntimeError("the tool's SDK is missing: boom-7d1e")
"""

WRONG_PARAMETER_PLUGIN = """
import llmops
from llmops.capabilities.common import Capability
from llmops.plugins.info import PluginInfo


@llmops.hookimpl
def llmops_plugin_info():
    return PluginInfo(
        name="wrongparam",
        version="1.0",
        display_name="Wrong parameter",
        capabilities=frozenset({Capability.TRACKING}),
    )


@llmops.hookimpl
def llmops_tracking(config, context):
    return None
"""

MakeRuntime = Callable[..., IntegrationRuntime]


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[MakeRuntime]:
    """Runtimes on the test's data dir (no database), shut down when the test ends."""
    made: list[IntegrationRuntime] = []

    def make(
        plugins: str = "none",
        *,
        environ: dict[str, str] | None = None,
        strict: bool = False,
    ) -> IntegrationRuntime:
        settings = CoreSettings(data_dir=tmp_path / "data", plugins=plugins, strict_plugins=strict)
        runtime = IntegrationRuntime(settings, environ=environ)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.shutdown()


def module_of(runtime: IntegrationRuntime, name: str) -> Any:
    loaded = runtime.state(name).loaded
    assert loaded is not None, runtime.state(name).failure
    return loaded.module


# -- only what is named is imported ----------------------------------------------------


def test_only_enabled_plugins_are_imported(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    alpha = install("alpha", tracker_plugin("alpha"))
    beta = install("beta", tracker_plugin("beta"))
    runtime = make_runtime("alpha")

    runtime.apply({}, {})

    assert alpha in sys.modules
    assert beta not in sys.modules
    states = {s.installed.name: s for s in runtime.states()}
    assert states["alpha"].enabled
    assert states["alpha"].loaded is not None
    assert states["beta"].enabled is False
    assert states["beta"].loaded is None
    assert states["beta"].installed.target == beta
    assert not runtime.plugin_manager.has_plugin("beta")


def test_listing_installed_plugins_reads_metadata_without_importing(
    install: InstallPlugin,
) -> None:
    module = install("alpha", tracker_plugin("alpha"), version="2.3.4")

    found = {p.name: p for p in installed_plugins()}

    assert found["alpha"].target == module
    assert found["alpha"].distribution == "llmops-test-alpha"
    assert found["alpha"].version == "2.3.4"
    assert "local" in found
    assert module not in sys.modules


def test_builtin_local_plugin_loads_even_when_no_plugin_is_enabled(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime("none")

    runtime.apply({}, {})

    local = runtime.state("local")
    assert local.enabled
    assert local.builtin
    assert local.failure is None
    assert runtime.default_provider_name(Capability.ORCHESTRATION) == "local"


# -- load failures ---------------------------------------------------------------------


def test_plugin_whose_import_raises_is_recorded_and_others_still_load(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("broken", BROKEN_PLUGIN)
    install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("broken,alpha")

    runtime.apply({}, {})

    broken = runtime.state("broken")
    assert broken.enabled
    assert broken.loaded is None
    assert broken.failure is not None
    assert broken.failure.stage == "import"
    assert "RuntimeError" in broken.failure.error
    assert "boom-7d1e" in broken.failure.error
    assert "boom-7d1e" in broken.failure.traceback
    assert runtime.state("alpha").failure is None
    assert runtime.provider(Capability.TRACKING)[0] == "alpha"
    assert runtime.state("local").failure is None


def test_load_plugins_reports_import_failures_and_unknown_names(
    install: InstallPlugin,
) -> None:
    install("broken", BROKEN_PLUGIN)
    install("alpha", tracker_plugin("alpha"))
    pm = make_plugin_manager()

    loaded, failures = load_plugins(["broken", "alpha", "ghost"], pm)

    assert [p.name for p in loaded] == ["alpha"]
    assert pm.has_plugin("alpha")
    by_name = {f.name: f for f in failures}
    assert set(by_name) == {"broken", "ghost"}
    assert by_name["broken"].stage == "import"
    assert "boom-7d1e" in by_name["broken"].error
    assert by_name["ghost"].stage == "import"
    assert "no plugin named 'ghost' is installed" in by_name["ghost"].error


def test_strict_load_plugins_raises_on_an_import_failure(install: InstallPlugin) -> None:
    install("broken", BROKEN_PLUGIN)

    with pytest.raises(PluginLoadError, match="boom-7d1e"):
        load_plugins(["broken"], make_plugin_manager(), strict=True)


def test_strict_plugins_setting_makes_the_runtime_raise(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("broken", BROKEN_PLUGIN)
    runtime = make_runtime("broken", strict=True)

    with pytest.raises(PluginLoadError, match=r"'broken' \(import\).*boom-7d1e"):
        runtime.apply({}, {})


# -- PluginInfo validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source", "stage", "message"),
    [
        pytest.param(
            "alpha",
            tracker_plugin("alpha", info_name="beta"),
            "validate",
            "PluginInfo.name is 'beta' but the entry point is named 'alpha'",
            id="name-differs-from-entry-point",
        ),
        pytest.param(
            "alpha",
            tracker_plugin("alpha", core_version="<0.1"),
            "validate",
            f"supports llmops-core <0.1, this is llmops-core {__version__}",
            id="core-version-out-of-range",
        ),
        pytest.param(
            "alpha",
            tracker_plugin("alpha", implement_hook=False),
            "validate",
            "declares tracking without implementing its hook",
            id="capability-without-hook",
        ),
        pytest.param(
            "wrongparam",
            WRONG_PARAMETER_PLUGIN,
            "register",
            "{'config'} are declared in the hookimpl but can not be found in the hookspec",
            id="hook-with-wrong-parameter",
        ),
    ],
)
def test_invalid_plugins_are_refused_with_a_clear_message(
    install: InstallPlugin,
    make_runtime: MakeRuntime,
    name: str,
    source: str,
    stage: str,
    message: str,
) -> None:
    module = install(name, source)
    runtime = make_runtime(name)

    runtime.apply({}, {})

    state = runtime.state(name)
    assert module in sys.modules  # it was imported, then refused
    assert state.loaded is None
    assert state.failure is not None
    assert state.failure.stage == stage
    assert message in state.failure.error
    assert not runtime.plugin_manager.has_plugin(name)
    assert runtime.providers(Capability.TRACKING) == {}


def test_refused_plugin_does_not_stop_the_others(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha", core_version="<0.1"))
    install("beta", tracker_plugin("beta"))
    runtime = make_runtime("alpha,beta")

    runtime.apply({}, {})

    assert runtime.state("alpha").failure is not None
    assert runtime.state("beta").failure is None
    assert list(runtime.providers(Capability.TRACKING)) == ["beta"]


# -- plugin managers -------------------------------------------------------------------


def test_make_plugin_manager_returns_independent_managers(install: InstallPlugin) -> None:
    install("alpha", tracker_plugin("alpha"))
    first = make_plugin_manager()
    second = make_plugin_manager()

    loaded, failures = load_plugins(["alpha"], first)

    assert failures == []
    assert first is not second
    assert first.has_plugin("alpha")
    assert not second.has_plugin("alpha")
    assert second.get_plugins() == set()
    assert first.hook.llmops_plugin_info() is not None
    assert second.hook.llmops_plugin_info() is None
    assert loaded[0].module is first.get_plugin("alpha")


def test_each_runtime_has_its_own_plugin_manager(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha"))
    with_alpha = make_runtime("alpha")
    without = make_runtime("none")

    with_alpha.apply({}, {})
    without.apply({}, {})

    assert with_alpha.plugin_manager is not without.plugin_manager
    assert with_alpha.plugin_manager.has_plugin("alpha")
    assert not without.plugin_manager.has_plugin("alpha")


# -- settings --------------------------------------------------------------------------


def test_settings_are_read_from_plugin_environment_variables(
    install: InstallPlugin, make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("alpha", tracker_plugin("alpha"))
    monkeypatch.setenv("LLMOPS_ALPHA__URL", "memory://from-env")
    monkeypatch.setenv("LLMOPS_ALPHA__RETRIES", "3")
    monkeypatch.setenv("LLMOPS_BETA__URL", "memory://someone-else")
    runtime = make_runtime("alpha")

    runtime.apply({}, {})

    _, tracker = runtime.provider(Capability.TRACKING, "alpha")
    assert tracker.settings.url == "memory://from-env"
    assert tracker.settings.retries == 3


def test_stored_settings_override_the_environment(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime(
        "alpha", environ={"LLMOPS_ALPHA__URL": "memory://env", "LLMOPS_ALPHA__RETRIES": "5"}
    )

    runtime.apply({"alpha": StoredConfig(None, {"url": "memory://stored"})}, {})

    _, tracker = runtime.provider(Capability.TRACKING, "alpha")
    assert tracker.settings.url == "memory://stored"
    assert tracker.settings.retries == 5  # not stored: the environment still counts


@pytest.mark.parametrize(
    ("environ", "stored", "field"),
    [
        pytest.param({"LLMOPS_ALPHA__RETRIES": "many"}, {}, "retries", id="from-env"),
        pytest.param({}, {"retries": "many"}, "retries", id="stored"),
        pytest.param({}, {"colour": "blue"}, "colour", id="unknown-stored-field"),
    ],
)
def test_invalid_settings_are_a_configure_failure_not_a_crash(
    install: InstallPlugin,
    make_runtime: MakeRuntime,
    environ: dict[str, str],
    stored: dict[str, Any],
    field: str,
) -> None:
    module = install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha", environ=environ)

    runtime.apply({"alpha": StoredConfig(None, stored)}, {})

    state = runtime.state("alpha")
    assert state.loaded is not None
    assert state.failure is not None
    assert state.failure.stage == "configure"
    assert "ValidationError" in state.failure.error
    assert f"{field}: " in state.failure.error
    assert state.providers == {}
    assert sys.modules[module].EVENTS == []
    with pytest.raises(NoProviderEnabled):
        runtime.provider(Capability.TRACKING)
    assert runtime.state("local").failure is None


def test_an_environment_variable_for_no_setting_is_ignored_with_a_warning(
    install: InstallPlugin, make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha", environ={"LLMOPS_ALPHA__COLOUR": "blue"})

    runtime.apply({}, {})

    assert runtime.state("alpha").failure is None
    assert "LLMOPS_ALPHA__" in caplog.text
    assert "COLOUR" in caplog.text


def test_invalid_secret_value_is_left_out_of_the_configure_failure(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha", environ={"LLMOPS_ALPHA__TOKEN": '["canary-4e1d"]'})

    runtime.apply({}, {})

    failure = runtime.state("alpha").failure
    assert failure is not None
    assert failure.stage == "configure"
    assert "token: " in failure.error
    assert "canary-4e1d" not in failure.error
    assert "canary-4e1d" not in failure.traceback


def test_fixing_invalid_settings_builds_the_provider(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha")
    runtime.apply({"alpha": StoredConfig(None, {"retries": "many"})}, {})

    runtime.apply({"alpha": StoredConfig(None, {"retries": 2})}, {})

    assert runtime.state("alpha").failure is None
    assert runtime.provider(Capability.TRACKING)[1].settings.retries == 2


def test_changing_settings_rebuilds_the_provider_and_closes_the_old_one(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    module = install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha")
    runtime.apply({"alpha": StoredConfig(None, {"url": "memory://one"})}, {})
    _, first = runtime.provider(Capability.TRACKING, "alpha")

    runtime.apply({"alpha": StoredConfig(None, {"url": "memory://two"})}, {})

    _, second = runtime.provider(Capability.TRACKING, "alpha")
    assert second is not first
    assert first.closed
    assert not second.closed
    assert second.settings.url == "memory://two"
    assert sys.modules[module].EVENTS == [
        ("startup", "memory://one"),
        ("build", "memory://one"),
        ("close", "memory://one"),
        ("build", "memory://two"),
    ]


def test_unchanged_settings_keep_the_same_provider(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha")
    runtime.apply({"alpha": StoredConfig(None, {"token": "s3cret"})}, {})
    _, first = runtime.provider(Capability.TRACKING, "alpha")

    runtime.apply({"alpha": StoredConfig(None, {"token": "s3cret"})}, {})
    assert runtime.provider(Capability.TRACKING, "alpha")[1] is first

    runtime.apply({"alpha": StoredConfig(None, {"token": "rotated"})}, {})
    _, rotated = runtime.provider(Capability.TRACKING, "alpha")
    assert rotated is not first  # a changed secret counts as a change
    assert first.closed
    assert rotated.settings.token.get_secret_value() == "rotated"


def test_configured_listener_is_called_when_providers_are_built(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha")
    seen: list[str] = []
    runtime.add_configured_listener(seen.append)

    runtime.apply({}, {})
    runtime.apply({"alpha": StoredConfig(None, {"url": "memory://new"})}, {})

    assert seen.count("alpha") == 2
    assert seen.count("local") == 1


# -- enabling and disabling at runtime -------------------------------------------------


def test_disabling_at_runtime_unregisters_shuts_down_and_drops_providers(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    module = install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("alpha")
    runtime.apply({}, {})
    _, tracker = runtime.provider(Capability.TRACKING, "alpha")
    plugin_module = module_of(runtime, "alpha")
    assert runtime.plugin_manager.is_registered(plugin_module)

    runtime.apply({"alpha": StoredConfig(False, {})}, {})

    assert not runtime.plugin_manager.has_plugin("alpha")
    assert not runtime.plugin_manager.is_registered(plugin_module)
    assert tracker.closed
    assert sys.modules[module].EVENTS[-2:] == [
        ("close", "memory://default"),
        ("shutdown", "alpha"),
    ]
    assert runtime.providers(Capability.TRACKING) == {}
    state = runtime.state("alpha")
    assert state.enabled is False
    assert state.loaded is None
    with pytest.raises(NoProviderEnabled):
        runtime.provider(Capability.TRACKING)


def test_enabling_again_works_without_a_new_runtime(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    module = install("alpha", tracker_plugin("alpha"))
    runtime = make_runtime("none")
    runtime.apply({}, {})
    assert runtime.state("alpha").enabled is False
    assert module not in sys.modules

    runtime.apply({"alpha": StoredConfig(True, {})}, {})
    _, first = runtime.provider(Capability.TRACKING)
    runtime.apply({"alpha": StoredConfig(False, {})}, {})
    runtime.apply({"alpha": StoredConfig(True, {})}, {})

    name, second = runtime.provider(Capability.TRACKING)
    assert name == "alpha"
    assert second is not first
    assert first.closed
    assert runtime.plugin_manager.has_plugin("alpha")
    assert runtime.state("alpha").failure is None
    events = [event for event, _ in sys.modules[module].EVENTS]
    assert events == ["startup", "build", "close", "shutdown", "startup", "build"]


def test_builtin_plugin_cannot_be_disabled_through_stored_configuration(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime("none")

    runtime.apply({"local": StoredConfig(False, {})}, {})

    assert runtime.state("local").enabled
    assert runtime.provider(Capability.ORCHESTRATION)[0] == "local"


def test_runtime_shutdown_closes_providers_and_calls_shutdown(
    install: InstallPlugin, tmp_path: Path
) -> None:
    module = install("alpha", tracker_plugin("alpha"))
    runtime = IntegrationRuntime(CoreSettings(data_dir=tmp_path / "data", plugins="alpha"))
    runtime.apply({}, {})
    _, tracker = runtime.provider(Capability.TRACKING)

    runtime.shutdown()

    assert tracker.closed
    assert sys.modules[module].EVENTS[-1] == ("shutdown", "alpha")
    assert not runtime.plugin_manager.has_plugin("alpha")


# -- default provider ------------------------------------------------------------------


def test_without_a_stored_choice_a_tie_is_never_broken_by_name_or_order(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("beta", tracker_plugin("beta"))
    install("alpha", tracker_plugin("alpha"))
    first = make_runtime("beta,alpha")
    second = make_runtime("alpha,beta")

    first.apply({}, {})
    second.apply({}, {})

    for runtime in (first, second):
        assert runtime.default_provider_name(Capability.TRACKING) is None
        assert runtime.choices_needed() == {Capability.TRACKING: ["alpha", "beta"]}
        assert runtime.has_provider(Capability.TRACKING)
        with pytest.raises(ProviderChoiceNeeded, match="alpha, beta"):
            runtime.provider(Capability.TRACKING)
        assert runtime.provider(Capability.TRACKING, "beta")[0] == "beta"  # named: fine
    assert first.state("alpha").choice_needed_for == [Capability.TRACKING]
    assert first.state("alpha").is_default_for == first.state("beta").is_default_for == []


def test_stored_default_provider_wins(install: InstallPlugin, make_runtime: MakeRuntime) -> None:
    install("alpha", tracker_plugin("alpha"))
    install("beta", tracker_plugin("beta"))
    runtime = make_runtime("alpha,beta")

    runtime.apply({}, {Capability.TRACKING: "beta"})

    assert runtime.provider(Capability.TRACKING)[0] == "beta"
    assert runtime.state("beta").is_default_for == [Capability.TRACKING]
    assert runtime.state("alpha").is_default_for == []
    assert runtime.provider(Capability.TRACKING, "alpha")[0] == "alpha"


def test_stored_default_of_a_disabled_provider_falls_back_to_an_enabled_one(
    install: InstallPlugin, make_runtime: MakeRuntime
) -> None:
    install("alpha", tracker_plugin("alpha"))
    install("beta", tracker_plugin("beta"))
    runtime = make_runtime("alpha,beta")

    runtime.apply({"beta": StoredConfig(False, {})}, {Capability.TRACKING: "beta"})

    assert runtime.provider(Capability.TRACKING)[0] == "alpha"
    with pytest.raises(NoProviderEnabled):
        runtime.provider(Capability.TRACKING, "beta")


def test_provider_for_a_capability_nobody_offers_raises_no_provider_enabled(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime("none")
    runtime.apply({}, {})

    with pytest.raises(NoProviderEnabled) as raised:
        runtime.provider(Capability.TRACKING)

    assert raised.value.status == 409
    assert raised.value.slug == "no-provider-enabled"
    assert raised.value.extensions["capability"] == "tracking"
    assert runtime.default_provider_name(Capability.TRACKING) is None
