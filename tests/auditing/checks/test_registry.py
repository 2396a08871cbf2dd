"""The check registry: every check documented, in report order, selectable by ID, with cases and docs."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.support.cases import Case
from tlaudit.auditing import checks as checks_module
from tlaudit.auditing.checks import REGISTRY, Check, get_check, select_checks
from tlaudit.auditing.report import Severity

# -- the registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("check", list(REGISTRY.values()), ids=lambda c: c.id)
def test_every_check_is_documented_in_four_parts(check: Check):
    assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", check.id)
    assert isinstance(check.severity, Severity)
    assert check.summary and not check.summary.endswith(".")
    for part in ("What", "Why", "Example", "Fix"):
        assert len(check.section(part)) > 20, f"{check.id}: docstring section {part!r} missing or empty"


@pytest.mark.parametrize("check", list(REGISTRY.values()), ids=lambda c: c.id)
def test_every_check_states_its_evidence_rule(check: Check):
    """No error without evidence: each check says what observation makes its findings errors, and when it skips."""
    evidence = check.section("Evidence")
    word = "Error:" if check.severity is Severity.ERROR else "Warning:"
    assert word in evidence, f"{check.id}: the Evidence section does not say what makes its {word[:-1].lower()}"
    assert "Skip:" in evidence, f"{check.id}: the Evidence section does not say when the check skips"


def test_registry_holds_the_checks_in_report_order():
    assert list(REGISTRY) == [
        "frozen-grad",
        "frozen-changed",
        "frozen-bn-train",
        "head-frozen",
        "head-size",
        "trainable-no-grad",
        "optimizer-missing",
        "optimizer-frozen",
        "lr-threshold",
        "optimizer-state",
        "eval-mode",
        "eval-nondeterministic",
        "grad-inference",
        "normalization",
        "input-range",
        "label-range",
        "pretrained-not-loaded",
        "user-code-error",
    ]


# -- selection -------------------------------------------------------------------------------------


def test_select_and_ignore_accept_lists_and_comma_strings():
    assert [c.id for c in select_checks("head-size, lr-threshold")] == ["head-size", "lr-threshold"]
    chosen = select_checks(None, ["eval-mode"])
    assert "eval-mode" not in [c.id for c in chosen] and len(chosen) == len(REGISTRY) - 1


def test_unknown_check_id_names_the_closest():
    with pytest.raises(ValueError, match=r"unknown check ID: 'head-sise' \(select\); did you mean head-size"):
        select_checks(["head-sise"])
    with pytest.raises(ValueError, match=r"unknown check ID: 'zzz' \(check\); `tlaudit checks` lists them"):
        get_check("zzz")


def test_checks_module_exports_only_its_api():
    assert set(checks_module.__all__) == {
        "Check",
        "REGISTRY",
        "ALIASES",
        "Phase",
        "PointsTo",
        "checks_of",
        "get_check",
        "register",
        "select_checks",
    }


# -- every check has cases in the module of its concern --------------------------------------------


CONCERNS = sorted({check.func.__module__.rsplit(".", 1)[1] for check in REGISTRY.values()})
"""The modules of ``tlaudit/auditing/checks/`` with checks; each has its cases in ``tests/auditing/checks/test_<concern>.py``."""


def _tables() -> tuple[dict[str, list[Case]], dict[str, list[Case]]]:
    """``TRIGGERS`` and ``CLEAN`` of every concern module, merged (a check ID in two modules is an error)."""
    triggers: dict[str, list[Case]] = {}
    clean: dict[str, list[Case]] = {}
    for concern in CONCERNS:
        module = importlib.import_module(f"tests.auditing.checks.test_{concern}")
        for merged, table in ((triggers, module.TRIGGERS), (clean, module.CLEAN)):
            assert not set(merged) & set(table), f"{concern}: check IDs with cases in two modules"
            merged.update(table)
    return triggers, clean


def test_every_check_has_cases_and_documentation() -> None:
    TRIGGERS, CLEAN = _tables()
    assert set(TRIGGERS) == set(REGISTRY) == set(CLEAN)
    for check_id, check in REGISTRY.items():
        assert TRIGGERS[check_id] and CLEAN[check_id], check_id
        assert all(case.match for case in TRIGGERS[check_id]), f"{check_id}: a trigger case without a message pattern"
        for part in ("What", "Why", "Example", "Fix"):
            assert check.section(part), f"{check_id}: docstring has no {part}: section"
    ids = [f"{c}:{case.id}" for table in (TRIGGERS, CLEAN) for c, cases in table.items() for case in cases]
    assert len(ids) == len(set(ids))
