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

Markers
    ``@pytest.mark.tlaudit(lr_max=..., lr_caution=..., select=[...], ignore=[...], fail_on="error"|"warning")`` on a
    test, class or module (``pytestmark``); the closest marker wins per keyword.
    ``@pytest.mark.tlaudit_suppress("check-id", reason="...")``, one per check: the check's findings
    in the test's audits are reported as suppressed with the reason (``TransferSetup.ignore``).

Options (command line / ini; the same help text for both)
    ``--tlaudit-lr-max`` / ``tlaudit_lr_max``, ``--tlaudit-lr-caution`` / ``tlaudit_lr_caution``,
    ``--tlaudit-fail-on`` / ``tlaudit_fail_on``,
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

import inspect
from typing import Any

import pytest

from pytest_tlaudit._fixtures import ThroughputBench, TlauditFixture, tlaudit, tlaudit_bench
from pytest_tlaudit._items import SetupCheckItem, setup_items
from pytest_tlaudit._options import (
    FAIL_ON_HELP,
    LR_MAX_HELP,
    MARKER_KEYWORDS,
    MARKER_LINE,
    REPORT_HELP,
    SETUP_MARKER_LINE,
    SUPPRESS_MARKER_LINE,
    AuditOptions,
    MarkerError,
    add_options,
    marker_options,
    read_settings,
)
from pytest_tlaudit._session import STATE, State, merge_worker, state, summarize, write_report

__all__ = [
    "AuditOptions",
    "SetupCheckItem",
    "ThroughputBench",
    "TlauditFixture",
    "FAIL_ON_HELP",
    "LR_MAX_HELP",
    "REPORT_HELP",
    "MARKER_KEYWORDS",
    "tlaudit",
    "tlaudit_bench",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_LINE)
    config.addinivalue_line("markers", SETUP_MARKER_LINE)
    config.addinivalue_line("markers", SUPPRESS_MARKER_LINE)
    config.stash[STATE] = State(read_settings(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    if STATE in config.stash:
        del config.stash[STATE]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validate a ``tlaudit`` marker even on tests that do not use the fixture: a typo must not pass silently.

    A marker naming check IDs imports the check registry (and so torch) to look them up.
    """
    if isinstance(item, SetupCheckItem) or (
        item.get_closest_marker("tlaudit") is None and item.get_closest_marker("tlaudit_suppress") is None
    ):
        return  # setup items were validated at collection
    problem = None
    try:
        marker_options(state(item.config).settings, item.iter_markers("tlaudit"), item.nodeid, item.iter_markers("tlaudit_suppress"))
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
    return setup_items(collector, name, obj, marks)


def pytest_sessionfinish(session: pytest.Session) -> None:
    write_report(session)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: merge a finished worker's audits."""
    merge_worker(node)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    summarize(terminalreporter, config)
