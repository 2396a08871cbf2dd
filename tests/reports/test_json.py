"""The ``json`` format (tlaudit/reports/json.py): ``Report.to_dict`` for one setup, the stable folder keys for many."""

from __future__ import annotations

import json

from tlaudit._version import __version__
from tlaudit.auditing.report import Finding, Report, Severity
from tlaudit.reports import Format, SetupAudit

REPORT = Report(
    findings=(Finding("frozen-bn-train", Severity.WARNING, "`bn1`: frozen but in training mode", "bn1"),),
    checks_run=("frozen-bn-train",),
    model="ResNet",
)


def test_one_setup_is_its_report_dict():
    assert json.loads(Format.JSON.render(REPORT)) == REPORT.to_dict()


def test_a_folder_has_the_documented_keys_and_counts():
    data = json.loads(Format.JSON.render([SetupAudit("a.py", REPORT), SetupAudit("b.py", error="broken")], folder=True))
    assert (data["version"], data["tlaudit"], data["ok"]) == (1, __version__, False)
    assert data["summary"] == {
        "setups": 2,
        "audited": 1,
        "failed": 1,
        "errors": 0,
        "warnings": 1,
        "infos": 0,
        "suppressed": 0,
        "baselined": 0,
        "stale": 0,
    }
    assert [(a["path"], a["error"], a["report"] is None) for a in data["audits"]] == [("a.py", None, False), ("b.py", "broken", True)]
