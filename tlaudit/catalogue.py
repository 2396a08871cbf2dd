"""The check catalogue: every registered check's metadata and documentation, as a table, text or JSON.

What ``tlaudit checks`` and ``tlaudit checks ID`` print.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate

from tlaudit.checks import Check

__all__ = ["check_to_dict", "format_check_list", "format_check_doc"]

SECTIONS = ("What", "Why", "Example", "Fix")
"""The parts every check's docstring has."""


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
        data["sections"] = {title: check.section(title) for title in SECTIONS}
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
