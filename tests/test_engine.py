"""The audit engine: check selection, skip reasons, crashing checks, setup errors, the registry's docs."""
from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

import tlaudit
from tlaudit import checks as checks_module
from tlaudit.checks import REGISTRY, Check, get_check, select_checks
from tlaudit.report import Severity


def small_setup(**fields):
    model = tlaudit.replace_head(torchvision.models.resnet18(), 3)
    fields.setdefault("sample", torch.randn(2, 3, 64, 64))
    return tlaudit.TransferSetup(model=model, num_classes=3, **fields)


# -- the registry -----------------------------------------------------------------------------


@pytest.mark.parametrize("check", list(REGISTRY.values()), ids=lambda c: c.id)
def test_every_check_is_documented_in_four_parts(check: Check):
    assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", check.id)
    assert isinstance(check.severity, Severity)
    assert check.summary and not check.summary.endswith(".")
    for part in ("What", "Why", "Example", "Fix"):
        assert len(check.section(part)) > 20, f"{check.id}: docstring section {part!r} missing or empty"


def test_registry_holds_the_sixteen_checks_in_order():
    assert list(REGISTRY) == [
        "frozen-grad", "frozen-changed", "frozen-bn-train", "head-frozen", "head-size", "trainable-no-grad",
        "optimizer-missing", "optimizer-frozen", "lr-threshold", "eval-mode", "eval-nondeterministic",
        "grad-inference", "normalization", "input-range", "label-range", "pretrained-not-loaded",
    ]


def test_select_and_ignore_accept_lists_and_comma_strings():
    assert [c.id for c in select_checks("head-size, lr-threshold")] == ["head-size", "lr-threshold"]
    chosen = select_checks(None, ["eval-mode"])
    assert "eval-mode" not in [c.id for c in chosen] and len(chosen) == len(REGISTRY) - 1


def test_unknown_check_id_names_the_closest():
    with pytest.raises(ValueError, match=r"unknown check ID: 'head-sise' \(select\); did you mean head-size"):
        select_checks(["head-sise"])
    with pytest.raises(ValueError, match=r"unknown check ID: 'zzz' \(check\); `tlaudit checks` lists them"):
        get_check("zzz")


# -- running ----------------------------------------------------------------------------------


def test_checks_without_their_inputs_are_skipped_with_the_reason():
    report = tlaudit.audit(small_setup())
    skipped = {s.check: s.reason for s in report.skipped}
    assert skipped["eval-mode"] == "no `predict` given"
    assert skipped["optimizer-missing"] == "no `optimizer` given"
    assert skipped["normalization"] == "no `weights` given"
    assert skipped["label-range"] == "no `targets` given"
    assert skipped["frozen-changed"] == "no `optimizer` or `train_step` given"
    assert skipped["pretrained-not-loaded"] == "no `weights` or `load_result` given"
    assert not set(skipped) & set(report.checks_run)
    assert set(skipped) | set(report.checks_run) == set(REGISTRY)


def test_a_synthesized_sample_is_said_in_the_notes():
    model = tlaudit.replace_head(torchvision.models.squeezenet1_1(), 4)
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=4), select=["head-size"])
    assert report.checks_run == ("head-size",) and not report.findings
    assert any("synthesized a standard-normal batch of shape (2, 3, 224, 224)" in n for n in report.notes)


def test_the_sample_takes_the_weights_crop_size():
    model = torchvision.models.inception_v3(init_weights=False, num_classes=4)
    setup = tlaudit.TransferSetup(model=model, num_classes=4, weights="Inception_V3_Weights.IMAGENET1K_V1")
    report = tlaudit.audit(setup, select=["head-size"])
    assert any("(2, 3, 299, 299)" in n for n in report.notes)


def test_a_crashing_check_becomes_a_finding_and_the_others_still_run(monkeypatch):
    def broken(check, ctx):
        raise ZeroDivisionError("boom")
        yield  # pragma: no cover

    original = REGISTRY["head-frozen"]
    monkeypatch.setitem(REGISTRY, "head-frozen", Check(original.id, original.severity, original.summary, broken))
    report = tlaudit.audit(small_setup(), select=["head-frozen", "head-size"])
    crash = report.by_check("head-frozen")
    assert len(crash) == 1 and crash[0].severity is Severity.ERROR
    assert crash[0].message == "check crashed: ZeroDivisionError: boom"
    assert report.checks_run == ("head-frozen", "head-size")


def test_progress_is_called_with_each_check_id():
    seen = []
    tlaudit.audit(small_setup(), select=["head-size", "head-frozen"], progress=seen.append)
    assert seen == ["head-frozen", "head-size"]


# -- bad input ----------------------------------------------------------------------------------


def test_audit_needs_a_transfer_setup():
    with pytest.raises(tlaudit.SetupError, match=r"audit\(\) needs a TransferSetup, got dict \(setup\)"):
        tlaudit.audit({"model": nn.Linear(2, 2)})


def test_a_model_that_cannot_take_the_sample_names_the_sample():
    setup = small_setup(sample=torch.randn(2, 5, 64, 64))
    before = [p.detach().clone() for p in setup.model.parameters()]
    with pytest.raises(tlaudit.SetupError, match=r"TransferSetup.sample: the model cannot take the sample of shape \(2, 5, 64, 64\)") as info:
        tlaudit.audit(setup)
    assert info.value.field == "sample"
    assert all(torch.equal(a, b) for a, b in zip(before, setup.model.parameters()))


def test_a_raising_train_step_names_the_field():
    def train_step(model, sample, targets, optimizer):
        raise RuntimeError("CUDA out of memory (pretend)")

    with pytest.raises(tlaudit.SetupError, match=r"TransferSetup.train_step raised RuntimeError: CUDA out of memory") as info:
        tlaudit.audit(small_setup(train_step=train_step))
    assert info.value.field == "train_step"


def test_bad_weights_and_frozen_patterns_name_their_field():
    with pytest.raises(tlaudit.SetupError, match=r"TransferSetup.weights: unknown weights name: 'ResNet18_Weights.NOPE'"):
        tlaudit.audit(small_setup(weights="ResNet18_Weights.NOPE"), select=["normalization"])
    with pytest.raises(tlaudit.SetupError, match=r"pattern matches no module: 'layr1' \(TransferSetup.frozen\); closest: layer1"):
        tlaudit.audit(small_setup(frozen=["layr1"]), select=["frozen-grad"])
    with pytest.raises(tlaudit.SetupError, match=r"no module named 'fcc' \(TransferSetup.head\); closest: fc"):
        tlaudit.audit(small_setup(head="fcc"), select=["head-frozen"])


def test_no_head_found_skips_the_head_checks_with_a_hint():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, sample=torch.randn(2, 3, 8, 8)), select=["head-frozen"])
    assert {s.check: s.reason for s in report.skipped}["head-frozen"].startswith("no classification head found; pass TransferSetup(head=")


def test_wrapped_models_are_audited_with_unwrapped_names():
    inner = tlaudit.replace_head(torchvision.models.resnet18(), 3)
    model = nn.DataParallel(inner)
    optimizer = torch.optim.SGD(inner.fc.parameters(), lr=0.01)
    report = tlaudit.audit(
        tlaudit.TransferSetup(model=model, num_classes=3, sample=torch.randn(2, 3, 64, 64), optimizer=optimizer),
        select=["optimizer-missing"],
    )
    [finding] = report.findings
    assert finding.subject == "" and "60 parameters in 6 modules (`conv1`, `bn1`, `layer1` and 3 more)" in finding.message
    assert "module." not in finding.message
    assert report.model == "ResNet"


def test_checks_module_exports_only_its_api():
    assert set(checks_module.__all__) == {"Check", "REGISTRY", "ALIASES", "get_check", "register", "select_checks"}
