"""What every report format is: a list of :class:`SetupAudit` in, text out (:class:`Renderer`).

A single setup is a list of one; a folder audit (``tlaudit audit DIR``) a list of its files, with
``RenderOptions.folder`` set, so that each format renders the whole result set itself and no separate
"combined" renderer exists. Also the counts and the summary sentence the formats and the CLI share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tlaudit._text import count
from tlaudit.auditing.findings import Severity
from tlaudit.auditing.report import Report

__all__ = ["RenderOptions", "Renderer", "SetupAudit", "summary", "totals"]


@dataclass(frozen=True)
class SetupAudit:
    """One audited setup: its path as shown (None for a setup not read from a file), and its
    report, or why it could not be audited."""

    path: str | None
    report: Report | None = None
    error: str | None = None


@dataclass(frozen=True)
class RenderOptions:
    """How to render: ``fail_on`` is the lowest severity that fails the run (JUnit failures, SARIF's
    record of it), ``show_suppressed`` lists suppressed findings with their reasons (table and
    Markdown; the machine formats always carry them), ``folder`` renders a folder audit (a section
    or suite per file, and the totals)."""

    fail_on: Severity = Severity.ERROR
    show_suppressed: bool = False
    folder: bool = False


class Renderer(Protocol):
    """A format's ``render``: the audits as text, without a trailing newline; it never prints."""

    def __call__(self, audits: Sequence[SetupAudit], options: RenderOptions) -> str: ...


def totals(audits: Sequence[SetupAudit]) -> dict[str, int]:
    """Counts over ``audits``: setups, audited, failed (could not be audited), and findings by kind."""
    reports = [a.report for a in audits if a.report is not None]
    return {
        "setups": len(audits),
        "audited": len(reports),
        "failed": len(audits) - len(reports),
        "errors": sum(len(r.errors) for r in reports),
        "warnings": sum(len(r.warnings) for r in reports),
        "infos": sum(len(r.findings) - len(r.errors) - len(r.warnings) for r in reports),
        "suppressed": sum(len(r.suppressed) for r in reports),
        "baselined": sum(len(r.baselined) for r in reports),
        "stale": sum(len(r.stale) for r in reports),
    }


def summary(audits: Sequence[SetupAudit]) -> str:
    """One sentence for a folder audit: setups audited, findings, setups that could not be audited."""
    t = totals(audits)
    parts = [f"{t['audited']} of {count(t['setups'], 'setup')} audited", count(t["errors"], "error"), count(t["warnings"], "warning")]
    if t["suppressed"]:
        parts.append(f"{t['suppressed']} suppressed")
    if any(a.report is not None and a.report.baseline is not None for a in audits):
        parts.append(f"{t['baselined']} in the baseline")
        if t["stale"]:
            parts.append(f"{t['stale']} stale baseline entr{'y' if t['stale'] == 1 else 'ies'}")
    if t["failed"]:
        parts.append(f"{t['failed']} could not be audited")
    return "tlaudit: " + ", ".join(parts) + "."
