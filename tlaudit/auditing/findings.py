"""What checks produce: a :class:`Finding` with its :class:`Severity`, and a :class:`Skipped` check with its reason.

Also what the report adds to findings: a :class:`Location` in the setup file, the stable
:func:`fingerprint` that baselines match on, and :class:`Suppressed` findings with their reason.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Severity", "Finding", "Skipped", "Location", "Suppressed", "fingerprint", "BaselineEntry"]


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
            raise ValueError(f"invalid {field_name}: {value!r} ({field_name}); expected one of 'error', 'warning', 'info'") from None


@dataclass(frozen=True)
class Location:
    """Where a finding points in the user's code: a file, a 1-based line, and what was found there.

    ``anchor`` says what the line is (``"optimizer construction"``, ``"setup function"``, ...);
    see :mod:`tlaudit.auditing.locations` for how it is found.
    """

    path: str
    line: int
    anchor: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "anchor": self.anchor}


_CODE_SPAN = re.compile(r"`[^`]*`")
_NAME_LIST = re.compile(r"`\x00`(?:(?:, | and )`\x00`)*")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_MORE = re.compile(r" and # more")


def fingerprint(check: str, subject: str, message: str) -> str:
    """A finding's stable identity for baselines: 16 hex digits of a SHA-256.

    It hashes the check ID, the subject verbatim, and the message's *shape*: every number becomes
    ``#`` (parameter counts, LRs, statistics), and every list of backticked names becomes one
    placeholder (those names are examples, whose choice and order follow the order of parameters
    and modules; the subject already names what the finding is about). So a finding keeps its
    fingerprint when parameters are reordered, added or removed, and changes when it is about a
    different module or says a different thing.

    >>> a = fingerprint("frozen-grad", "", "60 parameters in 6 modules (`conv1`, `bn1`, `layer1` and 3 more): meant frozen")
    >>> a == fingerprint("frozen-grad", "", "58 parameters in 5 modules (`layer1`, `conv1` and 3 more): meant frozen")
    True
    >>> a == fingerprint("frozen-grad", "layer1", "60 parameters in 6 modules (`conv1`, `bn1`, `layer1` and 3 more): meant frozen")
    False
    """
    shape = _CODE_SPAN.sub("`\x00`", " ".join(message.split()))
    shape = _NUMBER.sub("#", shape)
    shape = _MORE.sub("", _NAME_LIST.sub("`*`", shape))
    digest = hashlib.sha256("\x1f".join((check, subject, shape)).encode("utf-8")).hexdigest()
    return digest[:16]


@dataclass(frozen=True)
class Finding:
    """One problem a check found: ``message`` says what, ``hint`` says how to fix it.

    ``location`` is where it points in the setup file, when the audit was run from one (the
    CLI's :func:`tlaudit.auditing.files.audit_file`); None otherwise.
    """

    check: str
    severity: Severity
    message: str
    subject: str = ""
    hint: str = ""
    location: Location | None = None

    @property
    def fingerprint(self) -> str:
        """The stable identity baselines match on (:func:`fingerprint`)."""
        return fingerprint(self.check, self.subject, self.message)

    def about(self) -> str:
        """``check [subject]: message`` on one line: the finding in a list."""
        subject = f" [{self.subject}]" if self.subject else ""
        return f"{self.check}{subject}: {' '.join(self.message.split())}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "message": self.message,
            "subject": self.subject,
            "hint": self.hint,
            "fingerprint": self.fingerprint,
            "location": self.location.to_dict() if self.location is not None else None,
        }


@dataclass(frozen=True)
class Suppressed:
    """A finding the setup (``TransferSetup.ignore``) or a pytest marker suppressed, and why.

    It does not count toward ``fail_on``, but every report shows it with its reason.
    """

    finding: Finding
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.finding.to_dict(), "reason": self.reason}


@dataclass(frozen=True)
class Skipped:
    """A check that could not run on this setup, and why (``reason`` names the missing input)."""

    check: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "reason": self.reason}


@dataclass(frozen=True)
class BaselineEntry:
    """One accepted finding in a baseline file: what it is matched on (``check``, ``subject``,
    ``fingerprint``) and, for people reading the file, its severity and message when written."""

    check: str
    subject: str
    fingerprint: str
    severity: str = ""
    message: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.check, self.subject, self.fingerprint)

    def about(self) -> str:
        """``check [subject]: message`` on one line (the fingerprint where no message was written)."""
        subject = f" [{self.subject}]" if self.subject else ""
        return f"{self.check}{subject}: {' '.join(self.message.split()) or self.fingerprint}"

    def to_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "subject": self.subject,
            "fingerprint": self.fingerprint,
            "severity": self.severity,
            "message": self.message,
        }
