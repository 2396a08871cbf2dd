"""Tests for tlaudit.inspection: trainable_report and describe."""

from __future__ import annotations

import json
import re

import pytest
from torch import nn

from tests.support.helpers import (
    TiedHead,
    TinyCNN,
    WithGetClassifier,
    build_torchvision_meta,
    expected_heads,
    frozen_setup,
    headless_sequential,
    params_by_id,
)
from tlaudit import StagedUnfreezer, describe, freeze, freeze_backbone, trainable_report


def numel(params) -> int:
    return sum(p.numel() for p in params_by_id(params).values())


# --- trainable_report ---------------------------------------------------------------------------------


def test_trainable_report_counts_and_flags():
    model = TinyCNN()
    freeze(model, "stem")
    freeze(model, "layer1.0")
    report = trainable_report(model)
    rows = {r["module"]: r for r in report.modules}
    assert list(rows) == ["stem", "layer1", "layer2", "pool", "fc"]
    assert [rows[n]["requires_grad"] for n in rows] == ["none", "mixed", "all", "-", "all"]
    assert rows["layer1"]["params"] == numel(model.layer1.parameters())
    assert rows["layer1"]["trainable"] == numel(model.layer1.parameters()) - model.layer1[0].weight.numel()
    assert report.total_params == numel(model.parameters())
    assert report.trainable_params == numel(p for p in model.parameters() if p.requires_grad)
    assert report.groups == ()


def test_trainable_report_all_and_none():
    model = TinyCNN()
    assert {r["requires_grad"] for r in trainable_report(model).modules} == {"all", "-"}
    freeze(model)
    report = trainable_report(model)
    assert {r["requires_grad"] for r in report.modules} == {"none", "-"}
    assert report.trainable_params == 0


def test_trainable_report_shared_parameters_counted_once():
    model = TiedHead(vocab=10, dim=4)
    report = trainable_report(model)
    assert report.total_params == report.trainable_params == 10 * 4 + 10 + 2 * 4
    assert {r["module"]: r["params"] for r in report.modules}["fc"] == 10 * 4 + 10
    freeze(model, "embed")  # also freezes the tied fc.weight
    report = trainable_report(model)
    assert report.trainable_params == 10 + 2 * 4
    assert {r["module"]: r["requires_grad"] for r in report.modules}["fc"] == "mixed"


def test_trainable_report_with_optimizer_groups_and_depth():
    model, opt = frozen_setup()
    StagedUnfreezer(model, opt, {0: "layer2"}, lr=2e-3).step(0)
    freeze(model, "layer2.1")  # held by the optimizer, now frozen
    report = trainable_report(model, opt, depth=2)
    keys = ("group", "name", "lr", "weight_decay", "params", "trainable")
    assert [tuple(g[k] for k in keys) for g in report.groups] == [
        (0, "head", 1e-2, 0.01, 1, 1),
        (1, "head/no_decay", 1e-2, 0.0, 1, 1),
        (2, "unfreeze:layer2", 2e-3, 0.01, 4, 2),
    ]
    assert "layer1.0" in [r["module"] for r in report.modules]


def test_trainable_report_to_dict_and_str():
    model, opt = frozen_setup()
    report = trainable_report(model, opt)
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["trainable_params"] == numel(model.fc.parameters())
    assert [g["name"] for g in data["param_groups"]] == ["head", "head/no_decay"]
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == f"trainable: {numel(model.fc.parameters()):,} of {numel(model.parameters()):,} parameters"
    assert re.match(r"module\s+requires_grad\s+trainable\s+params\s+mode$", lines[1])
    assert re.search(r"^\s*group\s+name\s+lr\s+weight_decay\s+params\s+trainable$", text, re.M)
    assert re.search(r"^fc\s+all\s+", text, re.M)


def test_trainable_report_bad_optimizer():
    with pytest.raises(TypeError, match=re.escape("optimizer must be a torch.optim.Optimizer: dict (optimizer)")):
        trainable_report(TinyCNN(), {"lr": 0.1})


# --- describe -----------------------------------------------------------------------------------------


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_describe_counts_and_rows():
    model = TinyCNN()
    freeze(model, "stem")
    freeze(model, "layer1.0")
    d = describe(model)
    assert d.model == "TinyCNN"
    assert d.heads == ("fc",)
    assert d.total_params == _numel(model)
    assert d.trainable_params == _numel(model) - _numel(model.stem) - model.layer1[0].weight.numel()
    rows = {r["module"]: r for r in d.rows}
    assert list(rows) == ["stem", "layer1", "layer2", "pool", "fc"]
    assert [rows[n]["trainable"] for n in rows] == ["none", "mixed", "all", "-", "all"]
    assert [rows[n]["head"] for n in rows] == [False, False, False, False, True]
    assert rows["layer1"]["params"] == _numel(model.layer1)
    assert rows["fc"]["type"] == "Linear"
    assert d.notes == ()


def test_describe_mode_column():
    model = TinyCNN().train()
    model.layer1.eval()
    model.layer2[0].eval()
    rows = {r["module"]: r["mode"] for r in describe(model).rows}
    assert (rows["stem"], rows["layer1"], rows["layer2"]) == ("train", "eval", "mixed")


def test_describe_depth_and_head_rows():
    model = build_torchvision_meta("vgg16")
    names = [r["module"] for r in describe(model).rows]
    assert names == ["features", "avgpool", "classifier", "classifier.6"]  # the head is always listed
    deeper = [r["module"] for r in describe(TinyCNN(), depth=2).rows]
    assert "layer1.0" in deeper and "stem.1" in deeper


def test_describe_resnet18_total():
    d = describe(build_torchvision_meta("resnet18"))
    assert (d.total_params, d.trainable_params, d.heads) == (11689512, 11689512, ("fc",))


def test_describe_shared_parameters_counted_once():
    model = TiedHead(vocab=10, dim=4)
    d = describe(model)
    assert d.total_params == 10 * 4 + 10 + 2 * 4  # embed/fc weight once, fc bias, LayerNorm
    assert d.notes == ("1 shared parameter reference(s) counted once",)
    rows = {r["module"]: r for r in d.rows}
    assert rows["fc"]["params"] == 10 * 4 + 10


def test_describe_without_head_notes_it():
    d = describe(headless_sequential())
    assert d.heads == ()
    assert d.notes == ("no classification head found",)


def test_describe_explicit_head_and_wrapper():
    model = WithGetClassifier(broken=True)
    d = describe(nn.DataParallel(model), head="module.logits")
    assert d.model == "WithGetClassifier"
    assert d.heads == ("logits",)
    assert not any(r["module"].startswith("module") for r in d.rows)


def test_describe_str_and_to_dict():
    model = TinyCNN()
    freeze_backbone(model)
    d = describe(model)
    text = str(d)
    lines = text.splitlines()
    total = _numel(model)
    trainable = _numel(model.fc)
    assert lines[0] == f"TinyCNN: {total:,} parameters, {trainable:,} trainable"
    assert re.match(r"module\s+type\s+params\s+trainable\s+mode\s+role$", lines[1])
    fc_line = next(line for line in lines if line.startswith("fc "))
    assert re.search(r"\sall\s+train\s+head$", fc_line)
    assert not next(line for line in lines if line.startswith("stem ")).rstrip().endswith("head")
    aux_lines = [line for line in str(describe(build_torchvision_meta("googlenet"))).splitlines() if "fc" in line]
    assert [line.split()[0] for line in aux_lines if line.endswith(" aux head")] == ["aux1.fc2", "aux2.fc2"]
    assert [line.split()[0] for line in aux_lines if re.search(r"\shead$", line) and "aux" not in line] == ["fc"]
    data = d.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["heads"] == ["fc"]
    assert data["total_params"] == total and data["trainable_params"] == trainable
    assert [m["module"] for m in data["modules"]] == ["stem", "layer1", "layer2", "pool", "fc"]


@pytest.mark.parametrize("bad", [0, -1, True, "1", 1.0])
def test_describe_bad_depth(bad):
    with pytest.raises(ValueError, match=re.escape(f"depth must be a positive int: {bad!r} (depth)")):
        describe(TinyCNN(), depth=bad)


def test_describe_marks_main_and_aux_heads():
    for name in ("resnet18", "inception_v3", "googlenet"):
        d = describe(build_torchvision_meta(name))
        assert d.heads == tuple(expected_heads(name))
        assert {r["module"] for r in d.rows if r["head"]} == set(expected_heads(name))


# --- input checks -------------------------------------------------------------------------------------


def test_trainable_report_rejects_a_bad_depth():
    with pytest.raises(ValueError, match=r"depth must be a positive int: 0 \(depth\)"):
        trainable_report(TinyCNN(), depth=0)
