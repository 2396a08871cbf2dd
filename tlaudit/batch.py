"""Auditing a folder of setup files (``tlaudit audit DIR``), and one combined report for them.

Which files: the ``*.py`` files directly in the folder (not in subfolders) whose name does not start
with ``_`` or ``test_`` and that define a top-level ``setup()`` function (read with :mod:`ast`; no
file is imported to decide), in name order. Each is audited as ``tlaudit audit FILE`` would; a file
that cannot be loaded or run is reported with its error and the others still run.

Combined formats: ``table`` and ``markdown`` give one report per file under a heading with its path;
``sarif`` one run with every file's results (their locations name the files); ``junit`` a
``<testsuites>`` with one ``<testsuite name="tlaudit: PATH">`` per file; ``json`` (keys stable)::

    {"version": 1, "tlaudit": "0.1.0", "ok": bool,
     "summary": {"setups", "audited", "failed", "errors", "warnings", "infos", "suppressed", "baselined", "stale"},
     "audits": [{"path": "setups/a.py", "error": null, "report": {...}}, ...]}

where ``report`` is :meth:`tlaudit.report.Report.to_dict` (None when ``error`` says why the file
could not be audited), ``ok`` is true when every file was audited without an error finding, and
``failed`` counts the files that could not be audited.
"""
from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tlaudit._version import __version__
from tlaudit.baseline import apply_baseline, entry_for, write_baseline
from tlaudit.errors import SetupError
from tlaudit.findings import Severity
from tlaudit.formats import Format
from tlaudit.formatters import _md_inline, format_markdown, format_table
from tlaudit.locations import display_path, source_file
from tlaudit.report import BaselineEntry, Report

__all__ = ["FileAudit", "setup_files", "audit_target", "rebaseline", "render_many", "render_results", "summary_many"]

SKIPPED_PREFIXES = ("_", "test_")


@dataclass(frozen=True)
class FileAudit:
    """One file of a folder audit: its path as shown, and its report or why it could not be audited."""

    path: str
    report: Report | None = None
    error: str | None = None


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
) -> tuple[list[FileAudit], bool]:
    """Audit ``target`` (a setup spec, or a folder of setup files) with ``audit(spec)``; ``(audits, is_folder)``.

    With ``baseline`` (from :func:`tlaudit.baseline.read_baseline`), each report is compared with the
    entries for its file (entries without a path apply to a single setup). In a folder, a file whose
    audit raises :class:`SetupError` is recorded with the error; a single setup's error propagates.

    Raises:
        SetupError: a single setup could not be audited, or the folder holds no setup file.
    """

    def compared(report: Report, entries: list[BaselineEntry]) -> Report:
        return report if baseline is None else apply_baseline(report, entries, baseline_file or "")

    if not Path(target).is_dir():
        source = source_file(target)
        shown = display_path(source) if source is not None and source.is_file() else target
        entries = [] if baseline is None else [*baseline.get(None, []), *baseline.get(shown, [])]
        return [FileAudit(shown, compared(audit(target), entries))], False
    files = setup_files(target)
    if not files:
        raise SetupError(f"no setup files in {target} (PATH): no *.py, not starting with _ or test_, defines setup()")
    audits: list[FileAudit] = []
    for path in files:
        shown = display_path(path)
        try:
            report = audit(str(path))
        except SetupError as err:
            audits.append(FileAudit(shown, error=str(err)))
            continue
        audits.append(FileAudit(shown, compared(report, (baseline or {}).get(shown, []))))
    return audits, True


def rebaseline(audits: Sequence[FileAudit], file: str, *, folder: bool) -> tuple[list[FileAudit], int]:
    """Write every audited finding to the baseline ``file``, and the audits compared with it; ``(audits, entries)``.

    Entries carry the file's path in a folder audit. Raises :class:`tlaudit.baseline.BaselineError`.
    """
    written = write_baseline(file, [(a.path if folder else None, a.report) for a in audits if a.report is not None])
    updated = []
    for a in audits:
        if a.report is None:
            updated.append(a)
            continue
        entries = [entry_for(f) for f in (*a.report.findings, *a.report.baselined)]
        fresh = replace(a.report, findings=(*a.report.findings, *a.report.baselined), baselined=(), stale=())
        updated.append(FileAudit(a.path, apply_baseline(fresh, entries, file)))
    return updated, written


def _totals(audits: Sequence[FileAudit]) -> dict[str, int]:
    reports = [a.report for a in audits if a.report is not None]
    return {
        "setups": len(audits),
        "audited": len(reports),
        "failed": len(audits) - len(reports),
        "errors": sum(len(r.errors) for r in reports),
        "warnings": sum(len(r.warnings) for r in reports),
        "infos": sum(len(r.findings) - len(r.errors) - len(r.warnings) for r in reports),
        "suppressed": sum(len(r.suppressed) for r in reports),
        "baselined": sum(len(r.baselined) for r in reports),
        "stale": sum(len(r.stale) for r in reports),
    }


def summary_many(audits: Sequence[FileAudit]) -> str:
    """One sentence for a folder audit: setups audited, findings, setups that could not be audited."""
    t = _totals(audits)
    parts = [
        f"{t['audited']} of {t['setups']} setup{'' if t['setups'] == 1 else 's'} audited",
        f"{t['errors']} error{'' if t['errors'] == 1 else 's'}",
        f"{t['warnings']} warning{'' if t['warnings'] == 1 else 's'}",
    ]
    if t["suppressed"]:
        parts.append(f"{t['suppressed']} suppressed")
    if any(a.report is not None and a.report.baseline is not None for a in audits):
        parts.append(f"{t['baselined']} in the baseline")
        if t["stale"]:
            parts.append(f"{t['stale']} stale baseline entr{'y' if t['stale'] == 1 else 'ies'}")
    if t["failed"]:
        parts.append(f"{t['failed']} could not be audited")
    return "tlaudit: " + ", ".join(parts) + "."


def _json(audits: Sequence[FileAudit]) -> str:
    data: dict[str, Any] = {
        "version": 1,
        "tlaudit": __version__,
        "ok": all(a.report is not None and a.report.ok for a in audits),
        "summary": _totals(audits),
        "audits": [
            {"path": a.path, "error": a.error, "report": a.report.to_dict() if a.report is not None else None}
            for a in audits
        ],
    }
    return json.dumps(data, indent=2)


def _junit(audits: Sequence[FileAudit], fail_on: Severity) -> str:
    suites = ET.Element("testsuites", name="tlaudit")
    for a in audits:
        if a.report is not None:
            suite = ET.fromstring(Format.JUNIT.render(a.report, fail_on=fail_on).split("\n", 1)[1])
        else:
            suite = ET.Element("testsuite", tests="1", failures="0", errors="1", skipped="0", time="0.000")
            case = ET.SubElement(suite, "testcase", classname="tlaudit", name="setup")
            ET.SubElement(case, "error", message=a.error or "", type="SetupError")
        suite.set("name", f"tlaudit: {a.path}")
        suites.append(suite)
    for key in ("tests", "failures", "errors", "skipped"):
        suites.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode")


def _sarif(audits: Sequence[FileAudit], fail_on: Severity) -> str:
    from tlaudit.sarif import sarif_log

    log = sarif_log([(a.path, a.report) for a in audits if a.report is not None], fail_on=fail_on)
    failed = [a for a in audits if a.report is None]
    if failed:
        invocation = log["runs"][0]["invocations"][0]
        invocation["executionSuccessful"] = False
        invocation["toolExecutionNotifications"] = [
            {
                "level": "error",
                "message": {"text": a.error or "the setup could not be audited"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": a.path, "uriBaseId": "%SRCROOT%"}}}],
            }
            for a in failed
        ]
    return json.dumps(log, indent=2)


def render_many(
    audits: Sequence[FileAudit], fmt: Format, *, fail_on: Severity = Severity.ERROR, show_suppressed: bool = False
) -> str:
    """The combined report of a folder audit in ``fmt`` (see the module docstring)."""
    if fmt is Format.JSON:
        return _json(audits)
    if fmt is Format.JUNIT:
        return _junit(audits, fail_on)
    if fmt is Format.SARIF:
        return _sarif(audits, fail_on)
    blocks: list[str] = []
    for a in audits:
        if fmt is Format.MARKDOWN:
            if a.report is None:
                blocks.append(f"## `{a.path}`: could not be audited\n\n{_md_inline(a.error or '')}")
            else:
                body = format_markdown(a.report, fail_on=fail_on, show_suppressed=show_suppressed).split("\n", 1)[1]
                blocks.append(f"## `{a.path}`: {a.report.summary()}\n{body}")
        else:
            text = a.error if a.report is None else format_table(a.report, show_suppressed=show_suppressed)
            blocks.append(f"== {a.path} ==\n{text}")
    if fmt is Format.MARKDOWN:
        blocks.insert(0, f"# {summary_many(audits)}")
    return "\n\n".join(blocks)


def render_results(
    audits: Sequence[FileAudit], fmt: Format, *, folder: bool, fail_on: Severity, show_suppressed: bool = False
) -> tuple[str, list[str]]:
    """What ``tlaudit audit`` prints: the report (stdout) and the summary lines (stderr).

    A single setup gives its report in ``fmt`` (SARIF naming the setup file) and its summary sentence;
    a folder the combined report, a line per file (its summary, or its error) and the total.
    """
    if not folder:
        report = audits[0].report
        if report is None:  # audit_target raises for a single setup instead; kept for direct callers
            raise SetupError(audits[0].error or f"{audits[0].path}: not audited")
        if fmt is Format.SARIF:
            return render_many(audits, fmt, fail_on=fail_on), [report.summary()]
        return fmt.render(report, fail_on=fail_on, show_suppressed=show_suppressed), [report.summary()]
    lines = [f"{a.path}: {a.report.summary()}" if a.report else f"tlaudit audit: error: {a.error}" for a in audits]
    return render_many(audits, fmt, fail_on=fail_on, show_suppressed=show_suppressed), [*lines, summary_many(audits)]
