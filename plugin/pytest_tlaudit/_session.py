"""The session's audits: every report recorded by test, the JSON report file, the pytest-xdist merge, the summary."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tlaudit._options import Settings
from tlaudit._text import count

if TYPE_CHECKING:
    from tlaudit.auditing.report import Report

__all__ = ["State", "STATE", "state", "write_report", "merge_worker", "summarize"]


class State:
    """Everything the plugin keeps for one session, in ``config.stash``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tests: dict[str, list[dict[str, Any]]] = {}
        self.setups: dict[str, dict[str, Any]] = {}
        self.written: Path | None = None

    @property
    def has_audits(self) -> bool:
        return bool(self.tests or self.setups)

    def record_test(self, nodeid: str, report: Report) -> None:
        self.tests.setdefault(nodeid, []).append(report.to_dict())

    def record_setup(self, nodeid: str, report: Report) -> None:
        self.setups[nodeid] = report.to_dict()

    def payload(self) -> dict[str, Any]:
        return {"tests": self.tests, "setups": self.setups}

    def merge(self, payload: Mapping[str, Any]) -> None:
        for nodeid, reports in payload.get("tests", {}).items():
            self.tests.setdefault(nodeid, []).extend(reports)
        # a setup whose items ran on two workers was audited on both, with the same result: keep one
        self.setups.update(payload.get("setups", {}))

    def merged(self) -> dict[str, Any]:
        """Node ID -> report dict (a list where a test audited more than once), sorted by node ID."""
        out: dict[str, Any] = {nodeid: r[0] if len(r) == 1 else r for nodeid, r in self.tests.items()}
        out.update(self.setups)
        return dict(sorted(out.items()))


STATE = pytest.StashKey[State]()


def state(config: pytest.Config) -> State:
    return config.stash[STATE]


def write_report(session: pytest.Session) -> None:
    """On a worker, hand the audits to the controller; elsewhere write ``--tlaudit-report`` if asked."""
    config = session.config
    if STATE not in config.stash:
        return
    current = state(config)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the audits to the controller
        if current.has_audits:
            workeroutput["tlaudit"] = json.dumps(current.payload())
        return
    path = current.settings.report
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current.merged(), indent=2) + "\n", encoding="utf-8")
    current.written = path


def merge_worker(node: Any) -> None:
    """pytest-xdist, on the controller: merge a finished worker's audits."""
    payload = (getattr(node, "workeroutput", None) or {}).get("tlaudit")
    if not payload or STATE not in node.config.stash:
        return
    state(node.config).merge(json.loads(payload))


def summarize(terminalreporter: Any, config: pytest.Config) -> None:
    """The ``tlaudit`` section of the terminal summary: audited tests with their error and warning counts."""
    if STATE not in config.stash:
        return
    current = state(config)
    if not current.has_audits:
        return
    rows = []
    for nodeid, value in current.merged().items():
        reports = value if isinstance(value, list) else [value]
        errors = sum(r["summary"]["errors"] for r in reports)
        warnings = sum(r["summary"]["warnings"] for r in reports)
        audits = f" ({len(reports)} audits)" if len(reports) > 1 else ""
        rows.append((nodeid, f"{count(errors, 'error')}, {count(warnings, 'warning')}{audits}"))
    terminalreporter.write_sep("=", "tlaudit")
    width = max(len(nodeid) for nodeid, _ in rows)
    for nodeid, counts in rows:
        terminalreporter.write_line(f"{nodeid.ljust(width)}  {counts}")
    if current.written is not None:
        terminalreporter.write_line(f"tlaudit report written to {current.written}")
