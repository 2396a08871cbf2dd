"""The ``markdown`` format (tlaudit/reports/markdown.py); the CLI's golden output is in tests/test_cli.py."""

from __future__ import annotations

from tlaudit.auditing.report import Finding, Report, Severity
from tlaudit.reports import Format


def format_markdown(report: Report) -> str:
    return Format.MARKDOWN.render(report)


def test_markdown_with_no_findings_skips_and_notes():
    report = Report(
        findings=(),
        checks_run=("head-size",),
        skipped=(("eval-mode", "no `predict` given"),),
        notes=("the sample was synthesized",),
        model="TinyCNN",
    )
    assert format_markdown(report) == (
        "## tlaudit: TinyCNN: 1 check run, 0 errors, 0 warnings, 1 skipped.\n\nNo findings.\n\n"
        "### Skipped checks\n\n- `eval-mode`: no `predict` given\n\n### Notes\n\n- the sample was synthesized"
    )


def test_markdown_escapes_pipes_newlines_and_html():
    finding = Finding("head-size", Severity.ERROR, "output `a|b`\nhas 10 > 5 columns", "a|b", "freeze(model, '<module>') or `x<y>`")
    lines = format_markdown(Report(findings=(finding,), checks_run=("head-size",))).splitlines()
    assert lines[4] == r"| error | `head-size` | `a\|b` | output `a\|b` has 10 &gt; 5 columns |"
    assert lines[-1] == "- `head-size`: freeze(model, '&lt;module&gt;') or `x<y>`"
