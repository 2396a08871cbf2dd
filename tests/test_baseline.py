"""Baselines (tlaudit/auditing/baseline.py): fingerprints that survive reordering and counts, matching, stale
entries, and the baseline file."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
import torchvision

import tlaudit
from tlaudit.auditing.baseline import BaselineError, apply_baseline, baseline_dict, entry_for, read_baseline, write_baseline
from tlaudit.auditing.findings import Finding, Severity, fingerprint
from tlaudit.auditing.report import Report

IDLE = (
    "frozen and held by the optimizer, idle: no .grad and no optimizer state, so torch's optimizers skip them "
    "(weight decay included) and they cost nothing now; they would move only if a stale gradient appeared"
)
"""optimizer-frozen's info message for frozen parameters an optimizer holds but never moves."""


def frozen_in_optimizer(*, reorder: bool = False, unfrozen: tuple[str, ...] = ()) -> Report:
    """A real ResNet-18 with a frozen backbone (but ``unfrozen``) whose optimizer holds every parameter.

    ``reorder`` registers the children in reverse order, so ``named_parameters()`` lists ``fc``,
    ``layer4``, ..., ``conv1``: the same model, its parameters in another order.
    """
    torch.manual_seed(0)
    model = tlaudit.replace_head(torchvision.models.resnet18(), 3)
    if reorder:
        model._modules = OrderedDict(reversed(list(model._modules.items())))
    tlaudit.freeze_backbone(model)
    for name in unfrozen:
        tlaudit.unfreeze(model, name)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    setup = tlaudit.TransferSetup(model=model, num_classes=3, sample=torch.randn(2, 3, 32, 32), optimizer=optimizer)
    return tlaudit.audit(setup, ["optimizer-frozen"])


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    return {
        "original": frozen_in_optimizer(),
        "reordered": frozen_in_optimizer(reorder=True),
        "fewer": frozen_in_optimizer(unfrozen=("layer3", "layer4")),
    }


def test_fingerprint_survives_reordered_parameters_and_changed_counts(reports):
    [original], [reordered], [fewer] = (reports[k].findings for k in ("original", "reordered", "fewer"))
    # the messages differ: other names shown first, other counts
    idle = f": {IDLE}"
    assert original.message == "60 parameters in 6 modules (`conv1`, `bn1`, `layer1` and 3 more)" + idle
    assert reordered.message == "60 parameters in 6 modules (`layer4`, `layer3`, `layer2` and 3 more)" + idle
    assert fewer.message == "30 parameters in 4 modules (`conv1`, `bn1`, `layer1` and 1 more)" + idle
    assert original.fingerprint == reordered.fingerprint == fewer.fingerprint
    baseline = [entry_for(original)]
    for key in ("reordered", "fewer"):
        compared = apply_baseline(reports[key], baseline, "b.json")
        assert (compared.findings, compared.stale, compared.ok) == ((), (), True)
        assert compared.baselined == reports[key].findings


def test_fingerprint_changes_with_check_subject_or_wording():
    base = fingerprint("optimizer-missing", "fc", "2 parameters of `fc`: trainable but in no optimizer group")
    assert base == fingerprint("optimizer-missing", "fc", "3 parameters of `fc`: trainable but in no optimizer group")
    assert base != fingerprint("optimizer-missing", "head", "2 parameters of `fc`: trainable but in no optimizer group")
    assert base != fingerprint("optimizer-frozen", "fc", "2 parameters of `fc`: trainable but in no optimizer group")
    assert base != fingerprint("optimizer-missing", "fc", "2 parameters of `fc`: frozen but held by the optimizer")
    assert len(base) == 16 and int(base, 16) >= 0


def finding(check: str, subject: str, message: str, severity: Severity = Severity.ERROR) -> Finding:
    return Finding(check, severity, message, subject)


def test_new_findings_fail_known_ones_do_not_and_stale_entries_are_reported():
    known = finding("lr-threshold", "param_groups[0]", "group 0 holds 60 pretrained parameters with lr 0.1 > lr_max 0.05")
    fixed = finding("head-size", "fc", "`fc` has 1000 outputs, expected 5")
    new = finding("optimizer-missing", "fc", "2 parameters of `fc`: trainable but in no optimizer group")
    report = Report(findings=(known, new), checks_run=("lr-threshold", "head-size", "optimizer-missing"))
    compared = apply_baseline(report, [entry_for(known), entry_for(fixed)], "tlaudit-baseline.json")
    assert compared.findings == (new,) and compared.baselined == (known,)
    assert [e.check for e in compared.stale] == ["head-size"]
    assert not compared.ok and compared.baseline == "tlaudit-baseline.json"
    assert compared.summary() == "tlaudit: 3 checks run, 1 error, 0 warnings, 0 skipped, 1 in the baseline, 1 stale baseline entry."
    data = compared.to_dict()
    assert data["baseline"]["path"] == "tlaudit-baseline.json"
    assert [f["check"] for f in data["baseline"]["known"]] == ["lr-threshold"]
    assert data["baseline"]["stale"] == [entry_for(fixed).to_dict()]
    assert (data["summary"]["baselined"], data["summary"]["stale"]) == (1, 1)


def test_each_entry_accepts_one_finding():
    twice = finding("frozen-grad", "layer1", "12 parameters of `layer1`: meant frozen but requires a gradient")
    report = Report(findings=(twice, twice), checks_run=("frozen-grad",))
    one = apply_baseline(report, [entry_for(twice)], "b.json")
    assert (len(one.findings), len(one.baselined), one.stale) == (1, 1, ())
    three = apply_baseline(report, [entry_for(twice)] * 3, "b.json")
    assert (three.findings, len(three.baselined), len(three.stale)) == ((), 2, 1)


def test_the_file_round_trips(tmp_path, reports):
    path = tmp_path / "baseline.json"
    assert write_baseline(path, [(None, reports["original"])]) == 1
    data = json.loads(path.read_text())
    assert list(data) == ["version", "tlaudit", "findings"] and data["version"] == 1
    assert list(data["findings"][0]) == ["check", "subject", "fingerprint", "severity", "message"]
    assert read_baseline(path) == {None: [entry_for(reports["original"].findings[0])]}
    folder = baseline_dict([("setups/a.py", reports["original"])])
    assert folder["findings"][0]["path"] == "setups/a.py"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"baseline file not found: .*missing\.json \(--baseline\); create it with --write-baseline"),
        ("{not json", r"cannot read the baseline: .*bad\.json \(--baseline\): Expecting property name"),
        ('{"version": 2, "findings": []}', r"not a tlaudit baseline \(version 1 with a findings list\): .*bad\.json"),
        (
            '{"version": 1, "findings": [{"check": "head-size"}]}',
            r"baseline entry 0 needs string check, subject and fingerprint: \{'check': 'head-size'\}",
        ),
    ],
)
def test_unreadable_baselines_name_the_file(tmp_path, content, message):
    path = tmp_path / ("missing.json" if content is None else "bad.json")
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message):
        read_baseline(path)
