"""Tests for tlaudit.groups: param_groups."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from tests.support.helpers import TiedHead, TinyCNN, build_torchvision_meta
from tlaudit import freeze, param_groups


def _group_of(groups, param):
    found = [g for g in groups if any(p is param for p in g["params"])]
    assert len(found) == 1
    return found[0]


def test_param_groups_each_trainable_parameter_exactly_once():
    model = build_torchvision_meta("resnet18")
    freeze(model, "layer1")
    groups = param_groups(model, 1e-3, weight_decay=0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in set(ids) for p in model.layer1.parameters())


def test_param_groups_weight_decay_and_head_lr():
    model = TinyCNN()
    groups = param_groups(model, 1e-3, weight_decay=0.05)
    assert [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in groups] == [
        ("backbone", 1e-3, 0.05, 5),
        ("backbone/no_decay", 1e-3, 0.0, 7),
        ("head", 1e-2, 0.05, 1),
        ("head/no_decay", 1e-2, 0.0, 1),
    ]
    for g in groups:
        if g["name"].endswith("no_decay"):
            assert all(p.ndim <= 1 for p in g["params"])  # biases and norm weights
        else:
            assert all(p.ndim > 1 for p in g["params"])
    assert _group_of(groups, model.stem[1].weight)["weight_decay"] == 0.0
    assert _group_of(groups, model.fc.bias)["weight_decay"] == 0.0
    assert _group_of(groups, model.fc.weight)["lr"] == pytest.approx(1e-2)


def test_param_groups_explicit_head_lr_and_head():
    model = TinyCNN()
    groups = param_groups(model, 1e-3, head_lr=5e-3, head="layer2")
    assert _group_of(groups, model.layer2[1].weight)["lr"] == 5e-3
    assert _group_of(groups, model.fc.weight)["lr"] == 1e-3


def test_param_groups_layer_decay_resnet18():
    model = build_torchvision_meta("resnet18")
    groups = param_groups(model, 1.0, layer_decay=0.5)
    lr_of = lambda p: _group_of(groups, p)["lr"]  # noqa: E731
    assert lr_of(model.layer4[1].conv1.weight) == 1.0
    assert lr_of(model.layer4[0].conv1.weight) == 0.5
    assert lr_of(model.layer1[0].conv1.weight) == 0.5**7
    assert lr_of(model.layer1[0].conv1.weight) < lr_of(model.layer4[1].conv1.weight)
    assert lr_of(model.conv1.weight) == 0.5**9
    assert lr_of(model.fc.weight) == 10.0
    backbone_lrs = [g["lr"] for g in groups if not g["name"].startswith("head")]
    assert backbone_lrs == sorted(backbone_lrs)  # earlier blocks, lower LR
    assert {g["name"].split("/")[0] for g in groups} >= {"conv1", "bn1", "layer1.0", "layer1.1", "layer4.1", "head"}


def test_param_groups_layer_decay_vit_blocks():
    model = build_torchvision_meta("vit_b_16")
    groups = param_groups(model, 1.0, layer_decay=0.5)
    names = {g["name"] for g in groups}
    assert {f"encoder.layers.encoder_layer_{i}" for i in range(12)} <= names
    for i in range(12):
        layer = model.encoder.layers[i]
        assert _group_of(groups, layer.mlp[0].weight)["name"] == f"encoder.layers.encoder_layer_{i}"
        assert _group_of(groups, layer.mlp[0].weight)["lr"] == 0.5 ** (12 - i)  # encoder.ln is the block nearest the head
    assert _group_of(groups, model.heads.head.weight)["lr"] == 10.0


def test_param_groups_layer_decay_vit_final_norm_is_not_the_lowest():
    model = build_torchvision_meta("vit_b_16")
    groups = param_groups(model, 1.0, layer_decay=0.5)
    last_block_lr = _group_of(groups, model.encoder.layers[11].mlp[0].weight)["lr"]
    assert _group_of(groups, model.encoder.ln.weight)["lr"] >= last_block_lr
    assert _group_of(groups, model.encoder.ln.weight)["lr"] == 1.0


def test_param_groups_shared_parameter_once():
    model = TiedHead()
    groups = param_groups(model, 1e-3, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == 4  # embed.weight (= fc.weight), norm weight/bias, fc.bias
    assert sum(1 for i in ids if i == id(model.fc.weight)) == 1


def test_param_groups_work_with_adamw():
    torch.manual_seed(0)
    model = TinyCNN()
    freeze(model, "stem")
    groups = param_groups(model, 1e-3, weight_decay=0.01, layer_decay=0.8)
    opt = torch.optim.AdamW(groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) == name.startswith("stem"), name
    assert [g["name"] for g in opt.param_groups] == [g["name"] for g in groups]
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1}, "lr must be a finite number >= 0: -1 (lr)"),
        ({"lr": "0.1"}, "lr must be a finite number >= 0: '0.1' (lr)"),
        ({"lr": True}, "lr must be a finite number >= 0: True (lr)"),
        ({"lr": 1e-3, "head_lr": -0.5}, "head_lr must be a finite number >= 0: -0.5 (head_lr)"),
        ({"lr": 1e-3, "weight_decay": -1.0}, "weight_decay must be a finite number >= 0: -1.0 (weight_decay)"),
        ({"lr": 1e-3, "layer_decay": 0}, "layer_decay must be in (0, 1]: 0 (layer_decay)"),
        ({"lr": 1e-3, "layer_decay": 1.5}, "layer_decay must be in (0, 1]: 1.5 (layer_decay)"),
        ({"lr": 1e-3, "layer_decay": True}, "layer_decay must be in (0, 1]: True (layer_decay)"),
        ({"lr": 1e-3, "layer_decay": "0.5"}, "layer_decay must be in (0, 1]: '0.5' (layer_decay)"),
    ],
)
def test_param_groups_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        param_groups(TinyCNN(), **kwargs)


def test_param_groups_layer_decay_one_is_flat():
    model = TinyCNN()
    groups = param_groups(model, 1e-3, layer_decay=1)
    assert {g["lr"] for g in groups if not g["name"].startswith("head")} == {1e-3}


# --- input checks -------------------------------------------------------------------------------------


def test_param_groups_rejects_missing_and_nan_lr():
    model = TinyCNN()
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0: None \(lr\)"):
        param_groups(model, None)
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0: nan \(lr\)"):
        param_groups(model, float("nan"))
