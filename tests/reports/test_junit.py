"""The ``junit`` format (tlaudit/reports/junit.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tlaudit.auditing.report import Finding, Report, Severity
from tlaudit.reports import Format


def junit(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "testsuite" and root.get("name") == "tlaudit"
    return root


def format_junit(report: Report) -> str:
    return Format.JUNIT.render(report)


def test_junit_counts_skipped_and_keeps_info_as_output():
    report = Report(
        findings=(
            Finding("head-size", Severity.INFO, "fyi"),
            Finding("head-size", Severity.ERROR, "bad", "fc", "fix it"),
            Finding("head-size", Severity.ERROR, "worse"),
        ),
        checks_run=("head-size",),
        skipped=(("eval-mode", "no `predict` given"),),
        model="",
    )
    suite = junit(format_junit(report))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "1")
    case = suite.find("testcase[@name='head-size']")
    assert case.get("classname") == "tlaudit"
    assert case.find("failure").get("message") == "bad"
    assert case.find("failure").text == "error: bad [fc]\n  hint: fix it\nerror: worse"
    assert case.find("system-out").text == "info: fyi"
