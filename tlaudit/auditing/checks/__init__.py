"""The named checks, one module per concern, all in one registry.

A check is declared once, with ``@register(ID, severity, summary, phase=..., points_to=..., needs=...)``
on its function (the decorated name becomes the :class:`Check`); the
function receives its :class:`Check` and the :class:`~tlaudit.auditing.evidence.Evidence` and yields
findings. It never prints, never raises for a problem it found, and never changes the setup; it
raises :class:`~tlaudit.auditing.evidence.Skip` when it cannot run. Its docstring is its documentation:
what it checks, why it matters, an example, and the fix.

The concern modules are imported below in the order that fixes the report order. A new check goes
into the module of its concern (or a new module, imported here).
"""

from __future__ import annotations

# isort: off
from tlaudit.auditing.checks._registry import ALIASES, REGISTRY, Check, Phase, PointsTo, checks_of, get_check, register, select_checks
from tlaudit.auditing.checks import frozen, head, gradients, optimizer, inference, data, weights, execution  # noqa: F401  (the report order)
# isort: on

__all__ = ["ALIASES", "REGISTRY", "Check", "Phase", "PointsTo", "checks_of", "get_check", "register", "select_checks"]
