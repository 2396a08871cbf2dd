"""What checks produce: a :class:`Finding` with its :class:`Severity`, and a :class:`Skipped` check with its reason."""
from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Severity", "Finding", "Skipped"]


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


@dataclass(frozen=True)
class Skipped:
    """A check that could not run on this setup, and why (``reason`` names the missing input)."""

    check: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "reason": self.reason}
