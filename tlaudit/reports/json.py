"""The ``json`` format: :meth:`tlaudit.Report.to_dict` with ``indent=2`` for one setup (its keys are
documented in :mod:`tlaudit.auditing.report`); for a folder audit (keys stable)::

    {"version": 1, "tlaudit": "0.1.0", "ok": bool,
     "summary": {"setups", "audited", "failed", "errors", "warnings", "infos", "suppressed", "baselined", "stale"},
     "audits": [{"path": "setups/a.py", "error": null, "report": {...}}, ...]}

where ``report`` is ``Report.to_dict()`` (None when ``error`` says why the file could not be
audited), ``ok`` is true when every file was audited without an error finding, and ``failed``
counts the files that could not be audited.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tlaudit._version import __version__
from tlaudit.reports._interface import RenderOptions, SetupAudit, totals

__all__ = ["render"]


def render(audits: Sequence[SetupAudit], options: RenderOptions) -> str:
    if not options.folder and len(audits) == 1 and audits[0].report is not None:
        return json.dumps(audits[0].report.to_dict(), indent=2)
    data: dict[str, Any] = {
        "version": 1,
        "tlaudit": __version__,
        "ok": all(a.report is not None and a.report.ok for a in audits),
        "summary": totals(audits),
        "audits": [{"path": a.path, "error": a.error, "report": a.report.to_dict() if a.report is not None else None} for a in audits],
    }
    return json.dumps(data, indent=2)
