"""pytest plugin for tlaudit: assert "this is a sound transfer-learning setup" in your own test suite.

Loading the plugin imports only pytest and the standard library: torch, torchvision and the audit
engine are imported the first time a test uses a fixture method or a module declares a setup, so
suites that do not use tlaudit pay nothing. Disable it with ``-p no:tlaudit``.

Fixtures
    ``tlaudit`` (:class:`TlauditFixture`); inside a test that requests it the name is the fixture,
    not the package, so import what you need by name (``from tlaudit import replace_head``):

    * ``audit(setup=None, *, select=None, ignore=None, fail_on=None, **fields) -> Report``: audits
      ``setup`` or ``TransferSetup(**fields)`` (not both) and fails the test with the readable report
      when a finding is at or above ``fail_on``;
    * ``assert_frozen(model, *patterns)``, ``assert_trainable(model, *patterns)``: no pattern means
      the whole model; patterns follow the library's rules, and one that names nothing is a
      ``PatternError`` listing the closest names;
    * ``assert_head(model, num_classes, sample=None, *, head=None)``;
    * ``assert_eval_inference(predict, model, sample)``: eval mode, no gradients, deterministic
      (the three eval checks; their warnings fail too);
    * ``assert_normalization(transform, weights)``;
    * ``assert_lr_below(optimizer, lr_max, *, exclude=None, model=None, scheduler=None)``:
      ``exclude`` takes module-name patterns (resolved in ``model=``), modules or parameters, alone
      or in a list; with ``scheduler`` the scheduled peak LR counts; ``lr_max=None`` takes the
      configured one;
    * ``options`` (:class:`AuditOptions`, with ``sources``) and ``reports`` (this test's reports).

    ``tlaudit_bench`` (:class:`ThroughputBench`): ``tlaudit_bench(model, sample, *, rounds=20,
    warmup_rounds=2, iterations=1) -> Throughput`` on pytest-benchmark's ``benchmark`` fixture;
    ``images_per_second``, ``batch_size``, ``device`` and ``dtype`` go to ``benchmark.extra_info``.

Marker
    ``@pytest.mark.tlaudit(lr_max=..., select=[...], ignore=[...], fail_on="error"|"warning")`` on a
    test, class or module (``pytestmark``); the closest marker wins per keyword.

Options (command line / ini; the same help text for both)
    ``--tlaudit-lr-max`` / ``tlaudit_lr_max``, ``--tlaudit-fail-on`` / ``tlaudit_fail_on``,
    ``--tlaudit-report`` / ``tlaudit_report``.

    Precedence, highest first: arguments of the call (``audit(fail_on=..., select=..., ignore=...)``),
    the marker, the command line, the ini file, the default (``fail_on="error"``; ``lr_max``: the
    setup's own ``lr_max``, else the engine's default by optimizer kind). A relative report path is
    resolved against the invocation directory (command line) or the ini file's directory (ini).
    Bad values stop the run with a usage error naming their source. The ini keys are strings
    (pytest < 9 has no float ini type): in a native ``[tool.pytest]`` table write
    ``tlaudit_lr_max = "1e-3"``.

Setups as test items
    A module-level function marked ``@pytest.mark.tlaudit_setup`` that takes no arguments and returns
    a ``tlaudit.TransferSetup`` becomes one test item per check, ``test_models.py::resnet_setup[head-size]``.
    The factory and the audit run once per setup, on the first of its items to run; each item passes,
    fails with that check's findings, or is skipped with the reason the check could not run. A
    ``tlaudit`` marker on the function or module sets its options (``select``/``ignore`` choose the
    items). Nothing else is collected: unmarked functions named ``*_setup`` stay plain functions.

Report and summary
    Every audit is recorded: ``tlaudit.audit``, ``assert_eval_inference`` (an audit of three checks)
    and each setup's. ``--tlaudit-report PATH`` writes one JSON object: test node ID ->
    ``Report.to_dict()`` (a list of them when a test audited more than once), ``{}`` when none ran; setups are keyed by their function's node ID
    (``test_models.py::resnet_setup``). Under pytest-xdist the workers send their audits to the
    controller, which merges them and alone writes the file. The terminal summary gets a ``tlaudit``
    section listing audited tests with their error and warning counts, when any audit ran.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import sys
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:  # pragma: no cover - typing only; never imported at runtime
    import torch
    from torch import nn

    from tlaudit import Report, TransferSetup
    from tlaudit.pytest_support import Throughput

__all__ = [
    "AuditOptions",
    "SetupCheckItem",
    "ThroughputBench",
    "TlauditFixture",
    "FAIL_ON_HELP",
    "LR_MAX_HELP",
    "REPORT_HELP",
    "MARKER_KEYWORDS",
]

FAIL_ON_CHOICES = ("error", "warning")
MARKER_KEYWORDS = ("lr_max", "select", "ignore", "fail_on")

LR_MAX_HELP = (
    "LR ceiling for pretrained (non-head) parameter groups in tlaudit audits (a positive number). "
    "Overrides the setup's lr_max; a @pytest.mark.tlaudit(lr_max=...) marker overrides this."
)
FAIL_ON_HELP = (
    "fail a test when a tlaudit audit finds a problem at or above this severity: "
    "error (default) or warning. A @pytest.mark.tlaudit(fail_on=...) marker overrides this."
)
REPORT_HELP = (
    "write every tlaudit audit of the session to this JSON file, keyed by test node ID "
    "(a list where a test audited more than once); under pytest-xdist the controller merges the workers' audits."
)

MARKER_LINE = (
    "tlaudit(lr_max=None, select=None, ignore=None, fail_on=None): options for the tlaudit fixture's audits "
    "in this test; precedence: marker > --tlaudit-* options > tlaudit_* ini keys > defaults."
)
SETUP_MARKER_LINE = (
    "tlaudit_setup: collect this module-level function (no arguments, returns a tlaudit.TransferSetup) "
    "as one test item per audit check, e.g. test_models.py::resnet_setup[head-size]."
)


# -- settings from the command line and the ini file ---------------------------------------------


def _parse_fail_on(value: object, source: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    for choice in FAIL_ON_CHOICES:
        if text == choice:  # also a tlaudit.Severity member, which is a str enum
            return choice
    raise ValueError(f"tlaudit: invalid fail_on: {value!r} ({source}); expected 'error' or 'warning'")


def _parse_lr_max(value: object, source: str) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not number > 0 or number == float("inf"):
        raise ValueError(f"tlaudit: invalid lr_max: {value!r} ({source}); expected a positive number")
    return number


@dataclasses.dataclass(frozen=True)
class _Setting:
    value: Any
    source: str


@dataclasses.dataclass(frozen=True)
class _Settings:
    """The options from the command line and the ini file, validated; None where neither sets one."""

    lr_max: _Setting | None = None
    fail_on: _Setting | None = None
    report: Path | None = None


def _read_settings(config: pytest.Config) -> _Settings:
    problems: list[str] = []
    values: dict[str, Any] = {}
    ini_dir = config.inipath.parent if config.inipath is not None else config.rootpath
    for name, parse in (("lr_max", _parse_lr_max), ("fail_on", _parse_fail_on), ("report", None)):
        option, ini = f"--tlaudit-{name.replace('_', '-')}", f"tlaudit_{name}"
        raw = config.getoption(ini)
        source, base = option, config.invocation_params.dir
        if raw is None or raw == "":
            raw = config.getini(ini)
            source, base = f"{ini} in ini", ini_dir
        if raw is None or raw == "" or raw == []:
            continue
        if parse is None:
            values[name] = base / Path(str(raw).strip())
            continue
        try:
            values[name] = _Setting(parse(raw, source), source)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise pytest.UsageError(*problems)
    return _Settings(**values)


# -- the options one audit runs with -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AuditOptions:
    """The options in effect for a test's audits, and where each came from (``sources``).

    ``lr_max`` None means the setup's own ``lr_max`` (else the engine's default); ``select``/``ignore``
    None mean every check / none.
    """

    fail_on: str = "error"
    lr_max: float | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)


class MarkerError(ValueError):
    """A ``@pytest.mark.tlaudit`` marker with an unknown keyword or a bad value."""


def _check_ids(value: object, key: str, where: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise MarkerError(
            f"@pytest.mark.tlaudit: {key} must be check IDs (a list of str or a comma-separated str): "
            f"{value!r} ({where})"
        )
    return tuple(i.strip() for i in items if i.strip())


def _marker_kwargs(marks: Iterable[pytest.Mark], where: str) -> dict[str, Any]:
    """The keywords of the ``tlaudit`` marks, closest first (the closest wins per keyword), validated."""
    merged: dict[str, Any] = {}
    for mark in marks:
        if mark.args:
            raise MarkerError(
                f"@pytest.mark.tlaudit takes keyword arguments only: {mark.args!r} ({where}); "
                f"expected {', '.join(MARKER_KEYWORDS)}"
            )
        for key, value in mark.kwargs.items():
            if key not in MARKER_KEYWORDS:
                near = difflib.get_close_matches(key, MARKER_KEYWORDS, n=1)
                hint = f"; did you mean {near[0]}?" if near else ""
                raise MarkerError(
                    f"@pytest.mark.tlaudit: unknown keyword: {key!r} ({where}); "
                    f"expected {', '.join(MARKER_KEYWORDS)}{hint}"
                )
            if value is not None:  # None means "not set here": a farther marker or the options decide
                merged.setdefault(key, value)
    out: dict[str, Any] = {}
    for key, value in merged.items():
        try:
            if key == "lr_max":
                out[key] = _parse_lr_max(value, f"@pytest.mark.tlaudit(lr_max=...) on {where}")
            elif key == "fail_on":
                out[key] = _parse_fail_on(value, f"@pytest.mark.tlaudit(fail_on=...) on {where}")
            else:
                out[key] = _check_ids(value, key, where)
        except ValueError as err:
            raise MarkerError(str(err)) from None
    return out


def _validate_check_ids(select: Any, ignore: Any, source: str) -> None:
    """Unknown check IDs raise MarkerError naming the source; imports the engine's registry."""
    from tlaudit.checks import select_checks

    try:
        select_checks(select, ignore)
    except ValueError as err:
        raise MarkerError(f"{source}: {err}") from None


def _resolve(settings: _Settings, marker: Mapping[str, Any], where: str) -> AuditOptions:
    sources: dict[str, str] = {}
    resolved: dict[str, Any] = {}
    marker_source = f"@pytest.mark.tlaudit on {where}"
    for key, setting in (("fail_on", settings.fail_on), ("lr_max", settings.lr_max)):
        if key in marker:
            resolved[key], sources[key] = marker[key], marker_source
        elif setting is not None:
            resolved[key], sources[key] = setting.value, setting.source
        else:
            sources[key] = "default" if key == "fail_on" else "the setup's lr_max (default)"
    for key in ("select", "ignore"):
        if key in marker:
            resolved[key], sources[key] = marker[key], marker_source
        else:
            sources[key] = "default"
    return AuditOptions(**resolved, sources=sources)


# -- session state -------------------------------------------------------------------------------


class _State:
    """Everything the plugin keeps for one session, in ``config.stash``."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.tests: dict[str, list[dict[str, Any]]] = {}
        self.setups: dict[str, dict[str, Any]] = {}
        self.written: Path | None = None

    @property
    def has_audits(self) -> bool:
        return bool(self.tests or self.setups)

    def record_test(self, nodeid: str, report: Report) -> None:
        self.tests.setdefault(nodeid, []).append(report.to_dict())

    def record_setup(self, nodeid: str, report: Report) -> None:
        self.setups[nodeid] = report.to_dict()

    def payload(self) -> dict[str, Any]:
        return {"tests": self.tests, "setups": self.setups}

    def merge(self, payload: Mapping[str, Any]) -> None:
        for nodeid, reports in payload.get("tests", {}).items():
            self.tests.setdefault(nodeid, []).extend(reports)
        # a setup whose items ran on two workers was audited on both, with the same result: keep one
        self.setups.update(payload.get("setups", {}))

    def merged(self) -> dict[str, Any]:
        """Node ID -> report dict (a list where a test audited more than once), sorted by node ID."""
        out: dict[str, Any] = {nodeid: r[0] if len(r) == 1 else r for nodeid, r in self.tests.items()}
        out.update(self.setups)
        return dict(sorted(out.items()))


_STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


# -- hooks ---------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tlaudit", "transfer-learning audits (tlaudit)")
    group.addoption("--tlaudit-lr-max", dest="tlaudit_lr_max", metavar="LR", default=None, help=LR_MAX_HELP)
    group.addoption(
        "--tlaudit-fail-on", dest="tlaudit_fail_on", metavar="error|warning", default=None, help=FAIL_ON_HELP
    )
    group.addoption("--tlaudit-report", dest="tlaudit_report", metavar="PATH", default=None, help=REPORT_HELP)
    parser.addini("tlaudit_lr_max", LR_MAX_HELP, default=None)
    parser.addini("tlaudit_fail_on", FAIL_ON_HELP, default=None)
    parser.addini("tlaudit_report", REPORT_HELP, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_LINE)
    config.addinivalue_line("markers", SETUP_MARKER_LINE)
    config.stash[_STATE] = _State(_read_settings(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STATE in config.stash:
        del config.stash[_STATE]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validate a ``tlaudit`` marker even on tests that do not use the fixture: a typo must not pass silently."""
    if item.get_closest_marker("tlaudit") is None:
        return
    problem = None
    try:
        marker = _marker_kwargs(item.iter_markers("tlaudit"), item.nodeid)
        if ("select" in marker or "ignore" in marker) and "tlaudit.checks" in sys.modules:
            _validate_check_ids(marker.get("select"), marker.get("ignore"), f"@pytest.mark.tlaudit on {item.nodeid}")
    except MarkerError as err:
        problem = str(err)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A skipped setup check reports the factory's location, not the plugin's."""
    outcome = yield
    if not isinstance(item, SetupCheckItem):
        return
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple):
        path, lineno, _ = item.reportinfo()
        report.longrepr = (str(path), lineno + 1, report.longrepr[2])


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> list[pytest.Item] | None:
    if not inspect.isfunction(obj):
        return None
    marks = [m for m in getattr(obj, "pytestmark", ()) if isinstance(m, pytest.Mark)]
    if not any(m.name == "tlaudit_setup" for m in marks):
        return None
    return _setup_items(collector, name, obj, marks)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _STATE not in config.stash:
        return
    state = _state(config)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the audits to the controller
        if state.has_audits:
            workeroutput["tlaudit"] = json.dumps(state.payload())
        return
    path = state.settings.report
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state.merged(), indent=2) + "\n", encoding="utf-8")
    state.written = path


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: merge a finished worker's audits."""
    payload = (getattr(node, "workeroutput", None) or {}).get("tlaudit")
    if not payload or _STATE not in node.config.stash:
        return
    _state(node.config).merge(json.loads(payload))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _STATE not in config.stash:
        return
    state = _state(config)
    if not state.has_audits:
        return
    rows = []
    for nodeid, value in state.merged().items():
        reports = value if isinstance(value, list) else [value]
        errors = sum(r["summary"]["errors"] for r in reports)
        warnings = sum(r["summary"]["warnings"] for r in reports)
        audits = f" ({len(reports)} audits)" if len(reports) > 1 else ""
        rows.append((nodeid, f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}{audits}"))
    terminalreporter.write_sep("=", "tlaudit")
    width = max(len(nodeid) for nodeid, _ in rows)
    for nodeid, counts in rows:
        terminalreporter.write_line(f"{nodeid.ljust(width)}  {counts}")
    if state.written is not None:
        terminalreporter.write_line(f"tlaudit report written to {state.written}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- the tlaudit fixture -------------------------------------------------------------------------


class TlauditFixture:
    """What the ``tlaudit`` fixture returns: audits and assertions about a transfer setup.

    Every method imports torch and the engine on first use. Assertions pass silently or raise
    ``AssertionError`` naming the offending module, parameter, group or value; :meth:`audit` fails
    the test with the readable report.
    """

    def __init__(self, node: pytest.Item, state: _State) -> None:
        self._node = node
        self._state = state
        problem = None
        try:
            marker = _marker_kwargs(node.iter_markers("tlaudit"), node.nodeid)
            if "select" in marker or "ignore" in marker:
                _validate_check_ids(marker.get("select"), marker.get("ignore"), f"@pytest.mark.tlaudit on {node.nodeid}")
        except MarkerError as err:
            problem = str(err)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        self.options: AuditOptions = _resolve(state.settings, marker, node.nodeid)
        self.reports: list[Report] = []
        """The reports of this test's audits, in order."""

    def __repr__(self) -> str:
        return f"<tlaudit fixture: fail_on={self.options.fail_on!r}, lr_max={self.options.lr_max!r}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"the tlaudit fixture has no attribute {name!r}; inside a test that requests the `tlaudit` fixture "
            f"the name is the fixture, not the package: `from tlaudit import {name}`"
        )

    def audit(
        self,
        setup: TransferSetup | None = None,
        *,
        select: Iterable[str] | str | None = None,
        ignore: Iterable[str] | str | None = None,
        fail_on: str | None = None,
        **fields: Any,
    ) -> Report:
        """Audit ``setup`` (or a ``TransferSetup(**fields)``) and fail the test on findings at or above ``fail_on``.

        ``select``, ``ignore`` and ``fail_on`` given here override the marker and the options.
        Returns the :class:`~tlaudit.Report` when the test does not fail; every audit is recorded
        for ``--tlaudit-report`` and the terminal summary.

        Raises:
            TypeError: both a setup and fields, neither, or an unknown field.
            SetupError: the setup cannot be run (bad field, a model that cannot take the sample).
        """
        __tracebackhide__ = True
        from tlaudit import TransferSetup
        from tlaudit import audit as run_audit

        if setup is not None and fields:
            raise TypeError(
                f"tlaudit.audit(): pass a TransferSetup or its fields, not both: setup and {', '.join(fields)}"
            )
        if setup is None:
            if not fields:
                raise TypeError("tlaudit.audit(): pass a TransferSetup or its fields, e.g. audit(model=model, num_classes=10)")
            setup = TransferSetup(**_known_fields(fields))
        elif not isinstance(setup, TransferSetup):
            raise TypeError(f"tlaudit.audit(): setup must be a tlaudit.TransferSetup, got {type(setup).__name__} (setup)")
        options = self.options
        level, level_source = options.fail_on, options.sources["fail_on"]
        if fail_on is not None:
            level, level_source = _parse_fail_on(fail_on, "tlaudit.audit(fail_on=...)"), "tlaudit.audit(fail_on=...)"
        if options.lr_max is not None:
            setup = setup.replace(lr_max=options.lr_max)
        chosen_select = options.select if select is None else select
        chosen_ignore = options.ignore if ignore is None else ignore
        report = run_audit(setup, chosen_select, chosen_ignore)
        self._record(report)
        failing = report.at_or_above(level)
        if failing:
            pytest.fail(
                f"tlaudit: {_plural(len(failing), 'finding')} at or above {level} (fail_on from {level_source})\n\n"
                + report.to_text(),
                pytrace=False,
            )
        return report

    def _record(self, report: Report) -> None:
        self.reports.append(report)
        self._state.record_test(self._node.nodeid, report)

    def assert_frozen(self, model: nn.Module, *patterns: str) -> None:
        """Every parameter under ``patterns`` (all with none) has ``requires_grad=False``."""
        __tracebackhide__ = True
        from tlaudit.pytest_support import assert_frozen

        assert_frozen(model, *patterns)

    def assert_trainable(self, model: nn.Module, *patterns: str) -> None:
        """Every parameter under ``patterns`` (all with none) has ``requires_grad=True``."""
        __tracebackhide__ = True
        from tlaudit.pytest_support import assert_trainable

        assert_trainable(model, *patterns)

    def assert_head(
        self, model: nn.Module, num_classes: int, sample: torch.Tensor | None = None, *, head: Any = None
    ) -> None:
        """The head(s) (auxiliary included) have ``num_classes`` outputs; with ``sample``, every output too."""
        __tracebackhide__ = True
        from tlaudit.pytest_support import assert_head

        assert_head(model, num_classes, sample, head=head)

    def assert_eval_inference(self, predict: Callable[..., Any], model: nn.Module, sample: torch.Tensor) -> None:
        """``predict(model, sample)`` runs in eval mode, without gradients, deterministically (warnings fail)."""
        __tracebackhide__ = True
        from tlaudit.pytest_support import eval_inference_report, raise_for_eval_inference

        report = eval_inference_report(predict, model, sample)
        self._record(report)
        raise_for_eval_inference(report)

    def assert_normalization(self, transform: Any, weights: Any) -> None:
        """``transform`` normalizes once, with the mean/std ``weights`` expect."""
        __tracebackhide__ = True
        from tlaudit.pytest_support import assert_normalization

        assert_normalization(transform, weights)

    def assert_lr_below(
        self,
        optimizer: torch.optim.Optimizer,
        lr_max: float | None,
        *,
        exclude: Any = None,
        model: nn.Module | None = None,
        scheduler: Any = None,
    ) -> None:
        """Every optimizer group's LR (and its scheduled peak) is at most ``lr_max``, excluded parameters aside.

        ``exclude``: module-name patterns (resolved in ``model=``), modules or parameters, alone or in
        a list. ``lr_max=None`` takes the configured ``lr_max`` (marker, option or ini).
        """
        __tracebackhide__ = True
        from tlaudit.pytest_support import assert_lr_below

        if lr_max is None:
            lr_max = self.options.lr_max
            if lr_max is None:
                raise TypeError(
                    "tlaudit.assert_lr_below(): lr_max is None and none is configured "
                    "(@pytest.mark.tlaudit(lr_max=...), --tlaudit-lr-max or tlaudit_lr_max in ini)"
                )
        assert_lr_below(optimizer, lr_max, exclude=exclude, model=model, scheduler=scheduler)


def _known_fields(fields: dict[str, Any]) -> dict[str, Any]:
    from tlaudit import TransferSetup

    known = [f.name for f in dataclasses.fields(TransferSetup)]
    for name in fields:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]}?" if near else f"; TransferSetup fields: {', '.join(known)}"
            raise TypeError(f"tlaudit.audit(): unknown TransferSetup field: {name!r} (fields){hint}")
    return fields


@pytest.fixture
def tlaudit(request: pytest.FixtureRequest) -> TlauditFixture:
    """Audit transfer-learning setups and assert their parts; see :class:`TlauditFixture`."""
    return TlauditFixture(request.node, _state(request.config))


# -- the tlaudit_bench fixture -------------------------------------------------------------------


class ThroughputBench:
    """What the ``tlaudit_bench`` fixture returns; call it once per test (pytest-benchmark's rule)."""

    def __init__(self, benchmark: Any) -> None:
        self.benchmark = benchmark

    def __call__(
        self,
        model: nn.Module,
        sample: torch.Tensor,
        *,
        rounds: int = 20,
        warmup_rounds: int = 2,
        iterations: int = 1,
    ) -> Throughput:
        """Time ``model(sample)`` in eval mode under ``torch.inference_mode()``; return the throughput.

        Records ``images_per_second`` (median-based), ``batch_size``, ``device`` and ``dtype`` in
        ``benchmark.extra_info``, which ``--benchmark-json`` writes out.
        """
        from tlaudit.pytest_support import measure_throughput

        return measure_throughput(
            self.benchmark, model, sample, rounds=rounds, warmup_rounds=warmup_rounds, iterations=iterations
        )


@pytest.fixture
def tlaudit_bench(benchmark: Any) -> ThroughputBench:
    """Feature-extraction throughput on pytest-benchmark's ``benchmark``; see :class:`ThroughputBench`."""
    return ThroughputBench(benchmark)


# -- setups as test items ------------------------------------------------------------------------


class _SetupRunner:
    """Runs one setup factory and its audit once, for all of the setup's check items."""

    def __init__(self, factory: Callable[[], Any], nodeid: str, options: AuditOptions, state: _State) -> None:
        self.factory = factory
        self.nodeid = nodeid
        self.options = options
        self.state = state
        self.lineno = factory.__code__.co_firstlineno - 1
        self._outcome: tuple[bool, Any] | None = None
        self._first = ""

    def report(self, item_name: str) -> Report:
        __tracebackhide__ = True
        if self._outcome is None:
            self._outcome = self._run()
            self._first = item_name
            ok, value = self._outcome
            if not ok:
                pytest.fail(value, pytrace=False)
        ok, value = self._outcome
        if not ok:  # the details were shown once, on the first item
            pytest.fail(value.split("\n", 1)[0] + f" (details: {self._first})", pytrace=False)
        return value

    def _run(self) -> tuple[bool, Any]:
        from tlaudit import SetupError, TransferSetup, audit

        name = self.factory.__name__
        try:
            setup = self.factory()
        except Exception as err:  # the user's factory: report it on the items, do not crash the session
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__.tb_next))
            return False, f"tlaudit: setup factory {name}() raised {type(err).__name__}: {err}\n\n{text}"
        if not isinstance(setup, TransferSetup):
            return False, f"tlaudit: setup factory {name}() returned {type(setup).__name__}, not a tlaudit.TransferSetup"
        try:
            if self.options.lr_max is not None:
                setup = setup.replace(lr_max=self.options.lr_max)
            report = audit(setup, self.options.select, self.options.ignore)
        except SetupError as err:
            return False, f"tlaudit: the setup from {name}() cannot be audited: {err}"
        self.state.record_setup(self.nodeid, report)
        return True, report


class SetupCheckItem(pytest.Item):
    """One check of a ``@pytest.mark.tlaudit_setup`` factory's audit: ``module.py::factory[check-id]``."""

    def __init__(self, *, runner: _SetupRunner, check_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runner = runner
        self.check_id = check_id

    def runtest(self) -> None:
        __tracebackhide__ = True
        from tlaudit import Report

        report = self.runner.report(self.name)
        for check, reason in report.skipped:
            if check == self.check_id:
                pytest.skip(f"{check}: {reason}")
        level = self.runner.options.fail_on
        failing = [f for f in report.at_or_above(level) if f.check == self.check_id]
        if failing:
            text = Report(findings=tuple(failing), checks_run=(self.check_id,), model=report.model).to_text()
            pytest.fail(
                f"tlaudit: {_plural(len(failing), 'finding')} of `{self.check_id}` at or above {level} "
                f"(fail_on from {self.runner.options.sources['fail_on']})\n\n{text}",
                pytrace=False,
            )

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, self.runner.lineno, self.name


def _setup_items(collector: pytest.Collector, name: str, obj: Callable[..., Any], marks: list[pytest.Mark]) -> list[pytest.Item]:
    where = f"{collector.nodeid}::{name}"
    if not isinstance(collector, pytest.Module):
        raise collector.CollectError(
            f"@pytest.mark.tlaudit_setup: {name} must be a module-level function, not in {type(collector).__name__} "
            f"{collector.name} ({where})"
        )
    for mark in marks:
        if mark.name == "tlaudit_setup" and (mark.args or mark.kwargs):
            raise collector.CollectError(
                f"@pytest.mark.tlaudit_setup takes no arguments ({where}); put options in @pytest.mark.tlaudit(...)"
            )
    required = [
        p.name
        for p in inspect.signature(obj).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise collector.CollectError(
            f"@pytest.mark.tlaudit_setup: {name}() must take no arguments, it takes {', '.join(required)} ({where})"
        )
    state = _state(collector.config)
    tlaudit_marks = [m for m in marks if m.name == "tlaudit"] + list(collector.iter_markers("tlaudit"))
    try:
        marker = _marker_kwargs(tlaudit_marks, where)
        options = _resolve(state.settings, marker, where)
        from tlaudit.checks import select_checks

        try:
            checks = select_checks(options.select, options.ignore)
        except ValueError as err:
            raise MarkerError(f"@pytest.mark.tlaudit on {where}: {err}") from None
    except MarkerError as err:
        raise collector.CollectError(str(err)) from None
    if not checks:
        raise collector.CollectError(f"@pytest.mark.tlaudit on {where}: select and ignore leave no check to run")
    runner = _SetupRunner(obj, where, options, state)
    items = []
    for check in checks:
        item = SetupCheckItem.from_parent(collector, name=f"{name}[{check.id}]", runner=runner, check_id=check.id)
        for mark in marks:
            item.add_marker(getattr(pytest.mark, mark.name).with_args(*mark.args, **mark.kwargs))
        items.append(item)
    return items
