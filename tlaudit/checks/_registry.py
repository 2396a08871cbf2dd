"""The check registry: the ``Check`` type, registration, aliases and selection by ID."""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tlaudit.evidence import Evidence
from tlaudit.options import unknown_check_message
from tlaudit.report import Finding, Severity

__all__ = ["Check", "CheckFunc", "REGISTRY", "ALIASES", "register", "get_check", "select_checks"]

CheckFunc = Callable[["Check", Evidence], Iterable[Finding]]
"""A check's function: it receives the :class:`Check` it is registered as and the evidence."""


@dataclass(frozen=True)
class Check:
    """A registered check. ``needs`` name the setup fields without which it is skipped
    (``"a|b"``: either will do)."""

    id: str
    severity: Severity
    summary: str
    func: CheckFunc = field(repr=False)
    needs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.func.__doc__ or "")

    def section(self, title: str) -> str:
        """One part of the docstring: ``what``, ``why``, ``example`` or ``fix``."""
        match = re.search(rf"^{title}:\s*\n(.*?)(?=^\w[\w ]*:\s*$|\Z)", self.doc, flags=re.M | re.S)
        return match.group(1).strip() if match else ""

    def finding(self, message: str, *, subject: str = "", hint: str = "", severity: Severity | None = None) -> Finding:
        """A finding of this check, at its default severity unless ``severity`` says otherwise."""
        return Finding(self.id, severity or self.severity, message, subject, hint)

    def run(self, evidence: Evidence) -> list[Finding]:
        return list(self.func(self, evidence))


REGISTRY: dict[str, Check] = {}
ALIASES: dict[str, str] = {}
_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def register(
    check_id: str, severity: str, summary: str, *, needs: Sequence[str] = (), aliases: Sequence[str] = ()
) -> Callable[[CheckFunc], CheckFunc]:
    """Declare a check: its stable kebab-case ID, default severity, one-line summary, inputs and old IDs."""

    def decorate(func: CheckFunc) -> CheckFunc:
        for name in (check_id, *aliases):
            if not _ID.match(name) or name in REGISTRY or name in ALIASES:
                raise ValueError(f"check ID must be unique kebab-case: {name!r}")
        REGISTRY[check_id] = Check(check_id, Severity(severity), summary, func, tuple(needs), tuple(aliases))
        for alias in aliases:
            ALIASES[alias] = check_id
        return func

    return decorate


def get_check(check_id: str, *, field_name: str = "check") -> Check:
    """The check registered under ``check_id`` (or an alias of it)."""
    key = ALIASES.get(check_id, check_id)
    if key not in REGISTRY:
        raise ValueError(unknown_check_message(check_id, [*REGISTRY, *ALIASES], field_name))
    return REGISTRY[key]


def select_checks(select: Iterable[str] | str | None = None, ignore: Iterable[str] | str | None = None) -> list[Check]:
    """The checks to run, in registry order: ``select`` (all when None) minus ``ignore``."""

    def ids(value: Iterable[str] | str | None, name: str) -> list[str] | None:
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else list(value)
        return [get_check(i.strip(), field_name=name).id for i in items if i.strip()]

    chosen = ids(select, "select")
    dropped = set(ids(ignore, "ignore") or ())
    return [c for c in REGISTRY.values() if (chosen is None or c.id in chosen) and c.id not in dropped]
