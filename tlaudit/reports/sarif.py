"""SARIF 2.1.0 for code scanning (GitHub's ``upload-sarif``, Azure DevOps, IDE viewers).

One ``run`` whose ``tool.driver.rules`` has one rule per registered check, in registry order:
``id`` (the check ID), ``name``, ``shortDescription`` (the summary), ``fullDescription`` (what it
checks), ``help`` (text and Markdown: why it matters, why it is silent, the fix, references),
``defaultConfiguration.level``.

One ``result`` per finding: ``ruleId``/``ruleIndex``, ``level`` (``error``, ``warning``, or ``note``
for info), ``message.text`` (the finding's message, exactly), a location when the finding has one
(``physicalLocation`` with the file, relative to the source root as ``uriBaseId`` ``%SRCROOT%``, and
the line; see :mod:`tlaudit.auditing.locations`) plus a ``logicalLocation`` naming the subject,
``partialFingerprints["tlaudit/v1"]`` (the baseline fingerprint), and ``properties``
(``subject``, ``hint``, ``anchor``, ``setup``: the setup file the report came from).
Suppressed findings are results with ``suppressions: [{"kind": "inSource", "justification": reason}]``;
with a baseline, results have ``baselineState`` ``"new"`` or ``"unchanged"`` (accepted by the baseline),
and the stale entries are listed in the run's ``properties.reports[].staleBaselineEntries``.

A folder audit is one run too: every file's results (their locations name the files), and each file
that could not be audited a ``toolExecutionNotifications`` entry of level ``error`` (the invocation's
``executionSuccessful`` then false).

This module reads the check catalogue (rule metadata), so it imports the check registry; the
``Format`` enum imports a format's module only when it is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from tlaudit._version import __version__
from tlaudit.auditing.catalogue import format_check_markdown
from tlaudit.auditing.checks import REGISTRY, Check
from tlaudit.auditing.findings import Finding, Location, Severity
from tlaudit.auditing.report import Report
from tlaudit.reports._interface import RenderOptions, SetupAudit

__all__ = ["SARIF_SCHEMA", "SARIF_VERSION", "FINGERPRINT_KEY", "sarif_log", "render", "LEVELS"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "tlaudit/v1"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
"""SARIF ``level`` of each severity."""


def _rule(check: Check) -> dict[str, Any]:
    why = check.section("Why")
    silent = check.section("Why it is silent")
    fix = check.section("Fix")
    text = "\n\n".join(
        f"{title}: {' '.join(body.split())}" for title, body in (("Why", why), ("Why it is silent", silent), ("Fix", fix)) if body
    )
    return {
        "id": check.id,
        "name": "".join(part.capitalize() for part in check.id.split("-")),
        "shortDescription": {"text": check.summary},
        "fullDescription": {"text": " ".join(check.section("What").split()) or check.summary},
        "help": {"text": text or check.summary, "markdown": format_check_markdown(check, heading_level=2)},
        "defaultConfiguration": {"level": LEVELS[check.severity]},
        "properties": {"tags": ["transfer-learning", "pytorch"], "needs": list(check.needs)},
    }


def _location(location: Location, subject: str) -> dict[str, Any]:
    path = PurePosixPath(location.path)
    artifact: dict[str, Any] = {"uri": path.as_uri()} if path.is_absolute() else {"uri": location.path, "uriBaseId": "%SRCROOT%"}
    found: dict[str, Any] = {
        "physicalLocation": {"artifactLocation": artifact, "region": {"startLine": location.line}},
    }
    if subject:
        found["logicalLocations"] = [{"name": subject, "kind": "module"}]
    return found


def _result(
    finding: Finding, index: dict[str, int], setup: str | None, *, reason: str | None = None, state: str | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.check,
        "level": LEVELS[finding.severity],
        "message": {"text": finding.message},
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "properties": {"subject": finding.subject, "hint": finding.hint},
    }
    if finding.check in index:
        result["ruleIndex"] = index[finding.check]
    if finding.location is not None:
        result["locations"] = [_location(finding.location, finding.subject)]
        result["properties"]["anchor"] = finding.location.anchor
    if setup is not None:
        result["properties"]["setup"] = setup
    if reason is not None:
        result["suppressions"] = [{"kind": "inSource", "justification": reason}]
    if state is not None:
        result["baselineState"] = state
    return result


def sarif_log(reports: Sequence[tuple[str | None, Report]], *, fail_on: Severity | str = Severity.ERROR) -> dict[str, Any]:
    """The SARIF log (as data) of ``(setup path, report)`` pairs: one run, every report's results."""
    level = Severity.parse(fail_on, "fail_on")
    rules = [_rule(check) for check in REGISTRY.values()]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results: list[dict[str, Any]] = []
    about: list[dict[str, Any]] = []
    for path, report in reports:
        compared = report.baseline is not None
        results.extend(_result(f, index, path, state="new" if compared else None) for f in report.findings)
        results.extend(_result(f, index, path, state="unchanged") for f in report.baselined)
        results.extend(_result(s.finding, index, path, reason=s.reason) for s in report.suppressed)
        summary = report.to_dict()
        about.append(
            {
                "setup": path,
                "model": report.model,
                "summary": report.summary(),
                "checksRun": summary["checks_run"],
                "skipped": summary["skipped"],
                "notes": summary["notes"],
                "baseline": report.baseline,
                "staleBaselineEntries": [e.to_dict() for e in report.stale],
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tlaudit",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "invocations": [{"executionSuccessful": True, "properties": {"failOn": level.value}}],
                "columnKind": "unicodeCodePoints",
                "results": results,
                "properties": {"reports": about},
            }
        ],
    }


def render(audits: Sequence[SetupAudit], options: RenderOptions) -> str:
    """The audits as one SARIF 2.1.0 log (JSON text)."""
    log = sarif_log([(a.path, a.report) for a in audits if a.report is not None], fail_on=options.fail_on)
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
