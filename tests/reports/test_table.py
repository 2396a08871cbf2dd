"""The ``table`` format (tlaudit/reports/table.py): a report's readable text, and one block per file of a folder."""

from __future__ import annotations

from tlaudit.auditing.report import Finding, Report, Severity
from tlaudit.reports import Format, SetupAudit

REPORT = Report(
    findings=(Finding("head-size", Severity.ERROR, "`fc` has 1000 outputs", "fc", "replace the head"),),
    checks_run=("head-size",),
    model="ResNet",
)


def test_one_setup_is_the_report_text_without_the_summary_sentence():
    text = Format.TABLE.render(REPORT)
    assert text == REPORT.to_text(summary=False)
    assert text.splitlines()[0].split() == ["severity", "check", "subject", "message"]
    assert "how to fix:\n  head-size: replace the head" in text
    assert "tlaudit: ResNet" not in text


def test_a_folder_gives_a_block_per_file_and_the_error_of_a_file_that_could_not_be_audited():
    audits = [SetupAudit("a.py", REPORT), SetupAudit("b.py", error="b.py:setup(): TransferSetup.model: expected a torch.nn.Module")]
    text = Format.TABLE.render(audits, folder=True)
    first, second = text.split("\n\n== ")
    assert first.startswith("== a.py ==\nseverity")
    assert second == "b.py ==\nb.py:setup(): TransferSetup.model: expected a torch.nn.Module"
