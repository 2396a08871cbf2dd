"""The ``junit`` format: JUnit XML for CI test reports.

One setup: a ``<testsuite name="tlaudit">`` with one ``<testcase classname="tlaudit.<model>"
name="<check-id>">`` per check that ran or was skipped; findings at or above ``fail_on`` are its
``<failure>``, the others (and suppressed and baselined findings) its ``<system-out>``, never failures.
A folder audit: a ``<testsuites>`` with one ``<testsuite name="tlaudit: PATH">`` per file; a file
that could not be audited is a suite with one ``<error>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from tlaudit.auditing.findings import Finding, Severity
from tlaudit.auditing.report import Report
from tlaudit.reports._interface import RenderOptions, SetupAudit

__all__ = ["render", "testsuite"]

_HEADER = '<?xml version="1.0" encoding="utf-8"?>\n'


def _finding_text(finding: Finding) -> str:
    subject = f" [{finding.subject}]" if finding.subject else ""
    text = f"{finding.severity.value}: {finding.message}{subject}"
    if finding.hint:
        text += f"\n  hint: {finding.hint}"
    return text


def testsuite(report: Report, fail_on: Severity) -> ET.Element:
    """The ``<testsuite>`` of one report: a testcase per check, failures at or above ``fail_on``."""
    skipped = {s.check: s.reason for s in report.skipped}
    classname = f"tlaudit.{report.model}" if report.model else "tlaudit"
    suite = ET.Element("testsuite", name="tlaudit")
    tests = failures = skips = 0
    for check in report.order:
        tests += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name=check)
        if check in skipped:
            skips += 1
            ET.SubElement(case, "skipped", message=skipped[check])
            continue
        found = report.by_check(check)
        failing = [f for f in found if f.severity.rank >= fail_on.rank]
        if failing:
            failures += 1
            failure = ET.SubElement(case, "failure", message=failing[0].message, type=failing[0].severity.value)
            failure.text = "\n".join(_finding_text(f) for f in failing)
        rest = [_finding_text(f) for f in found if f.severity.rank < fail_on.rank]
        rest += [f"in the baseline, {_finding_text(f)}" for f in report.baselined if f.check == check]
        rest += [f"suppressed ({s.reason}), {_finding_text(s.finding)}" for s in report.suppressed if s.finding.check == check]
        if rest:
            ET.SubElement(case, "system-out").text = "\n".join(rest)
    for key, value in (("tests", tests), ("failures", failures), ("errors", 0), ("skipped", skips)):
        suite.set(key, str(value))
    suite.set("time", f"{report.seconds:.3f}")
    return suite


def _error_suite(audit: SetupAudit) -> ET.Element:
    suite = ET.Element("testsuite", tests="1", failures="0", errors="1", skipped="0", time="0.000")
    case = ET.SubElement(suite, "testcase", classname="tlaudit", name="setup")
    ET.SubElement(case, "error", message=audit.error or "", type="SetupError")
    return suite


def render(audits: Sequence[SetupAudit], options: RenderOptions) -> str:
    if not options.folder and len(audits) == 1 and audits[0].report is not None:
        root = testsuite(audits[0].report, options.fail_on)
    else:
        root = ET.Element("testsuites", name="tlaudit")
        for a in audits:
            suite = testsuite(a.report, options.fail_on) if a.report is not None else _error_suite(a)
            suite.set("name", f"tlaudit: {a.path}")
            root.append(suite)
        for key in ("tests", "failures", "errors", "skipped"):
            root.set(key, str(sum(int(s.get(key, "0")) for s in root)))
    ET.indent(root)
    return _HEADER + ET.tostring(root, encoding="unicode")
