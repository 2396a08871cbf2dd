"""The check registry: the ``Check`` type, registration, aliases and selection by ID.

What the engine, the callbacks, the report locations and the docs need to know of a check is
declared on :func:`register`, once: its ID, default severity, summary, the fields it needs, its
:class:`Phase` (when in a run it can be judged) and what a finding of it :class:`PointsTo` in a
setup file. Everything else reads it from the registry; no check ID is spelled out elsewhere.
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tlaudit.auditing.evidence import Evidence
from tlaudit.auditing.report import Finding, Severity
from tlaudit.options import unknown_check_message

__all__ = [
    "ALIASES",
    "REGISTRY",
    "Check",
    "CheckFunc",
    "Phase",
    "PointsTo",
    "checks_of",
    "get_check",
    "register",
    "select_checks",
]

CheckFunc = Callable[["Check", Evidence], Iterable[Finding]]
"""A check's function: it receives the :class:`Check` it is registered as and the evidence."""


class Phase(str, enum.Enum):
    """When a check can judge a setup.

    * ``static``: from the setup's objects alone, before any step (optimizer membership, LR ceilings,
      normalization, weights); the callbacks run these when training starts;
    * ``train``: needs the train step (its gradients, outputs, batch), at the first optimizer step;
    * ``inference``: needs ``predict``; a watched run audits these after its first validation pass.
    """

    STATIC = "static"
    TRAIN = "train"
    INFERENCE = "inference"


class PointsTo(str, enum.Enum):
    """What a check's finding points at in a setup file (see :mod:`tlaudit.auditing.locations`)."""

    FREEZE = "freeze"
    """the freeze statement, else where the frozen part is declared"""
    OPTIMIZER = "optimizer"
    """the optimizer's construction (the scheduler's, for a finding about the scheduler)"""
    HEAD = "head"
    """the assignment of the head module, else the model's construction"""
    SUBJECT = "subject"
    """the assignment of the module the finding names, else the model's construction"""
    PREDICT = "predict"
    """the ``def`` line of the ``predict`` function"""
    TRANSFORM = "transform"
    """the ``Normalize`` call, else the transform's construction"""
    SAMPLE = "sample"
    TARGETS = "targets"
    WEIGHTS = "weights"
    """the ``load_state_dict`` call, else where the weights are declared"""
    SETUP = "setup"
    """the setup function itself"""


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
    phase: Phase = Phase.TRAIN
    points_to: PointsTo = PointsTo.SETUP

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
    check_id: str,
    severity: str,
    summary: str,
    *,
    phase: str,
    points_to: str,
    needs: Sequence[str] = (),
    aliases: Sequence[str] = (),
) -> Callable[[CheckFunc], Check]:
    """Declare a check: its stable kebab-case ID, default severity, one-line summary, its :class:`Phase`,
    what its findings :class:`PointsTo`, the fields it needs and its old IDs. The decorated name
    becomes the registered :class:`Check`, which other modules use instead of spelling out its ID."""

    def decorate(func: CheckFunc) -> Check:
        for name in (check_id, *aliases):
            if not _ID.match(name) or name in REGISTRY or name in ALIASES:
                raise ValueError(f"check ID must be unique kebab-case: {name!r}")
        check = Check(check_id, Severity(severity), summary, func, tuple(needs), tuple(aliases), Phase(phase), PointsTo(points_to))
        REGISTRY[check_id] = check
        for alias in aliases:
            ALIASES[alias] = check_id
        return check

    return decorate


def checks_of(phase: Phase | str) -> list[Check]:
    """The registered checks of ``phase``, in registry order."""
    return [c for c in REGISTRY.values() if c.phase is Phase(phase)]


def get_check(check_id: str, *, field_name: str = "check") -> Check:
    """The check registered under ``check_id`` (or an alias of it)."""
    key = ALIASES.get(check_id, check_id)
    if key not in REGISTRY:
        raise ValueError(unknown_check_message(check_id, [*REGISTRY, *ALIASES], field_name))
    return REGISTRY[key]


def select_checks(select: Iterable[str | Check] | str | None = None, ignore: Iterable[str | Check] | str | None = None) -> list[Check]:
    """The checks to run, in registry order: ``select`` (all when None) minus ``ignore``; each names
    checks by ID or alias (a list, or a comma-separated str), or is a list of already selected :class:`Check`."""

    def ids(value: Iterable[str | Check] | str | None, name: str) -> list[str] | None:
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else list(value)
        return [
            i.id if isinstance(i, Check) else get_check(i.strip(), field_name=name).id for i in items if isinstance(i, Check) or i.strip()
        ]

    chosen = ids(select, "select")
    dropped = set(ids(ignore, "ignore") or ())
    return [c for c in REGISTRY.values() if (chosen is None or c.id in chosen) and c.id not in dropped]
