"""Render an audit :class:`~tlaudit.report.Report` (and the CLI's other outputs) as text.

One function per report format, chosen by the :class:`Format` string enum (pip-audit style)::

    >>> from tlaudit.report import Finding, Report, Severity
    >>> report = Report(findings=(Finding("head-size", Severity.ERROR, "`fc` has 1000 outputs", "fc"),),
    ...                 checks_run=("head-size",), model="ResNet")
    >>> print(Format("markdown").render(report).splitlines()[0])
    ## tlaudit: ResNet: 1 check run, 1 error, 0 warnings, 0 skipped.

Every formatter has the :class:`Formatter` signature ``(report, *, fail_on) -> str``; ``fail_on`` is
the lowest severity that fails the run (only the JUnit formatter uses it: findings at or above it
are ``<failure>`` elements, the others ``<system-out>``). Formatters never print; the returned text
has no trailing newline.

Formats:

* ``table``: :meth:`Report.to_text` (findings table, how to fix, skipped, notes, summary).
* ``json``: :meth:`Report.to_dict` with ``indent=2``; its keys are documented in :mod:`tlaudit.report`.
* ``markdown``: for a GitHub job summary or PR comment: a heading with the summary sentence, a
  findings table (severity, check, subject, message), "How to fix", skipped checks, notes.
* ``junit``: JUnit XML: one ``<testsuite name="tlaudit">``, one ``<testcase classname="tlaudit.<model>"
  name="<check-id>">`` per check that ran or was skipped.
"""
from __future__ import annotations

import enum
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from tabulate import tabulate

from tlaudit.checks import REGISTRY, Check
from tlaudit.report import Finding, Report, Severity

__all__ = [
    "Format",
    "Formatter",
    "format_table",
    "format_json",
    "format_markdown",
    "format_junit",
    "format_check_list",
    "format_check_doc",
    "check_to_dict",
]


class Formatter(Protocol):
    """What every report formatter is: a report in, text out."""

    def __call__(self, report: Report, *, fail_on: Severity = Severity.ERROR) -> str: ...


def format_table(report: Report, *, fail_on: Severity = Severity.ERROR) -> str:
    """The readable rendering, :meth:`Report.to_text`, without the summary sentence (the CLI prints it to stderr)."""
    return report.to_text(summary=False)


def format_json(report: Report, *, fail_on: Severity = Severity.ERROR) -> str:
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


def format_markdown(report: Report, *, fail_on: Severity = Severity.ERROR) -> str:
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
        lines.append("No findings.")
    if report.skipped:
        lines.extend(["", "### Skipped checks", ""])
        lines.extend(f"- `{check}`: {_md_inline(reason)}" for check, reason in report.skipped)
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


def _junit_order(report: Report) -> list[str]:
    """The checks that ran or were skipped, in registry order (unknown IDs last, as given)."""
    seen = dict.fromkeys([*report.checks_run, *(check for check, _ in report.skipped)])
    ordered = [check for check in REGISTRY if check in seen]
    return ordered + [check for check in seen if check not in REGISTRY]


def format_junit(report: Report, *, fail_on: Severity = Severity.ERROR) -> str:
    """JUnit XML: a testcase per check; findings at or above ``fail_on`` fail it, the rest are its output."""
    level = Severity.parse(fail_on, "fail_on")
    skipped = dict(report.skipped)
    classname = f"tlaudit.{report.model}" if report.model else "tlaudit"
    suite = ET.Element("testsuite", name="tlaudit")
    tests = failures = skips = 0
    for check in _junit_order(report):
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
        rest = [f for f in found if f.severity.rank < level.rank]
        if rest:
            ET.SubElement(case, "system-out").text = "\n".join(_finding_text(f) for f in rest)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skips))
    suite.set("time", f"{report.seconds:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode")


_FORMATTERS: dict[str, Formatter] = {
    "table": format_table,
    "json": format_json,
    "markdown": format_markdown,
    "junit": format_junit,
}


class Format(str, enum.Enum):
    """The report formats of ``tlaudit audit --format``."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    JUNIT = "junit"

    @property
    def formatter(self) -> Formatter:
        return _FORMATTERS[self.value]

    def render(self, report: Report, *, fail_on: Severity | str = Severity.ERROR) -> str:
        """``report`` in this format."""
        return self.formatter(report, fail_on=Severity.parse(fail_on, "fail_on"))


# -- check listings (``tlaudit checks``) ---------------------------------------------------------


def check_to_dict(check: Check, *, doc: bool = False) -> dict[str, Any]:
    """A check's metadata for JSON; with ``doc``, its documentation and the four sections too."""
    data: dict[str, Any] = {
        "id": check.id,
        "severity": check.severity.value,
        "summary": check.summary,
        "needs": list(check.needs),
        "aliases": list(check.aliases),
    }
    if doc:
        data["doc"] = check.doc
        data["sections"] = {title: check.section(title) for title in ("What", "Why", "Example", "Fix")}
    return data


def format_check_list(checks: Iterable[Check], *, as_json: bool = False) -> str:
    """Every check: ID, default severity, summary."""
    checks = list(checks)
    if as_json:
        return json.dumps([check_to_dict(c) for c in checks], indent=2)
    return tabulate([[c.id, c.severity.value, c.summary] for c in checks], headers=["id", "severity", "summary"])


def _needs_text(needs: Sequence[str]) -> str:
    return ", ".join(" or ".join(f"`{o}`" for o in need.split("|")) for need in needs)


def format_check_doc(check: Check, *, as_json: bool = False) -> str:
    """One check's documentation: ID, severity, summary, what it needs, aliases, the docstring."""
    if as_json:
        return json.dumps(check_to_dict(check, doc=True), indent=2)
    lines = [f"{check.id} ({check.severity.value})", check.summary]
    if check.needs:
        lines.append(f"needs: {_needs_text(check.needs)} (skipped without)")
    if check.aliases:
        lines.append(f"aliases: {', '.join(check.aliases)}")
    lines.extend(["", check.doc])
    return "\n".join(lines)
