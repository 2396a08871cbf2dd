"""Suppressions: TransferSetup.ignore (tlaudit/auditing/setup.py, tlaudit/auditing/suppressions.py, the engine) and the
``tlaudit_suppress`` pytest marker (plugin/pytest_tlaudit/_options.py)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
import torch
import torchvision
from torch import nn

import tlaudit
from tlaudit.auditing.report import Report
from tlaudit.auditing.setup import SetupError, TransferSetup
from tlaudit.reports import Format

REASON = "AdaBN: BatchNorm statistics adapt to the target domain"


@pytest.mark.parametrize(
    ("ignore", "message"),
    [
        (
            {"frozen-bn-train": ""},
            r"TransferSetup.ignore: a suppression needs a reason: 'frozen-bn-train': '' \(ignore\); "
            r'write \{"frozen-bn-train": "why this finding is expected"\}',
        ),
        ({"frozen-bn-train": "   "}, r"TransferSetup.ignore: a suppression needs a reason: 'frozen-bn-train': '   '"),
        ({"frozen-bn-train": None}, r"TransferSetup.ignore: a suppression needs a reason: 'frozen-bn-train': None"),
        (
            {"frozen-bn-trian": "typo"},
            r"TransferSetup.ignore: unknown check ID: 'frozen-bn-trian' \(ignore\); "
            r"did you mean frozen-bn-train",
        ),
        ({"no-such-check": "x"}, r"TransferSetup.ignore: unknown check ID: 'no-such-check' \(ignore\); `tlaudit checks` lists them"),
        (["frozen-bn-train"], r"TransferSetup.ignore: expected a dict of check ID to reason, got list"),
    ],
)
def test_bad_ignore_names_the_field(ignore, message):
    with pytest.raises(SetupError, match=message) as info:
        TransferSetup(model=nn.Linear(2, 2), ignore=ignore)
    assert info.value.field == "ignore"


def test_reasons_are_stripped_and_kept():
    setup = TransferSetup(model=nn.Linear(2, 2), ignore={"frozen-bn-train": f"  {REASON} "})
    assert setup.ignore == {"frozen-bn-train": REASON}
    assert setup.replace(num_classes=2).ignore == {"frozen-bn-train": REASON}


@pytest.fixture(scope="module")
def resnet_report() -> Report:
    """A real ResNet-18 feature extractor whose frozen BatchNorm layers run in training mode on a batch of
    one (an error: batch statistics of one image are garbage), audited with ``ignore={"frozen-bn-train": ...}``."""
    torch.manual_seed(0)
    model = tlaudit.replace_head(torchvision.models.resnet18(), 4)
    tlaudit.freeze_backbone(model)
    optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4))
    setup = TransferSetup(
        model=model,
        num_classes=4,
        sample=torch.randn(1, 3, 64, 64),
        optimizer=optimizer,
        strategy="feature_extraction",
        ignore={"frozen-bn-train": REASON},
    )
    return tlaudit.audit(setup, ["frozen-bn-train", "frozen-grad", "head-size"])


def test_a_suppressed_finding_is_reported_with_its_reason_and_does_not_fail(resnet_report):
    suppressed = resnet_report
    [entry] = suppressed.suppressed
    finding = entry.finding
    assert (finding.check, finding.severity.value, finding.subject, entry.reason) == ("frozen-bn-train", "error", "", REASON)
    assert finding.message.startswith("20 BatchNorm layers in 5 modules (`bn1`, `layer1`, `layer2` and 2 more): frozen but in training")
    assert suppressed.ok and suppressed.findings == () and suppressed.raise_for_errors() is suppressed
    assert suppressed.checks_run == ("frozen-grad", "frozen-bn-train", "head-size")  # the check still ran
    assert suppressed.summary().endswith(", 0 skipped, 1 suppressed.")
    data = json.loads(Format.JSON.render(suppressed))
    assert data["summary"]["suppressed"] == 1 and data["findings"] == []
    assert data["suppressed"] == [{**finding.to_dict(), "reason": REASON}]


def test_every_format_shows_the_suppressed_finding(resnet_report):
    report = resnet_report
    message = report.suppressed[0].finding.message
    table = Format.TABLE.render(report)
    assert "suppressed: 1 finding (--show-suppressed lists them with their reasons)" in table
    assert message not in table
    shown = Format.TABLE.render(report, show_suppressed=True)
    assert f"suppressed:\n  frozen-bn-train: {message} (reason: {REASON})" in shown
    markdown = Format.MARKDOWN.render(report, show_suppressed=True)
    assert f"### Suppressed\n\n- `frozen-bn-train`: {message.replace('`', '`')}" in markdown
    assert f"(reason: {REASON})" in markdown
    assert "1 finding (`--show-suppressed` lists them with their reasons)." in Format.MARKDOWN.render(report)
    case = ET.fromstring(Format.JUNIT.render(report)).find("testcase[@name='frozen-bn-train']")
    assert case.find("failure") is None
    assert case.find("system-out").text.startswith(f"suppressed ({REASON}), error: ")


PLUGIN_TESTS = """
import pytest
import torch
from torch import nn

from tlaudit import TransferSetup

REASON = "AdaBN on purpose"


def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    for p in list(model[0].parameters()) + list(model[1].parameters()):
        p.requires_grad = False
    return TransferSetup(model=model, num_classes=3, sample=torch.randn(1, 3, 8, 8), strategy="feature_extraction",
                         head="4", optimizer=torch.optim.SGD(model[4].parameters(), lr=1e-3))


@pytest.mark.tlaudit_suppress("frozen-bn-train", reason=REASON)
def test_suppressed(tlaudit):
    report = tlaudit.audit(build())
    assert [(s.finding.check, s.reason) for s in report.suppressed] == [("frozen-bn-train", REASON)]
    assert tlaudit.options.sources["suppress"].startswith("@pytest.mark.tlaudit_suppress on ")


def test_not_suppressed(tlaudit):
    tlaudit.audit(build())


@pytest.mark.tlaudit_suppress("frozen-bn-train")
def test_no_reason():
    pass


@pytest.mark.tlaudit_suppress("frozen-bn-trian", reason="typo")
def test_typo():
    pass


@pytest.mark.tlaudit_suppress("frozen-bn-train", reason=REASON)
@pytest.mark.tlaudit_setup
def suppressed_setup():
    return build()
"""


def test_the_pytest_marker_suppresses_with_a_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suppress=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", "--tlaudit-report", "audits.json", timeout=300)
    outcomes = {
        match.group(1): match.group(2)
        for match in (re.match(r"^test_suppress\.py::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", line) for line in result.outlines)
        if match
    }
    assert outcomes["test_suppressed"] == "PASSED"
    assert outcomes["test_not_suppressed"] == "FAILED"
    assert outcomes["test_no_reason"] == "ERROR"
    assert outcomes["test_typo"] == "ERROR"
    assert outcomes["suppressed_setup[frozen-bn-train]"] == "PASSED"
    text = result.stdout.str()
    assert "frozen-bn-train" in text and "1 finding at or above error" in text
    assert (
        "@pytest.mark.tlaudit_suppress: a suppression needs a reason: 'frozen-bn-train' "
        '(test_suppress.py::test_no_reason); e.g. @pytest.mark.tlaudit_suppress("frozen-bn-train", reason="AdaBN on purpose")'
    ) in text
    assert (
        "@pytest.mark.tlaudit_suppress on test_suppress.py::test_typo: unknown check ID: 'frozen-bn-trian' (suppress); "
        "did you mean frozen-bn-train"
    ) in text
    audits = json.loads((pytester.path / "audits.json").read_text())
    for nodeid in ("test_suppress.py::test_suppressed", "test_suppress.py::suppressed_setup"):
        assert [(s["check"], s["reason"]) for s in audits[nodeid]["suppressed"]] == [("frozen-bn-train", "AdaBN on purpose")]
        assert audits[nodeid]["findings"] == []
    assert [f["check"] for f in audits["test_suppress.py::test_not_suppressed"]["findings"]] == ["frozen-bn-train"]
