"""Many parameters or layers with one problem make one finding: grouping by module, and the wording."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tlaudit._text import count, examples
from tlaudit.auditing.checks._registry import Check
from tlaudit.auditing.report import Finding, Severity

__all__ = ["group", "what", "grouped_findings"]

_MAX_GROUPS = 3


def _common_prefix(names: Sequence[str]) -> str:
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def group(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Names grouped by top-level module, each group's subject their common prefix.

    More than three groups make a single group whose subject is the common prefix of all
    (empty: the whole model), so one problem across a backbone is one finding.
    """
    buckets: dict[str, list[str]] = {}
    for name in names:
        buckets.setdefault(name.split(".")[0], []).append(name)
    if len(buckets) > _MAX_GROUPS:
        return [(_common_prefix(names), list(names))]
    return [(_common_prefix(bucket), bucket) for bucket in buckets.values()]


def what(subject: str, members: Sequence[str], noun: str) -> str:
    """```layer1.0.conv1.weight``` / ``12 parameters of `layer1``` / ``60 parameters in 6 modules (...)``."""
    if len(members) == 1:
        return f"`{members[0]}`"
    if subject:
        return f"{count(len(members), noun)} of `{subject}`"
    tops = list(dict.fromkeys(m.split(".")[0] for m in members))
    return f"{count(len(members), noun)} in {len(tops)} modules ({examples(tops)})"


def grouped_findings(
    check: Check,
    names: Sequence[str],
    problem: str,
    hint: str,
    *,
    noun: str = "parameter",
    severity: Severity | None = None,
) -> Iterator[Finding]:
    """One finding per group of ``names``: ``<what>: <problem> (<examples>)``."""
    for subject, members in group(names):
        message = f"{what(subject, members, noun)}: {problem}"
        if len(members) > 1 and subject:
            message += f" ({examples(members)})"
        yield check.finding(message, subject=subject, hint=hint, severity=severity)
