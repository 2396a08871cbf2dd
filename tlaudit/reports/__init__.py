"""The report formats: one module per format behind one interface, chosen by the :class:`Format` string enum.

Each format is a module of this package, named as its :class:`Format` value, with a ``render(audits,
options) -> str`` function (the :class:`~tlaudit.reports._interface.Renderer` interface): ``table``,
``json``, ``markdown``, ``junit``, ``sarif``. Every format renders a list of
:class:`~tlaudit.reports._interface.SetupAudit` (a single setup is a list of one; a folder audit sets
``RenderOptions.folder``). A new format is a module here, a member of :class:`Format` (the registry)
and its test module in ``tests/reports/``. A format's module is imported on first use, so ``sarif``
(which reads the check catalogue) costs nothing until chosen.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Sequence

from tlaudit.auditing.findings import Severity
from tlaudit.auditing.report import Report
from tlaudit.reports._interface import Renderer, RenderOptions, SetupAudit

__all__ = ["Format", "RenderOptions", "Renderer", "SetupAudit"]


class Format(str, enum.Enum):
    """The report formats (``--format``): each member's value names its module in :mod:`tlaudit.reports`."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    JUNIT = "junit"
    SARIF = "sarif"

    @property
    def renderer(self) -> Renderer:
        """The format's ``render`` function."""
        render: Renderer = importlib.import_module(f"{__name__}.{self.value}").render
        return render

    def render(
        self,
        audits: Report | Sequence[SetupAudit],
        *,
        fail_on: Severity | str = Severity.ERROR,
        show_suppressed: bool = False,
        folder: bool = False,
    ) -> str:
        """``audits`` (or one report) in this format."""
        items = [SetupAudit(None, audits)] if isinstance(audits, Report) else list(audits)
        options = RenderOptions(Severity.parse(fail_on, "fail_on"), show_suppressed, folder)
        return self.renderer(items, options)
