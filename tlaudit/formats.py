"""The report formats by name: the :class:`Format` string enum that ``--format`` and the integrations choose by.

Each format is one function ``(report, *, fail_on, show_suppressed) -> str``: table, JSON, Markdown
and JUnit in :mod:`tlaudit.formatters`, SARIF in :mod:`tlaudit.sarif` (which reads the check
catalogue, so it sits above the checks). A new format: its function, a line in ``_FORMATTERS`` and
a member of :class:`Format`.
"""
from __future__ import annotations

import enum

from tlaudit.findings import Severity
from tlaudit.formatters import Formatter, Report, format_json, format_junit, format_markdown, format_table

__all__ = ["Format"]


def _format_sarif(report: Report, *, fail_on: Severity = Severity.ERROR, show_suppressed: bool = False) -> str:
    from tlaudit.sarif import format_sarif  # reads the check catalogue: imported only for this format

    return format_sarif(report, fail_on=fail_on)


_FORMATTERS: dict[str, Formatter] = {
    "table": format_table,
    "json": format_json,
    "markdown": format_markdown,
    "junit": format_junit,
    "sarif": _format_sarif,
}


class Format(str, enum.Enum):
    """The report formats of ``tlaudit audit --format``."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    JUNIT = "junit"
    SARIF = "sarif"

    @property
    def formatter(self) -> Formatter:
        return _FORMATTERS[self.value]

    def render(self, report: Report, *, fail_on: Severity | str = Severity.ERROR, show_suppressed: bool = False) -> str:
        """``report`` in this format."""
        return self.formatter(report, fail_on=Severity.parse(fail_on, "fail_on"), show_suppressed=show_suppressed)
