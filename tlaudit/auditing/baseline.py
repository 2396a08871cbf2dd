"""Baselines: accept the findings a project already knows about, fail only on new ones.

``tlaudit audit --write-baseline FILE`` writes the active findings; ``tlaudit audit --baseline FILE``
then moves every finding the file accepts to ``Report.baselined`` (shown, never failing) and reports
the entries no finding matches anymore as ``Report.stale``, so the file can be tidied.

A finding matches an entry on its check ID, its subject and its message fingerprint
(:func:`tlaudit.auditing.findings.fingerprint`: numbers and lists of backticked names do not count, so a
finding survives changed parameter counts and a reordering of parameters). Each entry accepts one
finding: two findings with the same identity need two entries.

The file is JSON (keys stable)::

    {"version": 1, "tlaudit": "0.1.0",
     "findings": [{"check", "subject", "fingerprint", "severity", "message"}, ...]}

``severity`` and ``message`` are for people reading the file; only ``check``, ``subject`` and
``fingerprint`` are matched. A folder audit writes one file for all its setups: entries then carry a
``"path"`` too (the setup file), and match only findings of that file.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tlaudit._version import __version__
from tlaudit.auditing.findings import Finding
from tlaudit.auditing.report import BaselineEntry, Report

__all__ = ["BASELINE_VERSION", "BaselineError", "entry_for", "baseline_dict", "write_baseline", "read_baseline", "apply_baseline"]

BASELINE_VERSION = 1


class BaselineError(ValueError):
    """A baseline file that cannot be read or written; the message names the file."""


def entry_for(finding: Finding) -> BaselineEntry:
    """The baseline entry that accepts ``finding``."""
    return BaselineEntry(finding.check, finding.subject, finding.fingerprint, finding.severity.value, finding.message)


def baseline_dict(reports: Sequence[tuple[str | None, Report]]) -> dict[str, Any]:
    """The baseline file's data for ``(path, report)`` pairs (``path`` None for a single setup)."""
    findings: list[dict[str, str]] = []
    for path, report in reports:
        for finding in (*report.findings, *report.baselined):
            entry = entry_for(finding).to_dict()
            findings.append({"path": path, **entry} if path is not None else entry)
    return {"version": BASELINE_VERSION, "tlaudit": __version__, "findings": findings}


def write_baseline(file: str | Path, reports: Sequence[tuple[str | None, Report]]) -> int:
    """Write the active (and already baselined) findings of ``reports`` to ``file``; return how many."""
    data = baseline_dict(reports)
    try:
        Path(file).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise BaselineError(f"cannot write the baseline: {file} (--write-baseline): {err.strerror or err}") from err
    return len(data["findings"])


def read_baseline(file: str | Path) -> dict[str | None, list[BaselineEntry]]:
    """The entries of a baseline file, by setup path (None: entries without a path).

    Raises:
        BaselineError: the file is missing, not JSON, or not a baseline; the message names it.
    """
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline file not found: {file} (--baseline); create it with --write-baseline") from None
    except (OSError, ValueError) as err:
        raise BaselineError(f"cannot read the baseline: {file} (--baseline): {err}") from err
    if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION or not isinstance(data.get("findings"), list):
        raise BaselineError(f"not a tlaudit baseline (version {BASELINE_VERSION} with a findings list): {file} (--baseline)")
    entries: dict[str | None, list[BaselineEntry]] = {}
    for index, item in enumerate(data["findings"]):
        keys = ("check", "subject", "fingerprint")
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in keys):
            raise BaselineError(f"baseline entry {index} needs string check, subject and fingerprint: {item!r} ({file})")
        entry = BaselineEntry(
            item["check"], item["subject"], item["fingerprint"], str(item.get("severity", "")), str(item.get("message", ""))
        )
        entries.setdefault(item.get("path"), []).append(entry)
    return entries


def apply_baseline(report: Report, entries: Iterable[BaselineEntry], file: str | Path) -> Report:
    """``report`` with the findings ``entries`` accept moved to ``baselined`` and unmatched entries in ``stale``.

    >>> from tlaudit.auditing.findings import Severity
    >>> old = Finding("lr-threshold", Severity.ERROR, "group 0 holds 60 pretrained parameters with lr 0.1 > lr_max 0.05",
    ...               "param_groups[0]")
    >>> new = Finding("lr-threshold", Severity.ERROR, "group 0 holds 62 pretrained parameters with lr 0.08 > lr_max 0.05",
    ...               "param_groups[0]")
    >>> report = apply_baseline(Report(findings=(new,), checks_run=("lr-threshold",)), [entry_for(old)], "b.json")
    >>> report.findings, len(report.baselined), report.stale, report.ok
    ((), 1, (), True)
    """
    entries = list(entries)
    remaining = Counter(entry.key for entry in entries)
    active: list[Finding] = []
    known: list[Finding] = []
    for finding in report.findings:
        key = (finding.check, finding.subject, finding.fingerprint)
        if remaining[key] > 0:
            remaining[key] -= 1
            known.append(finding)
        else:
            active.append(finding)
    stale: list[BaselineEntry] = []
    for entry in entries:
        if remaining[entry.key] > 0:
            remaining[entry.key] -= 1
            stale.append(entry)
    return dataclasses.replace(report, findings=tuple(active), baselined=tuple(known), stale=tuple(stale), baseline=str(file))
