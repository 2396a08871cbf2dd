"""The audit engine: running and skipping checks, crashing checks, setup errors, full audits of whole setups."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import tlaudit
from tests.support.cases import (
    NC,
    RESNET18_WEIGHTS,
    fingerprint,
    fingerprint_diff,
    make,
    model,
    normalized,
    pixels,
    predict_inference,
    size_of,
)
from tlaudit.auditing.checks import REGISTRY, Check
from tlaudit.auditing.report import Severity, Skipped

ROOT = Path(__file__).resolve().parents[3]


def small_setup(**fields):
    model = tlaudit.replace_head(torchvision.models.resnet18(), 3)
    fields.setdefault("sample", torch.randn(2, 3, 64, 64))
    return tlaudit.TransferSetup(model=model, num_classes=3, **fields)


# -- running ---------------------------------------------------------------------------------------


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


# -- bad input -------------------------------------------------------------------------------------


def test_audit_needs_a_transfer_setup():
    with pytest.raises(tlaudit.SetupError, match=r"audit\(\) needs a TransferSetup, got dict \(setup\)"):
        tlaudit.audit({"model": nn.Linear(2, 2)})


def test_a_model_that_cannot_take_the_sample_names_the_sample():
    setup = small_setup(sample=torch.randn(2, 5, 64, 64))
    before = [p.detach().clone() for p in setup.model.parameters()]
    with pytest.raises(
        tlaudit.SetupError, match=r"TransferSetup.sample: the model cannot take the sample of shape \(2, 5, 64, 64\)"
    ) as info:
        tlaudit.audit(setup)
    assert info.value.field == "sample"
    assert all(torch.equal(a, b) for a, b in zip(before, setup.model.parameters()))


def test_synthesized_targets_that_do_not_fit_skip_the_traced_checks_instead_of_blaming_targets():
    """No SetupError about a field the user never set: the default step's synthesized labels do not fit a
    segmentation model's (N, C, H, W) logits, so the traced checks skip with the reason and the rest report."""
    from tests.support import field_cases as fc

    setup = fc.seg_without_targets()
    before = [p.detach().clone() for p in setup.model.parameters()]
    report = tlaudit.audit(setup)
    skipped = dict((s.check, s.reason) for s in report.skipped)
    assert re.match(
        r"the audit's default train step does not fit this model \(RuntimeError: .*\) on synthesized "
        r"class labels; pass train_step= \(and targets=\) to audit the step$",
        skipped["trainable-no-grad"],
    )
    assert "optimizer-missing" in report.checks_run and "head-size" in report.checks_run
    assert not report.by_check("user-code-error")
    assert all(torch.equal(a, b) for a, b in zip(before, setup.model.parameters()))


def test_given_targets_that_do_not_fit_still_name_the_targets():
    from tests.support import field_cases as fc

    setup = fc.seg_without_targets()
    with pytest.raises(tlaudit.SetupError, match=r"^TransferSetup\.targets: cross-entropy on the model's output"):
        tlaudit.audit(setup.replace(targets=torch.tensor([0, 1])))


def test_a_static_audit_keeps_optimizer_missing_on_the_flag_alone():
    """Without an observed step (a watched run's static audit) the no_grad probe's backbone is still
    reported: frozen in effect needs the step's gradients as evidence."""
    from tests.support import field_cases as fc

    assert not tlaudit.audit(fc.probe_no_grad()).by_check("optimizer-missing")
    [finding] = tlaudit.audit(fc.probe_no_grad(), select=["optimizer-missing"]).by_check("optimizer-missing")
    assert finding.severity is tlaudit.Severity.ERROR and finding.subject == "backbone"


def test_a_raising_train_step_is_a_user_code_error_finding():
    def train_step(model, sample, targets, optimizer):
        raise RuntimeError("CUDA out of memory (pretend)")

    report = tlaudit.audit(small_setup(train_step=train_step))
    [finding] = report.by_check("user-code-error")
    assert finding.message == "TransferSetup.train_step raised RuntimeError: CUDA out of memory (pretend)"
    assert finding.severity is tlaudit.Severity.ERROR and not report.ok


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


# -- skipped checks --------------------------------------------------------------------------------


def _bare(**fields: Any) -> tlaudit.TransferSetup:
    """A resnet18 setup with exactly the given fields (no optimizer, predict, weights ... unless passed)."""
    return tlaudit.TransferSetup(model=model("resnet18"), **fields)


@pytest.mark.parametrize(
    ("build", "checks", "reason"),
    [
        pytest.param(
            lambda: _bare(num_classes=NC),
            ["eval-mode", "eval-nondeterministic", "grad-inference"],
            "no `predict` given",
            id="no-predict",
        ),
        pytest.param(
            lambda: _bare(num_classes=NC),
            ["optimizer-missing", "optimizer-frozen", "lr-threshold"],
            "no `optimizer` given",
            id="no-optimizer",
        ),
        pytest.param(
            lambda: _bare(num_classes=NC), ["frozen-changed"], "no `optimizer` or `train_step` given", id="no-optimizer-no-train-step"
        ),
        pytest.param(lambda: _bare(sample=normalized()), ["label-range"], "no `num_classes` given", id="no-num-classes"),
        pytest.param(
            lambda: _bare(sample=normalized()), ["head-size"], "no `num_classes` or `weights` given", id="no-num-classes-or-weights"
        ),
        pytest.param(lambda: _bare(num_classes=NC), ["normalization"], "no `weights` given", id="no-weights"),
        pytest.param(lambda: _bare(weights=RESNET18_WEIGHTS), ["normalization"], "no `transform` given", id="no-transform"),
        pytest.param(lambda: _bare(num_classes=NC), ["input-range"], "no `sample` given", id="sample-synthesized"),
        pytest.param(lambda: _bare(num_classes=NC, sample=normalized()), ["label-range"], "no `targets` given", id="no-targets"),
        pytest.param(
            lambda: _bare(num_classes=NC),
            ["pretrained-not-loaded"],
            "no `weights` or `load_result` given",
            id="no-weights-no-load-result",
        ),
        pytest.param(
            lambda: make(model("squeezenet1_1"), weights="SqueezeNet1_1_Weights.IMAGENET1K_V1"),
            ["pretrained-not-loaded"],
            "no norm layers with statistics to judge the backbone by; pass load_result=",
            id="squeezenet-no-norm-layers",
        ),
        pytest.param(
            lambda: make(model("vgg11"), weights="VGG11_Weights.IMAGENET1K_V1"),
            ["pretrained-not-loaded"],
            "no norm layers with statistics to judge the backbone by; pass load_result=",
            id="vgg-no-norm-layers",
        ),
        pytest.param(
            lambda: make(model("resnet18"), load_result="ok"),
            ["pretrained-not-loaded"],
            "TransferSetup.load_result has no missing_keys/unexpected_keys: str; pass what model.load_state_dict(...) returned",
            id="load-result-not-a-load-result",
        ),
        pytest.param(
            lambda: make(model("resnet18"), sample=(pixels() * 255).to(torch.uint8)),
            ["input-range"],
            "the sample is not a float image batch (dtype torch.uint8, shape (2, 3, 64, 64))",
            id="uint8-sample",
        ),
        pytest.param(
            lambda: make(
                nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                strategy="feature_extraction",  # what is meant frozen depends on the head
            ),
            ["head-frozen", "frozen-grad"],
            "no classification head found; pass TransferSetup(head='<module name>')",
            id="no-head-found",
        ),
    ],
)
def test_check_without_its_input_is_skipped_with_reason(build: Any, checks: list[str], reason: str) -> None:
    setup = build()
    report = tlaudit.audit(setup, select=checks)
    assert {s.check: s.reason for s in report.skipped} == dict.fromkeys(checks, reason)
    assert report.checks_run == () and report.findings == ()


def test_synthesized_sample_is_a_note_and_skips_input_range() -> None:
    setup = _bare(num_classes=NC)
    report = tlaudit.audit(setup)
    assert Skipped("input-range", "no `sample` given") in report.skipped
    assert "head-size" in report.checks_run
    note = r"no sample given: synthesized a standard-normal batch of shape \(2, 3, 224, 224\)"
    assert any(re.match(note, n) for n in report.notes), report.notes
    assert setup.sample is None and setup.targets is None


# -- full audits of whole setups -------------------------------------------------------------------


def _sound(name: str, weights: Any, *, scheduler: bool = False) -> tlaudit.TransferSetup:
    """A sound feature-extraction setup of ``name``: every field given, nothing for any check to find."""
    m = model(name)
    if hasattr(m, "transform_input"):
        m.transform_input = True  # what googlenet(weights=...) builds with these weights
    tlaudit.freeze_backbone(m, batchnorm="frozen")
    weights = torchvision.models.get_weight(weights)
    if scheduler:
        optimizer: torch.optim.Optimizer = torch.optim.SGD(tlaudit.param_groups(m, 1e-3, head_lr=0.05), momentum=0.9)
        sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    else:
        optimizer, sched = torch.optim.AdamW(tlaudit.param_groups(m, 1e-4, head_lr=1e-3, weight_decay=0.01)), None
    return make(
        m,
        size_of(name),
        optimizer=optimizer,
        scheduler=sched,
        weights=weights,
        transform=weights.transforms(),
        strategy="feature_extraction",
        predict=predict_inference,
    )


@pytest.mark.parametrize(
    ("name", "weights", "scheduler"),
    [
        ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", True),
        ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", False),
        ("googlenet", "GoogLeNet_Weights.IMAGENET1K_V1", True),
        ("vit_tiny", "ViT_B_32_Weights.IMAGENET1K_V1", False),
        ("densenet121", "DenseNet121_Weights.IMAGENET1K_V1", False),
    ],
)
def test_sound_setup_has_no_findings(name: str, weights: str, scheduler: bool) -> None:
    setup = _sound(name, weights, scheduler=scheduler)
    before = fingerprint(setup)
    report = tlaudit.audit(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    assert report.findings == () and report.skipped == (), str(report)
    assert report.checks_run == tuple(REGISTRY)


def test_bundled_correct_example_has_no_findings_and_skips_nothing() -> None:
    setup = tlaudit.load_setup(ROOT / "tlaudit" / "examples" / "correct.py")
    before = fingerprint(setup)
    report = tlaudit.audit(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    assert report.findings == () and report.skipped == (), str(report)
    assert report.checks_run == tuple(REGISTRY)


def test_bundled_buggy_example_triggers_the_usual_mistakes() -> None:
    setup = tlaudit.load_setup(ROOT / "tlaudit" / "examples" / "buggy.py")
    before = fingerprint(setup)
    report = tlaudit.audit(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    assert {f.check for f in report.findings} == {
        "frozen-grad",
        "frozen-changed",
        "frozen-bn-train",
        "optimizer-missing",
        "optimizer-frozen",
        "lr-threshold",
        "eval-mode",
        "grad-inference",
        "normalization",
    }, str(report)
    assert report.skipped == ()
