"""Every bad input gets a clear answer: a SetupError naming the field, or a finding, never a silent report.

The property-based tests build ``TransferSetup`` fields from strategies that mix right values with
wrong types, wrong shapes, NaN/Inf, parameterless models and mismatched objects, and assert that
the audit returns a report or raises ``SetupError`` naming a field, changes nothing the setup
holds, and that the CLI exits 0, 1 or 2 without a traceback.

The default profile is small and deterministic (it runs in the suite); for a longer local run:

    TLAUDIT_FUZZ_PROFILE=long .venv/bin/python -m pytest tests/test_bad_input.py -p no:xdist
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import tlaudit
from tests.support.cases import fingerprint, fingerprint_diff
from tlaudit.cli import main

settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,  # the first audit builds kernels; the bound below is a per-example timeout instead
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("long", parent=settings.get_profile("default"), max_examples=500, derandomize=False)
PROFILE = settings.get_profile(os.environ.get("TLAUDIT_FUZZ_PROFILE", "default"))

FIELDS = {f.name for f in dataclasses.fields(tlaudit.TransferSetup)}
WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


# -- the cases the issue names, each with its message -----------------------------------------------


def small_cnn(num_classes: int = 3) -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 4, 3),
            bn=nn.BatchNorm2d(4),
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(4, num_classes),
        )
    )


def test_a_sample_with_nan_is_an_input_range_error_and_the_other_checks_still_run():
    sample = torch.randn(2, 3, 16, 16)
    sample[0, 0, 0, :3] = float("nan")
    sample[1, 2, 5, 5] = float("inf")
    report = tlaudit.audit(tlaudit.TransferSetup(model=small_cnn(), num_classes=3, sample=sample))
    [finding] = report.by_check("input-range")
    assert finding.severity is tlaudit.Severity.ERROR
    assert finding.message == (
        "the sample holds 3 NaN values and 1 infinite value (of 1536, shape (2, 3, 16, 16)): every loss and gradient they reach is NaN"
    )
    assert "head-size" in report.checks_run


def test_an_unreplaced_head_against_the_weights_classes_is_a_warning_without_num_classes():
    model = torchvision.models.resnet18()
    report = tlaudit.audit(tlaudit.TransferSetup(model=model, weights=WEIGHTS, sample=torch.randn(2, 3, 32, 32)), select=["head-size"])
    [finding] = report.by_check("head-size")
    assert finding.severity is tlaudit.Severity.WARNING and finding.subject == "fc"
    assert finding.message == "head `fc` still has the 1000 outputs of the weights' classes: not replaced for the new task?"


def test_a_replaced_head_against_the_weights_classes_is_clean():
    model = tlaudit.replace_head(torchvision.models.resnet18(), 7)
    report = tlaudit.audit(
        tlaudit.TransferSetup(model=model, weights="ResNet18_Weights.IMAGENET1K_V1", sample=torch.randn(2, 3, 32, 32)), select=["head-size"]
    )
    assert report.checks_run == ("head-size",) and report.findings == ()


def test_weights_that_do_not_say_their_classes_skip_head_size_with_the_reason():
    report = tlaudit.audit(
        tlaudit.TransferSetup(model=small_cnn(), weights={"mean": [0.5] * 3, "std": [0.5] * 3}, sample=torch.randn(2, 3, 16, 16)),
        select=["head-size"],
    )
    assert [(s.check, s.reason) for s in report.skipped] == [
        ("head-size", "no `num_classes` given, and the weights do not say how many classes they have")
    ]


def test_a_mostly_skipped_report_says_so_in_its_summary():
    report = tlaudit.audit(tlaudit.TransferSetup(model=small_cnn(), sample=torch.randn(2, 3, 16, 16)))
    assert len(report.skipped) > len(report.checks_run)
    assert report.summary().endswith("skipped (most checks could not run: see why under skipped).")
    full = tlaudit.audit(
        tlaudit.TransferSetup(
            model=small_cnn(),
            num_classes=3,
            sample=torch.randn(2, 3, 16, 16),
            targets=torch.tensor([0, 2]),
            optimizer=torch.optim.SGD(small_cnn().parameters(), lr=0.1),
        )
    )
    assert "most checks could not run" not in full.summary()


# -- fuzzing TransferSetup ------------------------------------------------------------------------


def _raise(*args: Any) -> None:
    raise RuntimeError("user code failed")


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(x)


def _sample(kind: str) -> Any:
    return {
        "none": None,
        "ok": torch.randn(2, 3, 16, 16),
        "wrong-shape": torch.randn(2, 5),
        "some-nan": torch.where(torch.arange(1536).reshape(2, 3, 16, 16) % 7 == 0, float("nan"), 0.5),
        "all-inf": torch.full((2, 3, 16, 16), float("inf")),
        "uint8": torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8),
        "empty": torch.zeros(0, 3, 16, 16),
        "list": [1.0, 2.0],
    }[kind]


@st.composite
def setups(draw: st.DrawFn) -> dict[str, Any]:
    model_kind = draw(st.sampled_from(["cnn", "cnn", "linear", "no-params", "not-a-module", "wrapped"]))
    model: Any = {
        "cnn": small_cnn(),
        "linear": nn.Linear(4, 3),
        "no-params": nn.Sequential(nn.ReLU()),
        "not-a-module": "resnet18",
        "wrapped": nn.DataParallel(small_cnn()),
    }[model_kind]
    fields: dict[str, Any] = {"model": model}
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    fields["num_classes"] = draw(st.sampled_from([None, 3, 5, 0, -1, True, 2.5]))
    sample_kind = draw(st.sampled_from(["none", "ok", "ok", "wrong-shape", "some-nan", "all-inf", "uint8", "empty", "list"]))
    fields["sample"] = _sample(sample_kind)
    if isinstance(fields["sample"], torch.Tensor) and fields["sample"].ndim:
        n = fields["sample"].shape[0]
        fields["targets"] = draw(
            st.sampled_from(
                [None, torch.arange(n) % 3, torch.full((n,), 9), torch.zeros(n + 1, dtype=torch.long), torch.rand(n, 3), torch.tensor(1)]
            )
        )
    optimizer: Any = None
    if params:
        optimizer = draw(st.sampled_from(["none", "sgd", "adam", "other-model", "str"]))
        optimizer = {
            "none": None,
            "sgd": torch.optim.SGD(params, lr=0.05, momentum=0.9),
            "adam": torch.optim.Adam(params, lr=1e-2),
            "other-model": torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1),
            "str": "adam",
        }[optimizer]
    fields["optimizer"] = optimizer
    if isinstance(optimizer, torch.optim.Optimizer):
        kind = draw(st.sampled_from(["none", "step", "onecycle", "optimizer", "object"]))
        fields["scheduler"] = {
            "none": None,
            "step": torch.optim.lr_scheduler.StepLR(optimizer, 5),
            "onecycle": torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=50),
            "optimizer": optimizer,
            "object": object(),
        }[kind]
    fields["weights"] = draw(
        st.sampled_from([None, WEIGHTS, "ResNet18_Weights.NOPE", {"mean": [0.5] * 3, "std": [0.5] * 3}, {"mean": "x"}, 42])
    )
    fields["transform"] = draw(st.sampled_from([None, WEIGHTS.transforms(), 42, [42], (lambda x: x)]))
    fields["strategy"] = draw(st.sampled_from([None, "feature_extraction", "fine_tuning", "finetune"]))
    fields["frozen"] = draw(st.sampled_from([None, "conv", "nope", ["conv", 3], "module.conv"]))
    fields["head"] = draw(st.sampled_from([None, "fc", "fcc", 3]))
    fields["lr_max"] = draw(st.sampled_from([None, 1e-3, 0, -1, float("inf"), "1e-3"]))
    fields["train_step"] = draw(st.sampled_from([None, _raise, 3]))
    fields["predict"] = draw(st.sampled_from([None, _predict, _raise, "predict"]))
    fields["load_result"] = draw(st.sampled_from([None, {"missing_keys": [], "unexpected_keys": []}, 7]))
    return fields


def _owned(fields: dict[str, Any]) -> dict[str, Any]:
    """What the audit must leave untouched: the model's parameters, buffers, flags and grads, the optimizer."""
    model = fields["model"]
    if not isinstance(model, nn.Module):
        return {}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    flags = [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    opt = fields.get("optimizer")
    groups = (
        [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups] if isinstance(opt, torch.optim.Optimizer) else []
    )
    return {"state": state, "flags": flags, "modes": modes, "groups": groups}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if not a:
        return not b
    same_state = a["state"].keys() == b["state"].keys() and all(
        torch.equal(a["state"][k], b["state"][k]) or (a["state"][k].isnan().any() and b["state"][k].isnan().any()) for k in a["state"]
    )
    same_flags = len(a["flags"]) == len(b["flags"]) and all(
        fa == fb and (ga is None) == (gb is None) and (ga is None or torch.equal(ga, gb))
        for (fa, ga), (fb, gb) in zip(a["flags"], b["flags"])
    )
    return same_state and same_flags and a["modes"] == b["modes"] and a["groups"] == b["groups"]


@PROFILE
@given(setups())
def test_audit_answers_every_setup_with_a_report_or_a_setup_error_and_changes_nothing(fields: dict[str, Any]) -> None:
    before = _owned(fields)
    try:
        setup = tlaudit.TransferSetup(**fields)
    except tlaudit.SetupError as err:
        assert err.field in FIELDS, (err.field, str(err))
        assert str(err).strip()
        assert _same(before, _owned(fields))
        return
    try:
        report = tlaudit.audit(setup)
    except tlaudit.SetupError as err:
        assert err.field in FIELDS, (err.field, str(err))
    else:
        assert isinstance(report, tlaudit.Report)
        assert not [f for f in report.findings if f.message.startswith("check crashed")], str(report)
        assert len(report.checks_run) + len(report.skipped) == len(tlaudit.REGISTRY)
    assert _same(before, _owned(fields))


def test_the_fingerprint_helper_agrees_on_a_plain_setup():
    setup = tlaudit.TransferSetup(model=small_cnn(), num_classes=3, sample=torch.randn(2, 3, 16, 16))
    before = fingerprint(setup)
    tlaudit.audit(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []


# -- fuzzing the CLI ------------------------------------------------------------------------------

_BODIES = {
    "fine": "return tlaudit.TransferSetup(model=model(), num_classes=3, sample=torch.randn(2, 3, 16, 16))",
    "buggy": "m = model(); return tlaudit.TransferSetup(model=m, num_classes=5, sample=torch.randn(2, 3, 16, 16), "
    "optimizer=torch.optim.SGD(m.parameters(), lr=1.0))",
    "raises": "raise KeyError('no data')",
    "none": "return None",
    "bad-field": "return tlaudit.TransferSetup(model=model(), transform=42)",
    "bad-sample": "return tlaudit.TransferSetup(model=model(), sample=torch.randn(2, 5))",
    "user-step-raises": "return tlaudit.TransferSetup(model=model(), sample=torch.randn(2, 3, 16, 16), train_step=lambda *a: 1 / 0)",
    "prints": "print('loading data...'); return tlaudit.TransferSetup(model=model(), num_classes=3)",
}
_SETUP_FILE = """
import torch, tlaudit
from torch import nn

def model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

def setup():
    {body}
"""


@PROFILE
@given(
    body=st.sampled_from(sorted(_BODIES)),
    fmt=st.sampled_from(["table", "json", "markdown", "junit"]),
    extra=st.sampled_from([[], ["--select", "head-size"], ["--select", "nope"], ["--lr-max", "-1"], ["--fail-on", "warning"]]),
)
def test_the_cli_exits_0_1_or_2_and_never_shows_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], body: str, fmt: str, extra: list[str]
) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "setup_file.py"
    path.write_text(_SETUP_FILE.format(body=_BODIES[body]))
    code = main(["audit", str(path), "--format", fmt, "--no-progress", *extra])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), code
    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        assert "error:" in err
