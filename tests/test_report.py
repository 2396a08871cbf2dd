"""Report: severities, ok, raise_for_errors, the stable dict and the readable text."""

from __future__ import annotations

import json

import pytest

import tlaudit
from tlaudit.auditing.report import AuditFailed, Finding, Report, Severity


def make_report() -> Report:
    return Report(
        findings=(
            Finding("frozen-grad", Severity.ERROR, "`layer1`: meant frozen but requires a gradient", "layer1", "freeze it"),
            Finding("grad-inference", Severity.WARNING, "predict runs with gradients enabled", "predict", "no_grad"),
        ),
        checks_run=("frozen-grad", "grad-inference"),
        skipped=(("normalization", "no `weights` given"),),
        notes=("no sample given",),
        model="ResNet",
    )


def test_counts_and_ok():
    report = make_report()
    assert [f.check for f in report.errors] == ["frozen-grad"]
    assert [f.check for f in report.warnings] == ["grad-inference"]
    assert not report.ok
    assert Report(findings=report.warnings, checks_run=()).ok


def test_raise_for_errors_honours_fail_on():
    warnings_only = Report(findings=tuple(make_report().warnings), checks_run=("grad-inference",))
    assert warnings_only.raise_for_errors() is warnings_only
    with pytest.raises(AuditFailed, match=r"predict runs with gradients enabled") as info:
        warnings_only.raise_for_errors("warning")
    assert info.value.report is warnings_only
    with pytest.raises(ValueError, match=r"invalid fail_on: 'fatal' \(fail_on\); expected one of 'error', 'warning', 'info'"):
        warnings_only.raise_for_errors("fatal")


def test_to_dict_has_the_documented_stable_keys():
    data = make_report().to_dict()
    json.dumps(data)
    assert list(data) == [
        "version",
        "tlaudit",
        "model",
        "ok",
        "summary",
        "findings",
        "checks_run",
        "skipped",
        "notes",
        "suppressed",
        "baseline",
    ]
    assert data["version"] == 1 and data["tlaudit"] == tlaudit.__version__
    assert data["findings"][0] == {
        "check": "frozen-grad",
        "severity": "error",
        "message": "`layer1`: meant frozen but requires a gradient",
        "subject": "layer1",
        "hint": "freeze it",
        "fingerprint": make_report().findings[0].fingerprint,
        "location": None,
    }
    assert data["summary"] == {
        "errors": 1,
        "warnings": 1,
        "infos": 0,
        "checks_run": 2,
        "checks_skipped": 1,
        "suppressed": 0,
        "baselined": 0,
        "stale": 0,
    }
    assert data["skipped"] == [{"check": "normalization", "reason": "no `weights` given"}]


def test_text_has_table_hints_skips_notes_and_summary():
    text = str(make_report())
    assert text.splitlines()[0].split() == ["severity", "check", "subject", "message"]
    assert "how to fix:\n  frozen-grad: freeze it\n  grad-inference: no_grad" in text
    assert "skipped:\n  normalization: no `weights` given" in text
    assert "notes:\n  no sample given" in text
    assert text.endswith("tlaudit: ResNet: 2 checks run, 1 error, 1 warning, 1 skipped.")


def test_empty_report_says_no_findings():
    assert str(Report(findings=(), checks_run=("head-size",))).startswith("no findings")
