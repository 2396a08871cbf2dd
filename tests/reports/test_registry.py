"""The format registry (tlaudit/reports/__init__.py): every Format member has its module and its test module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlaudit.auditing.report import Report
from tlaudit.reports import Format


def test_format_enum_picks_the_formatter():
    report = Report(findings=(), checks_run=("head-size",))
    assert [f.value for f in Format] == ["table", "json", "markdown", "junit", "sarif"]
    assert Format("table").render(report) == report.to_text(summary=False)
    assert json.loads(Format.JSON.render(report))["checks_run"] == ["head-size"]
    with pytest.raises(ValueError):
        Format("xml")


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_every_format_has_a_renderer_and_a_test_module(fmt):
    assert callable(fmt.renderer)
    assert (Path(__file__).parent / f"test_{fmt.value}.py").is_file(), f"tests/reports/test_{fmt.value}.py is missing"
