"""Contract suites: one per capability, for every provider, ours and third parties'.

A provider's test class subclasses the capability's suite, hands it the provider through
a ``provider`` fixture, declares the optional features it supports, and inherits every
test the core relies on (the model is SQLAlchemy's dialect compliance suite)::

    from llmops.testing.contracts.orchestration import OrchestrationContract

    class TestMyEngineContract(OrchestrationContract):
        supports = frozenset({"parallel", "retries", "cancel", "logs"})

        @pytest.fixture
        def provider(self, tmp_path: Path) -> Iterator[MyEngine]:
            engine = MyEngine(...)
            yield engine
            engine.close()

Optional features: a test that needs a feature is decorated ``@requires("cancel")``. In a
subclass that does not declare every feature a test needs, that test **does not exist**:
it is neither collected nor reported as skipped. The project forbids silent skips, and a
skip per undeclared feature would be dozens of lines of noise in every run that say
nothing new; instead the declaration itself is checked: an unknown feature name is a
``TypeError`` when the class is defined (a typo cannot quietly drop tests), each suite
has tests that tie declarations to what the provider says about itself (a serving
framework that reports ``supports_canary`` must declare ``"canary"``), and the
``llmops.testing.pytest_plugin`` prints, per suite, the features left undeclared.
``TheSuite.not_supported`` lists them too.

The suites assert with explicit messages, written for the plugin author who reads them.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from llmops.capabilities.common import Health, Provider
from llmops.testing.waiting import wait_for

__all__ = [
    "ContractSuite",
    "eventually",
    "read_tree",
    "requires",
    "timed_health",
    "write_tree",
]

# The suites live in submodules imported by the authors' test modules. Registering them
# here (the package is always imported first) lets pytest rewrite their asserts, so a
# failed contract shows the values it compared. Outside pytest this does nothing.
pytest.register_assert_rewrite(
    *(
        f"{__name__}.{module}"
        for module in ("tracking", "serving", "orchestration", "registry", "versioning")
    )
)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_REQUIRES = "__llmops_contract_requires__"


def requires(*features: str) -> Callable[[F], F]:
    """Mark a contract test as needing optional ``features``; it exists only in subclasses
    that declare all of them in ``supports``."""

    def mark(test: F) -> F:
        setattr(test, _REQUIRES, frozenset(features))
        return test

    return mark


class _Undeclared:
    """Stands in for a test whose features a subclass does not declare.

    Not callable, so pytest does not collect it; it keeps the test for a further
    subclass that declares more.
    """

    def __init__(self, test: Callable[..., Any], missing: frozenset[str]) -> None:
        self.test = test
        self.missing = missing

    def __repr__(self) -> str:
        return f"<contract test {self.test.__name__} needs {', '.join(sorted(self.missing))}>"


class ContractSuite:
    """Base of the capability suites: resolves ``supports`` into the tests that exist."""

    #: The capability this suite checks (set by each suite).
    capability: ClassVar[str] = ""
    #: Every optional feature of this suite, with what declaring it promises.
    features: ClassVar[Mapping[str, str]] = {}
    #: The optional features the provider under test supports (set by subclasses).
    supports: ClassVar[frozenset[str]] = frozenset()
    #: The optional features not declared, whose tests do not exist in this class.
    not_supported: ClassVar[frozenset[str]] = frozenset()
    #: The capability's Protocol (set by each suite).
    protocol: ClassVar[type | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.supports, str):
            raise TypeError(
                f"{cls.__qualname__}.supports must be a set of feature names, not the "
                f"string {cls.supports!r}"
            )
        supports = frozenset(cls.supports)
        unknown = supports - set(cls.features)
        if unknown:
            known = ", ".join(sorted(cls.features)) or "none"
            raise TypeError(
                f"{cls.__qualname__}.supports names unknown features: "
                f"{', '.join(sorted(unknown))} (this suite knows: {known})"
            )
        cls.not_supported = frozenset(cls.features) - supports
        for name, test in _contract_tests(cls):
            missing = _needs(test) - supports
            setattr(cls, name, _Undeclared(test, missing) if missing else test)

    def test_methods_take_the_protocols_parameters(self, provider: Any) -> None:
        """isinstance() with a Protocol checks names only: a method whose parameters
        differ from the Protocol's breaks the core's calls at run time."""
        assert self.protocol is not None, f"{type(self).__name__} sets no protocol"
        problems = signature_mismatches(provider, self.protocol)
        assert not problems, "\n".join(problems)

    @classmethod
    def contract_tests(cls) -> dict[str, frozenset[str]]:
        """Every test of the suite with the features it needs, present or not here."""
        return {name: _needs(test) for name, test in _contract_tests(cls)}


def _needs(test: Callable[..., Any]) -> frozenset[str]:
    needed: frozenset[str] = getattr(test, _REQUIRES, frozenset())
    return needed


def _contract_tests(cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """The suite's test functions by name, the most derived definition winning."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if not name.startswith("test") or name in seen:
                continue
            seen.add(name)
            if isinstance(value, _Undeclared):
                yield name, value.test
            elif callable(value):
                yield name, value


# -------------------------------------------------------------------------------------
# Helpers the suites share (and authors may use)
# -------------------------------------------------------------------------------------


def signature_mismatches(provider: object, protocol: type) -> list[str]:
    """Where ``provider``'s methods cannot be called the way ``protocol`` says.

    For every method of the Protocol: each of its parameters must be accepted under the
    same name (the core may pass any by keyword) and in a compatible way (a positional
    one may not become keyword-only), one with a default must keep a default, and a
    parameter the provider adds must have a default. ``*args``/``**kwargs`` accept what
    they cover. Annotations are left to the type checker.
    """
    problems: list[str] = []
    for name, expected in vars(protocol).items():
        if name.startswith("_") or not inspect.isfunction(expected):
            continue
        method = getattr(provider, name, None)
        if not callable(method):
            problems.append(f"{name}: missing")
            continue
        wanted = list(inspect.signature(expected).parameters.values())[1:]  # self
        try:
            offered = inspect.signature(method).parameters
        except (TypeError, ValueError):
            continue  # a builtin or C method: nothing to read
        problems += [f"{name}: {p}" for p in _parameter_problems(wanted, offered)]
    return problems


def _parameter_problems(
    wanted: list[inspect.Parameter], offered: Mapping[str, inspect.Parameter]
) -> Iterator[str]:
    kinds = {p.kind for p in offered.values()}
    var_positional = inspect.Parameter.VAR_POSITIONAL in kinds
    var_keyword = inspect.Parameter.VAR_KEYWORD in kinds
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for parameter in wanted:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        found = offered.get(parameter.name)
        if found is None:
            if not var_keyword and not (var_positional and parameter.kind in positional):
                yield f"takes no parameter {parameter.name!r}"
            continue
        if parameter.kind in positional and found.kind is inspect.Parameter.KEYWORD_ONLY:
            yield f"{parameter.name!r} is keyword-only; the Protocol passes it by position"
        if found.kind is inspect.Parameter.POSITIONAL_ONLY and parameter.kind not in positional:
            yield f"{parameter.name!r} is positional-only; the Protocol passes it by keyword"
        if parameter.default is not inspect.Parameter.empty and found.default is found.empty:
            yield f"{parameter.name!r} has no default; the Protocol's may be left out"
    names = {p.name for p in wanted}
    for extra in offered.values():
        if extra.name in names or extra.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            continue
        if extra.default is inspect.Parameter.empty:
            yield f"adds {extra.name!r} without a default; the core never passes it"


def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail with
    ``what`` after ``timeout`` seconds. Exceptions from ``probe`` propagate."""
    value = wait_for(probe, timeout=timeout, interval=interval, what=what)
    assert value is not None  # wait_for returns only a truthy value
    return value


def write_tree(root: Path, files: Mapping[str, bytes]) -> Path:
    """Make ``root`` hold exactly ``files`` (relative POSIX paths -> content)."""
    if root.exists():
        for path in sorted(root.rglob("*"), reverse=True):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` as relative POSIX path -> content."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def timed_health(provider: Provider, deadline: float) -> Health:
    """``provider.health()``, checked to be a :class:`Health` that came within ``deadline``
    seconds. An exception from ``health()`` fails the caller: it must never raise."""
    started = time.monotonic()
    health = provider.health()
    took = time.monotonic() - started
    assert isinstance(health, Health), f"health() returned {type(health).__name__}, not Health"
    assert took <= deadline, f"health() took {took:.2f} s, more than {deadline:g} s"
    return health
