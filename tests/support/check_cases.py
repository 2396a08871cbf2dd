"""The tests every concern module of ``tests/auditing/checks/`` runs over its tables of cases.

Cases (ruff-style fixture cases) are tables per check: ``TRIGGERS[check_id]`` and ``CLEAN[check_id]``,
built on real torchvision models (ResNet, VGG, MobileNet, EfficientNet, ViT, DenseNet, Inception,
GoogLeNet, SqueezeNet; ``weights=None``, never downloaded; see ``tests/support/cases.py``). Each case runs with
``audit(setup, select=[check_id])``; every case (trigger and clean) also runs through a full audit
between two fingerprints of everything the user owns, which must be identical.

A concern module ``tests/auditing/checks/test_<concern>.py`` holds the tables of the checks in
``tlaudit/auditing/checks/<concern>.py`` and gets its tests with::

    test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import tlaudit
from tests.support.cases import Case, fingerprint, fingerprint_diff
from tlaudit.auditing.checks import REGISTRY
from tlaudit.auditing.report import Severity

__all__ = ["WrongFindings", "case_tests"]

Table = dict[str, list[Case]]


class WrongFindings(AssertionError):
    """The findings (or an unexpected SetupError) differ from the case's expectation.

    Known library bugs are marked ``xfail(raises=WrongFindings)``, so a changed fingerprint (a plain
    AssertionError) still fails those cases.
    """


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise WrongFindings(message)


def _params(triggers: Table, clean: Table, kind: str, *, full: bool = False) -> list[Any]:
    params = []
    for table_kind, table in (("trigger", triggers), ("clean", clean)):
        if kind not in (table_kind, "all"):
            continue
        for check_id, cases in table.items():
            for case in cases:
                reason = case.xfail or (case.xfail_full if full else None)
                marks = [pytest.mark.xfail(strict=True, raises=WrongFindings, reason=reason)] if reason else []
                values = (check_id, table_kind, case) if kind == "all" else (check_id, case)
                params.append(pytest.param(*values, id=f"{check_id}:{table_kind}:{case.id}", marks=marks))
    return params


def _check_findings(report: tlaudit.Report, check_id: str, kind: str, case: Case) -> None:
    found = report.by_check(check_id)
    crashed = [f.message for f in found if f.message.startswith("check crashed")]
    _expect(not crashed, f"`{check_id}` crashed: {crashed}")
    if kind == "clean":
        _expect(not found, f"`{check_id}` fired on a clean setup:\n{report}")
        return
    matched = [f for f in found if re.search(case.match, f.message)]
    _expect(bool(matched), f"no `{check_id}` finding matches {case.match!r}:\n{report}")
    severity = Severity(case.severity) if case.severity else REGISTRY[check_id].severity
    _expect(all(f.severity is severity for f in matched), f"expected severity {severity.value}: {matched}")
    if case.count is not None:
        _expect(len(found) == case.count, f"expected {case.count} `{check_id}` findings, got {len(found)}:\n{report}")


def case_tests(triggers: Table, clean: Table) -> tuple[Callable[..., None], Callable[..., None], Callable[..., None]]:
    """``test_trigger``, ``test_clean`` and ``test_full_audit_changes_nothing``, parametrized over the tables.

    Test IDs are ``<check_id>:<trigger|clean>:<case id>``; a case with ``xfail`` (or, in the full-audit
    test, ``xfail_full``) is marked ``xfail(strict=True, raises=WrongFindings)``.
    """

    @pytest.mark.parametrize(("check_id", "case"), _params(triggers, clean, "trigger"))
    def test_trigger(check_id: str, case: Case) -> None:
        """The setup must trigger ``check_id``: a finding with the expected severity whose message names the culprit."""
        report = tlaudit.audit(case.build(), select=[check_id])
        assert report.checks_run == (check_id,), report.skipped
        _check_findings(report, check_id, "trigger", case)

    @pytest.mark.parametrize(("check_id", "case"), _params(triggers, clean, "clean"))
    def test_clean(check_id: str, case: Case) -> None:
        """The check must run on the setup (not be skipped) and find nothing."""
        report = tlaudit.audit(case.build(), select=[check_id])
        assert report.checks_run == (check_id,) and report.skipped == (), report.skipped
        _check_findings(report, check_id, "clean", case)

    @pytest.mark.parametrize(("check_id", "kind", "case"), _params(triggers, clean, "all", full=True))
    def test_full_audit_changes_nothing(check_id: str, kind: str, case: Case) -> None:
        """A full audit (all checks) leaves everything the user owns bit for bit as it was, and agrees with the focused run."""
        setup = case.build()
        before = fingerprint(setup)
        try:
            report, error = tlaudit.audit(setup), None
        except tlaudit.SetupError as err:
            report, error = None, err
        assert fingerprint_diff(before, fingerprint(setup)) == []
        if case.raises:
            raised = error is not None and re.search(case.raises, str(error)) is not None
            _expect(raised, f"expected SetupError {case.raises!r}, got {error!r}")
            return
        _expect(error is None, f"the full audit raised {error!r}")
        assert report is not None
        assert check_id in report.checks_run
        _check_findings(report, check_id, kind, case)

    return test_trigger, test_clean, test_full_audit_changes_nothing
