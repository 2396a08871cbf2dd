"""The check catalogue: every registered check's metadata and documentation, as a table, text, JSON or Markdown.

What ``tlaudit checks`` and ``tlaudit checks ID`` print, and what ``docs/checks.md`` is generated
from (``python -m tlaudit checks --format markdown > docs/checks.md``; a test keeps it in sync).
Every check's docstring has the parts in :data:`SECTIONS`: what it checks, why it matters, why it is
silent (what the user sees instead of an error), the evidence rule (what observation makes it an
error, what makes it a warning or info, when it skips), an example, the fix, and references (the
PyTorch, torchvision, timm or paper source that states the rule).

The rule every check follows, :data:`PRINCIPLE`: no error without evidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate

from tlaudit.auditing.checks import Check

__all__ = [
    "PRINCIPLE",
    "SECTIONS",
    "check_to_dict",
    "format_check_list",
    "format_check_doc",
    "format_check_markdown",
    "format_catalogue_markdown",
    "anchor",
]

SECTIONS = ("What", "Why", "Why it is silent", "Evidence", "Example", "Fix", "References")
"""The parts every check's docstring has, each a ``Title:`` line followed by its text."""

PRINCIPLE = (
    "No error without evidence. An error says the setup will train wrong and names what was observed: a "
    "gradient that reached a frozen parameter, a head of the wrong width, statistics that differ by a material "
    "amount, the user's own code raising. Where the audit had to guess, or its own replay failed, the check "
    "skips with the reason or warns. Declared intent (`frozen=`, `strategy=`) that contradicts an observation "
    "is evidence; a flag alone is not (a parameter under `no_grad` that no optimizer holds is frozen in effect). "
    "Each check's **Evidence** part says what makes it an error, a warning or info, and when it skips."
)
"""The principle the catalogue states above the checks (``docs/checks.md``)."""


def check_to_dict(check: Check, *, doc: bool = False) -> dict[str, Any]:
    """A check's metadata for JSON; with ``doc``, its documentation and its sections (keyed by title) too."""
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


def anchor(check_id: str) -> str:
    """The Markdown heading anchor of a check's section in ``docs/checks.md`` (GitHub's rule: the ID itself)."""
    return check_id


def format_check_markdown(check: Check, *, heading_level: int = 2) -> str:
    """One check's documentation as Markdown: a heading with the ID, the facts, then every section."""
    hashes = "#" * heading_level
    summary = check.summary[:1].upper() + check.summary[1:]
    lines = [f"{hashes} {check.id}", "", f"**{summary}.** Default severity: `{check.severity.value}`."]
    if check.needs:
        lines[-1] += f" Needs {_needs_text(check.needs)} (skipped without)."
    if check.aliases:
        lines[-1] += f" Aliases: {', '.join(f'`{a}`' for a in check.aliases)}."
    for title in SECTIONS:
        body = check.section(title)
        if body:
            lines.extend(["", f"**{title}.**", "", body])
    return "\n".join(lines)


def format_catalogue_markdown(checks: Iterable[Check]) -> str:
    """The ``docs/checks.md`` page: an index table, then every check's documentation."""
    checks = list(checks)
    lines = [
        "# The checks",
        "",
        "Generated from the check registry by `python -m tlaudit checks --format markdown > docs/checks.md`;",
        "do not edit by hand (a test keeps this page in sync). `tlaudit checks ID` prints the same in a terminal.",
        "",
        PRINCIPLE,
        "",
        "| check | severity | summary |",
        "|---|---|---|",
    ]
    lines.extend(f"| [`{c.id}`](#{anchor(c.id)}) | {c.severity.value} | {c.summary} |" for c in checks)
    for check in checks:
        lines.extend(["", format_check_markdown(check, heading_level=2)])
    return "\n".join(lines)
