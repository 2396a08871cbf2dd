"""A folder of setup files (``tlaudit audit DIR``): which files, each audited, compared with a baseline.

Which files: the ``*.py`` files directly in the folder (not in subfolders) whose name does not start
with ``_`` or ``test_`` and that define a top-level ``setup()`` function (read with :mod:`ast`; no
file is imported to decide), in name order. Each is audited as ``tlaudit audit FILE`` would; a file
that cannot be loaded or run is reported with its error and the others still run. Every report
format renders the resulting list of :class:`~tlaudit.reports.SetupAudit` (see :mod:`tlaudit.reports`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from tlaudit.auditing.baseline import apply_baseline, entry_for, write_baseline
from tlaudit.auditing.locations import display_path, source_file
from tlaudit.auditing.report import BaselineEntry, Report
from tlaudit.errors import SetupError
from tlaudit.reports import SetupAudit
from tlaudit.reports._interface import summary

__all__ = ["setup_files", "audit_target", "rebaseline", "summary_lines"]

SKIPPED_PREFIXES = ("_", "test_")


def _defines_setup(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return True  # let the audit report why it cannot be read, rather than skipping it silently
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "setup" for node in tree.body)


def setup_files(folder: Path | str) -> list[Path]:
    """The setup files of ``folder``: ``*.py`` not starting with ``_`` or ``test_`` that define ``setup()``, sorted."""
    return [
        path
        for path in sorted(Path(folder).glob("*.py"))
        if path.is_file() and not path.name.startswith(SKIPPED_PREFIXES) and _defines_setup(path)
    ]


def audit_target(
    target: str,
    audit: Callable[[str], Report],
    baseline: dict[str | None, list[BaselineEntry]] | None = None,
    baseline_file: str | None = None,
) -> tuple[list[SetupAudit], bool]:
    """Audit ``target`` (a setup spec, or a folder of setup files) with ``audit(spec)``; ``(audits, is_folder)``.

    With ``baseline`` (from :func:`tlaudit.auditing.baseline.read_baseline`), each report is compared
    with the entries for its file (entries without a path apply to a single setup). In a folder, a
    file whose audit raises :class:`SetupError` is recorded with the error; a single setup's error propagates.

    Raises:
        SetupError: a single setup could not be audited, or the folder holds no setup file.
    """

    def compared(report: Report, entries: list[BaselineEntry]) -> Report:
        return report if baseline is None else apply_baseline(report, entries, baseline_file or "")

    if not Path(target).is_dir():
        source = source_file(target)
        shown = display_path(source) if source is not None and source.is_file() else target
        entries = [] if baseline is None else [*baseline.get(None, []), *baseline.get(shown, [])]
        return [SetupAudit(shown, compared(audit(target), entries))], False
    files = setup_files(target)
    if not files:
        raise SetupError(f"no setup files in {target} (PATH): no *.py, not starting with _ or test_, defines setup()")
    audits: list[SetupAudit] = []
    for path in files:
        shown = display_path(path)
        try:
            report = audit(str(path))
        except SetupError as err:
            audits.append(SetupAudit(shown, error=str(err)))
            continue
        audits.append(SetupAudit(shown, compared(report, (baseline or {}).get(shown, []))))
    return audits, True


def rebaseline(audits: Sequence[SetupAudit], file: str, *, folder: bool) -> tuple[list[SetupAudit], int]:
    """Write every audited finding to the baseline ``file``, and the audits compared with it; ``(audits, entries)``.

    Entries carry the file's path in a folder audit. Raises :class:`tlaudit.auditing.baseline.BaselineError`.
    """
    written = write_baseline(file, [(a.path if folder else None, a.report) for a in audits if a.report is not None])
    updated = []
    for a in audits:
        if a.report is None:
            updated.append(a)
            continue
        entries = [entry_for(f) for f in (*a.report.findings, *a.report.baselined)]
        fresh = replace(a.report, findings=(*a.report.findings, *a.report.baselined), baselined=(), stale=())
        updated.append(SetupAudit(a.path, apply_baseline(fresh, entries, file)))
    return updated, written


def summary_lines(audits: Sequence[SetupAudit], *, folder: bool) -> list[str]:
    """What ``tlaudit audit`` prints to stderr: a setup's summary sentence; for a folder a line per
    file (its summary, or its error) and the total."""
    if not folder:
        return [a.report.summary() if a.report is not None else f"tlaudit audit: error: {a.error}" for a in audits]
    lines = [f"{a.path}: {a.report.summary()}" if a.report else f"tlaudit audit: error: {a.error}" for a in audits]
    return [*lines, summary(audits)]
