"""The ``table`` format: the readable report (:meth:`tlaudit.Report.to_text` without the summary
sentence, which the CLI prints to stderr); a folder audit gives one report per file under
``== PATH ==``, or the file's error."""

from __future__ import annotations

from collections.abc import Sequence

from tlaudit.reports._interface import RenderOptions, SetupAudit

__all__ = ["render"]


def render(audits: Sequence[SetupAudit], options: RenderOptions) -> str:
    blocks = []
    for a in audits:
        text = a.error or "" if a.report is None else a.report.to_text(summary=False, show_suppressed=options.show_suppressed)
        blocks.append(f"== {a.path} ==\n{text}" if options.folder else text)
    return "\n\n".join(blocks)
