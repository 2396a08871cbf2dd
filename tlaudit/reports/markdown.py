"""The ``markdown`` format, for a GitHub job summary (``>> $GITHUB_STEP_SUMMARY``) or a PR comment.

One setup: a heading with the summary sentence, a findings table (severity, check, subject,
message), "How to fix", findings a baseline accepts and stale entries, suppressed findings (counted,
or listed with their reasons with ``show_suppressed``), skipped checks, notes. A folder audit: a
heading with the totals, then a section per file (``## `PATH`: summary``), or the file's error.

    >>> from tlaudit.auditing.report import Finding, Report, Severity
    >>> from tlaudit.reports._interface import RenderOptions, SetupAudit
    >>> report = Report(findings=(Finding("head-size", Severity.ERROR, "`fc` has 1000 outputs", "fc"),),
    ...                 checks_run=("head-size",), model="ResNet")
    >>> print(render([SetupAudit(None, report)], RenderOptions()).splitlines()[0])
    ## tlaudit: ResNet: 1 check run, 1 error, 0 warnings, 0 skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tlaudit._text import count
from tlaudit.auditing.findings import Finding
from tlaudit.auditing.report import Report
from tlaudit.reports._interface import RenderOptions, SetupAudit, summary

__all__ = ["render", "inline"]

_CODE_SPAN = re.compile(r"(`[^`]*`)")


def inline(text: str) -> str:
    """Plain text as Markdown: one line, ``<``/``>`` outside code spans escaped (``'<module>'`` is no HTML tag)."""
    parts = _CODE_SPAN.split(" ".join(text.split()))
    return "".join(
        part
        if part.startswith("`") and part.endswith("`") and len(part) > 1
        else part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for part in parts
    )


def _cell(text: str) -> str:
    """Text safe inside a GitHub-flavoured Markdown table cell: one line, ``|`` escaped (in code spans too)."""
    return inline(text).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _about(finding: Finding) -> str:
    subject = f" `{finding.subject}`" if finding.subject else ""
    return f"`{finding.check}`{subject}: {inline(finding.message)}"


def _body(report: Report, show_suppressed: bool) -> list[str]:
    lines: list[str] = []
    if report.findings:
        lines.append("| severity | check | subject | message |")
        lines.append("|---|---|---|---|")
        for f in report.findings:
            cells = [f.severity.value, _code(f.check), _code(f.subject), f.message]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        hints = list(dict.fromkeys((f.check, f.hint) for f in report.findings if f.hint))
        if hints:
            lines.extend(["", "### How to fix", ""])
            lines.extend(f"- `{check}`: {inline(hint)}" for check, hint in hints)
    else:
        lines.append("No new findings." if report.baseline is not None and report.baselined else "No findings.")
    if report.baselined:
        lines.extend(["", "### In the baseline (not failing)", ""])
        lines.extend(f"- {_about(f)}" for f in report.baselined)
    if report.stale:
        lines.extend(["", "### Stale baseline entries", ""])
        lines.extend(f"- {inline(e.about())}" for e in report.stale)
    if report.suppressed:
        lines.extend(["", "### Suppressed", ""])
        if show_suppressed:
            lines.extend(f"- {_about(s.finding)} (reason: {inline(s.reason)})" for s in report.suppressed)
        else:
            lines.append(f"{count(len(report.suppressed), 'finding')} (`--show-suppressed` lists them with their reasons).")
    if report.skipped:
        lines.extend(["", "### Skipped checks", ""])
        lines.extend(f"- `{s.check}`: {inline(s.reason)}" for s in report.skipped)
    if report.notes:
        lines.extend(["", "### Notes", ""])
        lines.extend(f"- {inline(note)}" for note in report.notes)
    return lines


def _section(audit: SetupAudit, show_suppressed: bool, folder: bool) -> str:
    if audit.report is None:
        return f"## `{audit.path}`: could not be audited\n\n{inline(audit.error or '')}"
    heading = f"## `{audit.path}`: {audit.report.summary()}" if folder else f"## {inline(audit.report.summary())}"
    return "\n".join([heading, "", *_body(audit.report, show_suppressed)])


def render(audits: Sequence[SetupAudit], options: RenderOptions) -> str:
    sections = [_section(a, options.show_suppressed, options.folder) for a in audits]
    if options.folder:
        sections.insert(0, f"# {inline(summary(audits))}")
    return "\n\n".join(sections)
