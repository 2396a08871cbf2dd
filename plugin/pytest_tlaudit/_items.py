"""Setups as test items: a ``@pytest.mark.tlaudit_setup`` factory becomes one item per check."""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tlaudit._options import AuditOptions, MarkerError, marker_options
from pytest_tlaudit._session import State, state
from tlaudit._text import count

if TYPE_CHECKING:  # pragma: no cover - typing only; never imported at runtime
    from tlaudit import Report

__all__ = ["SetupCheckItem", "setup_items"]


class _SetupRunner:
    """Runs one setup factory and its audit once, for all of the setup's check items."""

    def __init__(self, factory: Callable[[], Any], nodeid: str, options: AuditOptions, state: State) -> None:
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
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__.tb_next if err.__traceback__ else None))
            return False, f"tlaudit: setup factory {name}() raised {type(err).__name__}: {err}\n\n{text}"
        if not isinstance(setup, TransferSetup):
            return False, f"tlaudit: setup factory {name}() returned {type(setup).__name__}, not a tlaudit.TransferSetup"
        try:
            setup = self.options.apply(setup)  # lr_max and @pytest.mark.tlaudit_suppress
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
        for skipped in report.skipped:
            if skipped.check == self.check_id:
                pytest.skip(f"{skipped.check}: {skipped.reason}")
        level = self.runner.options.fail_on
        failing = [f for f in report.at_or_above(level) if f.check == self.check_id]
        if failing:
            text = Report(findings=tuple(failing), checks_run=(self.check_id,), model=report.model).to_text()
            pytest.fail(
                f"tlaudit: {count(len(failing), 'finding')} of `{self.check_id}` at or above {level} "
                f"(fail_on from {self.runner.options.sources['fail_on']})\n\n{text}",
                pytrace=False,
            )

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, self.runner.lineno, self.name


def setup_items(collector: pytest.Collector, name: str, obj: Callable[..., Any], marks: list[pytest.Mark]) -> list[pytest.Item]:
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
    session = state(collector.config)
    tlaudit_marks = [m for m in marks if m.name == "tlaudit"] + list(collector.iter_markers("tlaudit"))
    suppress_marks = [m for m in marks if m.name == "tlaudit_suppress"] + list(collector.iter_markers("tlaudit_suppress"))
    try:
        options = marker_options(session.settings, tlaudit_marks, where, suppress_marks)
    except MarkerError as err:
        raise collector.CollectError(str(err)) from None
    from tlaudit.auditing.checks import select_checks

    checks = select_checks(options.select, options.ignore)  # validated with the marker
    runner = _SetupRunner(obj, where, options, session)
    items: list[pytest.Item] = []
    for check in checks:
        item = SetupCheckItem.from_parent(collector, name=f"{name}[{check.id}]", runner=runner, check_id=check.id)
        for mark in marks:
            item.add_marker(getattr(pytest.mark, mark.name).with_args(*mark.args, **mark.kwargs))
        items.append(item)
    return items
