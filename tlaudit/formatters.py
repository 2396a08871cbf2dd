"""Render an audit :class:`~tlaudit.report.Report` (and the CLI's other outputs) as text.

One function per report format, chosen by the :class:`tlaudit.formats.Format` string enum
(pip-audit style)::

    >>> from tlaudit.report import Finding, Report, Severity
    >>> report = Report(findings=(Finding("head-size", Severity.ERROR, "`fc` has 1000 outputs", "fc"),),
    ...                 checks_run=("head-size",), model="ResNet")
    >>> print(format_markdown(report).splitlines()[0])
    ## tlaudit: ResNet: 1 check run, 1 error, 0 warnings, 0 skipped.

Every formatter has the :class:`Formatter` signature ``(report, *, fail_on, show_suppressed) -> str``;
``fail_on`` is the lowest severity that fails the run (the JUnit formatter uses it: findings at or
above it are ``<failure>`` elements, the others ``<system-out>``; SARIF records it), and
``show_suppressed`` lists suppressed findings with their reasons in the table and Markdown formats
(which otherwise count them; the machine formats always carry them). Formatters never print; the
returned text has no trailing newline.

Findings a baseline accepts (``tlaudit audit --baseline``) and stale baseline entries are listed
after the active findings in the table and Markdown formats.

Formats:

* ``table``: findings table, how to fix, skipped checks, notes (and the summary sentence with
  ``summary=True``, as ``str(report)`` has it).
* ``json``: :meth:`Report.to_dict` with ``indent=2``; its keys are documented in :mod:`tlaudit.report`.
* ``markdown``: for a GitHub job summary or PR comment: a heading with the summary sentence, a
  findings table (severity, check, subject, message), "How to fix", skipped checks, notes.
* ``junit``: JUnit XML: one ``<testsuite name="tlaudit">``, one ``<testcase classname="tlaudit.<model>"
  name="<check-id>">`` per check that ran or was skipped; suppressed and baselined findings are its
  ``<system-out>``, never failures.
* ``sarif``: SARIF 2.1.0 for GitHub code scanning, in :mod:`tlaudit.sarif` (which reads the check
  catalogue for the rules, so it is imported only when this format is used).
"""
from __future__ import annotations

import enum
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, Protocol

from tabulate import tabulate

from tlaudit.findings import BaselineEntry, Finding, Severity, Skipped, Suppressed



class Report(Protocol):
    """What a formatter reads of a :class:`tlaudit.report.Report` (which renders itself through
    :func:`format_table`, so this module does not import it)."""

    findings: Sequence[Finding]
    skipped: Sequence[Skipped]
    notes: Sequence[str]
    model: str
    seconds: float
    order: Sequence[str]
    suppressed: Sequence[Suppressed]
    baselined: Sequence[Finding]
    stale: Sequence[BaselineEntry]
    baseline: str | None

    def summary(self) -> str: ...
    def by_check(self, check: str) -> list[Finding]: ...
    def to_dict(self) -> dict[str, Any]: ...

__all__ = [
    "Format",
    "Formatter",
    "format_table",
    "format_json",
    "format_markdown",
    "format_junit",
]


class Formatter(Protocol):
    """What every report formatter is: a report in, text out."""

    def __call__(self, report: Report, *, fail_on: Severity = Severity.ERROR, show_suppressed: bool = False) -> str: ...


def _about(finding: Finding) -> str:
    """``check [subject]: message``: one finding on one line of a list."""
    subject = f" [{finding.subject}]" if finding.subject else ""
    return f"{finding.check}{subject}: {' '.join(finding.message.split())}"


def _entry_about(entry: BaselineEntry) -> str:
    subject = f" [{entry.subject}]" if entry.subject else ""
    return f"{entry.check}{subject}: {' '.join(entry.message.split()) or entry.fingerprint}"


def _suppressed_count(report: Report) -> str:
    n = len(report.suppressed)
    return f"{n} finding{'' if n == 1 else 's'}"


def format_table(
    report: Report, *, fail_on: Severity = Severity.ERROR, summary: bool = False, show_suppressed: bool = False
) -> str:
    """The readable rendering: findings table, how to fix, baseline and suppressed findings, skipped
    checks, notes; the summary sentence with ``summary=True`` (the CLI prints it to stderr instead)."""
    lines: list[str] = []
    if report.findings:
        rows = [[f.severity.value, f.check, f.subject, f.message] for f in report.findings]
        lines.append(tabulate(rows, headers=["severity", "check", "subject", "message"], maxcolwidths=[None, None, 30, 70]))
        hints = list(dict.fromkeys((f.check, f.hint) for f in report.findings if f.hint))
        if hints:
            lines.extend(["", "how to fix:"])
            lines.extend(f"  {check}: {hint}" for check, hint in hints)
    else:
        lines.append("no new findings" if report.baseline is not None and report.baselined else "no findings")
    if report.baselined:
        lines.extend(["", f"in the baseline ({report.baseline}), not failing:"])
        lines.extend(f"  {_about(f)}" for f in report.baselined)
    if report.stale:
        lines.extend(["", "stale baseline entries (no finding matches them; --write-baseline rewrites the file):"])
        lines.extend(f"  {_entry_about(e)}" for e in report.stale)
    if report.suppressed:
        if show_suppressed:
            lines.extend(["", "suppressed:"])
            lines.extend(f"  {_about(s.finding)} (reason: {s.reason})" for s in report.suppressed)
        else:
            lines.extend(["", f"suppressed: {_suppressed_count(report)} (--show-suppressed lists them with their reasons)"])
    if report.skipped:
        lines.extend(["", "skipped:"])
        lines.extend(f"  {s.check}: {s.reason}" for s in report.skipped)
    if report.notes:
        lines.extend(["", "notes:"])
        lines.extend(f"  {note}" for note in report.notes)
    if summary:
        lines.extend(["", report.summary()])
    return "\n".join(lines)


def format_json(report: Report, *, fail_on: Severity = Severity.ERROR, show_suppressed: bool = False) -> str:
    """``json.dumps(report.to_dict(), indent=2)``; the keys are documented in :mod:`tlaudit.report`."""
    return json.dumps(report.to_dict(), indent=2)


_CODE_SPAN = re.compile(r"(`[^`]*`)")


def _md_inline(text: str) -> str:
    """Plain text as Markdown: one line, ``<``/``>`` outside code spans escaped (``'<module>'`` is no HTML tag)."""
    parts = _CODE_SPAN.split(" ".join(text.split()))
    return "".join(
        part if part.startswith("`") and part.endswith("`") and len(part) > 1
        else part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for part in parts
    )


def _md_cell(text: str) -> str:
    """Text safe inside a GitHub-flavoured Markdown table cell: one line, ``|`` escaped (in code spans too)."""
    return _md_inline(text).replace("|", "\\|")


def _md_code(text: str) -> str:
    return f"`{text}`" if text else ""


def _md_about(finding: Finding) -> str:
    subject = f" `{finding.subject}`" if finding.subject else ""
    return f"`{finding.check}`{subject}: {_md_inline(finding.message)}"


def format_markdown(report: Report, *, fail_on: Severity = Severity.ERROR, show_suppressed: bool = False) -> str:
    """Markdown for a GitHub job summary (``>> $GITHUB_STEP_SUMMARY``) or a PR comment."""
    lines = [f"## {_md_inline(report.summary())}", ""]
    if report.findings:
        lines.append("| severity | check | subject | message |")
        lines.append("|---|---|---|---|")
        for f in report.findings:
            cells = [f.severity.value, _md_code(f.check), _md_code(f.subject), f.message]
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        hints = list(dict.fromkeys((f.check, f.hint) for f in report.findings if f.hint))
        if hints:
            lines.extend(["", "### How to fix", ""])
            lines.extend(f"- `{check}`: {_md_inline(hint)}" for check, hint in hints)
    else:
        lines.append("No new findings." if report.baseline is not None and report.baselined else "No findings.")
    if report.baselined:
        lines.extend(["", "### In the baseline (not failing)", ""])
        lines.extend(f"- {_md_about(f)}" for f in report.baselined)
    if report.stale:
        lines.extend(["", "### Stale baseline entries", ""])
        lines.extend(f"- {_md_inline(_entry_about(e))}" for e in report.stale)
    if report.suppressed:
        lines.extend(["", "### Suppressed", ""])
        if show_suppressed:
            lines.extend(f"- {_md_about(s.finding)} (reason: {_md_inline(s.reason)})" for s in report.suppressed)
        else:
            lines.append(f"{_suppressed_count(report)} (`--show-suppressed` lists them with their reasons).")
    if report.skipped:
        lines.extend(["", "### Skipped checks", ""])
        lines.extend(f"- `{s.check}`: {_md_inline(s.reason)}" for s in report.skipped)
    if report.notes:
        lines.extend(["", "### Notes", ""])
        lines.extend(f"- {_md_inline(note)}" for note in report.notes)
    return "\n".join(lines)


def _finding_text(finding: Finding) -> str:
    subject = f" [{finding.subject}]" if finding.subject else ""
    text = f"{finding.severity.value}: {finding.message}{subject}"
    if finding.hint:
        text += f"\n  hint: {finding.hint}"
    return text


def format_junit(report: Report, *, fail_on: Severity = Severity.ERROR, show_suppressed: bool = False) -> str:
    """JUnit XML: a testcase per check; findings at or above ``fail_on`` fail it, the rest are its output."""
    level = Severity.parse(fail_on, "fail_on")
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
        failing = [f for f in found if f.severity.rank >= level.rank]
        if failing:
            failures += 1
            failure = ET.SubElement(case, "failure", message=failing[0].message, type=failing[0].severity.value)
            failure.text = "\n".join(_finding_text(f) for f in failing)
        rest = [_finding_text(f) for f in found if f.severity.rank < level.rank]
        rest += [f"in the baseline, {_finding_text(f)}" for f in report.baselined if f.check == check]
        rest += [
            f"suppressed ({s.reason}), {_finding_text(s.finding)}" for s in report.suppressed if s.finding.check == check
        ]
        if rest:
            ET.SubElement(case, "system-out").text = "\n".join(rest)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skips))
    suite.set("time", f"{report.seconds:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode")
