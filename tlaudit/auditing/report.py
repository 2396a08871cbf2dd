"""Findings and the report an audit returns.

JSON keys of :meth:`Report.to_dict` (stable; new keys may be added, none removed or renamed):

* ``version``: the schema version (1); ``tlaudit``: the package version; ``model``: the model's class name
* ``ok``: no error findings (suppressed and baselined findings do not count)
* ``summary``: ``{"errors", "warnings", "infos", "checks_run", "checks_skipped", "suppressed",
  "baselined", "stale"}`` counts; ``errors``, ``warnings`` and ``infos`` count the active findings
* ``findings``: the active findings, a list of ``{"check", "severity", "message", "subject", "hint",
  "fingerprint", "location"}``; ``check`` is the check's ID, ``severity`` one of ``"error"``,
  ``"warning"``, ``"info"``; ``fingerprint`` the stable identity baselines match on
  (:func:`tlaudit.auditing.findings.fingerprint`); ``location`` None or ``{"path", "line", "anchor"}``,
  where the finding points in the setup file (see :mod:`tlaudit.auditing.locations`)
* ``checks_run``: the IDs that ran; ``skipped``: a list of ``{"check", "reason"}``
* ``notes``: what the audit assumed (a synthesized sample, say)
* ``suppressed``: findings suppressed by ``TransferSetup.ignore`` or a pytest marker, each a finding
  as above plus ``"reason"``; never counted toward ``fail_on``
* ``baseline``: None, or ``{"path", "known", "stale"}`` when the report was compared with a baseline
  (``tlaudit audit --baseline``): ``known`` are the findings the baseline accepts (findings as above;
  they are not in ``findings`` and do not fail), ``stale`` the baseline entries no finding matched
  anymore, each ``{"check", "subject", "fingerprint", "severity", "message"}``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from tlaudit._text import count
from tlaudit._version import __version__
from tlaudit.auditing.findings import BaselineEntry, Finding, Location, Severity, Skipped, Suppressed

__all__ = [
    "Severity",
    "Finding",
    "Skipped",
    "Location",
    "Suppressed",
    "BaselineEntry",
    "Report",
    "AuditFailed",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1


class AuditFailed(AssertionError):
    """Raised by :meth:`Report.raise_for_errors`; its text is the readable report."""

    def __init__(self, report: Report, text: str) -> None:
        super().__init__(text)
        self.report = report


AuditFailed.__module__ = "tlaudit"  # tracebacks name the public path


@dataclass(frozen=True)
class Report:
    """What :func:`tlaudit.audit` returns. ``str(report)`` is the readable rendering."""

    findings: tuple[Finding, ...]
    checks_run: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()
    model: str = ""
    seconds: float = field(default=0.0, compare=False)
    order: tuple[str, ...] = field(default=(), compare=False)
    """Every selected check ID, run or skipped, in registry order (empty: ``checks_run`` then ``skipped``)."""
    suppressed: tuple[Suppressed, ...] = ()
    """Findings suppressed by ``TransferSetup.ignore`` (or a pytest marker), with their reasons."""
    baselined: tuple[Finding, ...] = ()
    """Findings a baseline accepts (:func:`tlaudit.auditing.baseline.apply_baseline`); not in ``findings``."""
    stale: tuple[BaselineEntry, ...] = ()
    """Baseline entries that no finding matched anymore."""
    baseline: str | None = None
    """The baseline file the report was compared with, or None."""

    def __post_init__(self) -> None:
        skipped = tuple(s if isinstance(s, Skipped) else Skipped(*s) for s in self.skipped)
        object.__setattr__(self, "skipped", skipped)
        if not self.order:
            object.__setattr__(self, "order", tuple(dict.fromkeys([*self.checks_run, *(s.check for s in skipped)])))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """No finding of severity error."""
        return not self.errors

    def at_or_above(self, severity: Severity | str) -> list[Finding]:
        level = Severity.parse(severity, "fail_on")
        return [f for f in self.findings if f.severity.rank >= level.rank]

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def raise_for_errors(self, fail_on: Severity | str = Severity.ERROR) -> Report:
        """Raise :class:`AuditFailed` (an AssertionError) if a finding is at or above ``fail_on``; else return self."""
        if self.at_or_above(fail_on):
            raise AuditFailed(self, self.to_text())
        return self

    def summary(self) -> str:
        """One sentence: checks run, errors, warnings, skipped; it says so when most checks were skipped,
        so that a short report is never read as a clean bill."""
        infos = len(self.findings) - len(self.errors) - len(self.warnings)
        parts = [
            count(len(self.checks_run), "check") + " run",
            count(len(self.errors), "error"),
            count(len(self.warnings), "warning"),
        ]
        if infos:
            parts.append(count(infos, "info"))
        parts.append(f"{len(self.skipped)} skipped")
        if self.suppressed:
            parts.append(f"{len(self.suppressed)} suppressed")
        if self.baseline is not None:
            parts.append(f"{len(self.baselined)} in the baseline")
            stale = len(self.stale)
            if stale:
                parts.append(f"{stale} stale baseline {'entry' if stale == 1 else 'entries'}")
        subject = f"{self.model}: " if self.model else ""
        mostly_skipped = len(self.skipped) > len(self.checks_run)
        tail = " (most checks could not run: see why under skipped)" if mostly_skipped else ""
        return f"tlaudit: {subject}" + ", ".join(parts) + tail + "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "tlaudit": __version__,
            "model": self.model,
            "ok": self.ok,
            "summary": {
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "infos": len(self.findings) - len(self.errors) - len(self.warnings),
                "checks_run": len(self.checks_run),
                "checks_skipped": len(self.skipped),
                "suppressed": len(self.suppressed),
                "baselined": len(self.baselined),
                "stale": len(self.stale),
            },
            "findings": [f.to_dict() for f in self.findings],
            "checks_run": list(self.checks_run),
            "skipped": [s.to_dict() for s in self.skipped],
            "notes": list(self.notes),
            "suppressed": [s.to_dict() for s in self.suppressed],
            "baseline": None
            if self.baseline is None
            else {
                "path": self.baseline,
                "known": [f.to_dict() for f in self.baselined],
                "stale": [e.to_dict() for e in self.stale],
            },
        }

    def to_text(self, *, summary: bool = True, show_suppressed: bool = False) -> str:
        """The readable rendering (the ``table`` format): findings table, how to fix, findings a baseline
        accepts and stale entries, suppressed findings (counted; ``show_suppressed`` lists each with its
        reason), skipped checks, notes, and the summary sentence unless ``summary=False``."""
        lines: list[str] = []
        if self.findings:
            rows = [[f.severity.value, f.check, f.subject, f.message] for f in self.findings]
            lines.append(tabulate(rows, headers=["severity", "check", "subject", "message"], maxcolwidths=[None, None, 30, 70]))
            hints = list(dict.fromkeys((f.check, f.hint) for f in self.findings if f.hint))
            if hints:
                lines.extend(["", "how to fix:"])
                lines.extend(f"  {check}: {hint}" for check, hint in hints)
        else:
            lines.append("no new findings" if self.baseline is not None and self.baselined else "no findings")
        if self.baselined:
            lines.extend(["", f"in the baseline ({self.baseline}), not failing:"])
            lines.extend(f"  {f.about()}" for f in self.baselined)
        if self.stale:
            lines.extend(["", "stale baseline entries (no finding matches them; --write-baseline rewrites the file):"])
            lines.extend(f"  {e.about()}" for e in self.stale)
        if self.suppressed:
            if show_suppressed:
                lines.extend(["", "suppressed:"])
                lines.extend(f"  {s.finding.about()} (reason: {s.reason})" for s in self.suppressed)
            else:
                lines.extend(
                    ["", f"suppressed: {count(len(self.suppressed), 'finding')} (--show-suppressed lists them with their reasons)"]
                )
        if self.skipped:
            lines.extend(["", "skipped:"])
            lines.extend(f"  {s.check}: {s.reason}" for s in self.skipped)
        if self.notes:
            lines.extend(["", "notes:"])
            lines.extend(f"  {note}" for note in self.notes)
        if summary:
            lines.extend(["", self.summary()])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()
