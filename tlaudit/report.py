"""Findings and the report an audit returns.

JSON keys of :meth:`Report.to_dict` (stable; new keys may be added, none removed or renamed):

* ``version``: the schema version (1); ``tlaudit``: the package version; ``model``: the model's class name
* ``ok``: no error findings
* ``summary``: ``{"errors", "warnings", "infos", "checks_run", "checks_skipped"}`` counts
* ``findings``: a list of ``{"check", "severity", "message", "subject", "hint"}``; ``check`` is the
  check's ID, ``severity`` one of ``"error"``, ``"warning"``, ``"info"``
* ``checks_run``: the IDs that ran; ``skipped``: a list of ``{"check", "reason"}``
* ``notes``: what the audit assumed (a synthesized sample, say)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

__all__ = ["Severity", "Finding", "Report", "AuditFailed", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


class Severity(str, enum.Enum):
    """How bad a finding is; ordered ``info < warning < error``."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]

    @classmethod
    def parse(cls, value: object, field_name: str = "severity") -> Severity:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"invalid {field_name}: {value!r} ({field_name}); expected one of 'error', 'warning', 'info'"
            ) from None


@dataclass(frozen=True)
class Finding:
    """One problem a check found: ``message`` says what, ``hint`` says how to fix it."""

    check: str
    severity: Severity
    message: str
    subject: str = ""
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "message": self.message,
            "subject": self.subject,
            "hint": self.hint,
        }


class AuditFailed(AssertionError):
    """Raised by :meth:`Report.raise_for_errors`; its text is the readable report."""

    def __init__(self, report: Report, text: str) -> None:
        super().__init__(text)
        self.report = report


@dataclass(frozen=True)
class Report:
    """What :func:`tlaudit.audit` returns. ``str(report)`` is the readable rendering."""

    findings: tuple[Finding, ...]
    checks_run: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    model: str = ""
    seconds: float = field(default=0.0, compare=False)

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
        """One sentence: checks run, errors, warnings, skipped."""
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        infos = len(self.findings) - len(self.errors) - len(self.warnings)
        parts = [
            plural(len(self.checks_run), "check") + " run",
            plural(len(self.errors), "error"),
            plural(len(self.warnings), "warning"),
        ]
        if infos:
            parts.append(plural(infos, "info"))
        parts.append(f"{len(self.skipped)} skipped")
        subject = f"{self.model}: " if self.model else ""
        return f"tlaudit: {subject}" + ", ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        from tlaudit import __version__

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
            },
            "findings": [f.to_dict() for f in self.findings],
            "checks_run": list(self.checks_run),
            "skipped": [{"check": c, "reason": r} for c, r in self.skipped],
            "notes": list(self.notes),
        }

    def to_text(self, *, summary: bool = True) -> str:
        """The readable rendering: findings table, hints, skipped checks, notes, and the summary sentence."""
        lines: list[str] = []
        if self.findings:
            rows = [[f.severity.value, f.check, f.subject, f.message] for f in self.findings]
            lines.append(tabulate(rows, headers=["severity", "check", "subject", "message"], maxcolwidths=[None, None, 30, 70]))
            hints = list(dict.fromkeys((f.check, f.hint) for f in self.findings if f.hint))
            if hints:
                lines.append("")
                lines.append("how to fix:")
                lines.extend(f"  {check}: {hint}" for check, hint in hints)
        else:
            lines.append("no findings")
        if self.skipped:
            lines.append("")
            lines.append("skipped:")
            lines.extend(f"  {check}: {reason}" for check, reason in self.skipped)
        if self.notes:
            lines.append("")
            lines.append("notes:")
            lines.extend(f"  {note}" for note in self.notes)
        if summary:
            lines.append("")
            lines.append(self.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()
