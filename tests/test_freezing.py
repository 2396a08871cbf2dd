"""Tests for tlaudit.freezing: freeze/unfreeze, frozen BatchNorm, param_groups, StagedUnfreezer, inference, reports."""
from __future__ import annotations

import copy
import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import TiedHead, TinyCNN, build_torchvision, build_torchvision_meta, params_by_id
from tlaudit import (
    BatchNormMode,
    FrozenBatchNorm,
    HeadNotFoundError,
    PatternError,
    Stage,
    StagedUnfreezer,
    eval_frozen_batchnorm,
    freeze,
    freeze_backbone,
    freeze_batchnorm,
    inference,
    param_groups,
    trainable_report,
    unfreeze,
)


def trainable(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def flags(model: nn.Module) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in model.named_parameters()}


def numel(params) -> int:
    return sum(p.numel() for p in params_by_id(params).values())


TINY_PARAMS = [
    "stem.0.weight",
    "stem.1.weight",
    "stem.1.bias",
    "layer1.0.weight",
    "layer1.1.weight",
    "layer1.1.bias",
    "layer1.3.weight",
    "layer1.3.bias",
    "layer2.0.weight",
    "layer2.0.bias",
    "layer2.1.weight",
    "layer2.1.bias",
    "fc.weight",
    "fc.bias",
]


def test_tiny_cnn_parameter_names_match_its_documentation():
    assert [n for n, _ in TinyCNN().named_parameters()] == TINY_PARAMS


# --- freeze / unfreeze --------------------------------------------------------------------------------


def test_freeze_returns_only_the_names_it_changed():
    model = TinyCNN()
    assert freeze(model, "stem") == ["stem.0.weight", "stem.1.weight", "stem.1.bias"]
    assert freeze(model, "stem") == []
    assert freeze(model, "stem", "layer2") == ["layer2.0.weight", "layer2.0.bias", "layer2.1.weight", "layer2.1.bias"]
    assert trainable(model) == [n for n in TINY_PARAMS if n.startswith(("layer1", "fc"))]


def test_freeze_without_pattern_freezes_everything_and_unfreeze_reverses():
    model = TinyCNN()
    assert freeze(model) == TINY_PARAMS
    assert trainable(model) == []
    assert unfreeze(model, "fc") == ["fc.weight", "fc.bias"]
    assert unfreeze(model, "fc") == []
    assert unfreeze(model) == [n for n in TINY_PARAMS if not n.startswith("fc")]
    assert trainable(model) == TINY_PARAMS


def test_freeze_by_parameter_name():
    model = TinyCNN()
    assert freeze(model, "fc.bias") == ["fc.bias"]
    assert flags(model)["fc.weight"] is True


def test_dot_boundary_on_vgg16():
    model = build_torchvision_meta("vgg16")  # convs at features.0, 2, 5, 7, 10, ..., 21, 24, 26, 28
    assert freeze(model, "features.2") == ["features.2.weight", "features.2.bias"]
    for index in (21, 24, 26, 28):
        assert model.features[index].weight.requires_grad, index
    # features.1 is a ReLU: no parameters, so nothing changes; features.10/12/14/17/19 are untouched
    assert freeze(model, "features.1") == []
    for index in (10, 12, 14, 17, 19):
        assert model.features[index].weight.requires_grad, index


def test_globs():
    model = build_torchvision_meta("resnet18")
    changed = freeze(model, "layer[12]")
    assert changed and all(n.startswith(("layer1.", "layer2.")) for n in changed)
    assert len(changed) == len([n for n, _ in model.named_parameters() if n.startswith(("layer1.", "layer2."))])
    assert freeze(model, "*.bn2") == [
        n for n, _ in model.named_parameters() if n.startswith(("layer3.", "layer4.")) and ".bn2." in n
    ]
    rest = [n for n, _ in model.named_parameters() if n.startswith(("layer3.", "layer4.")) and ".bn2." not in n]
    assert freeze(model, "layer*") == rest
    assert trainable(model) == ["conv1.weight", "bn1.weight", "bn1.bias", "fc.weight", "fc.bias"]


def test_pattern_matching_nothing_names_the_closest_modules():
    model = build_torchvision_meta("resnet18")
    with pytest.raises(PatternError, match=r"^pattern matches no module: 'layer5' \(patterns\); closest: layer\d"):
        freeze(model, "layer5")
    with pytest.raises(
        PatternError,
        match=re.escape(
            "pattern matches no module: 'zzz' (patterns); top-level modules: "
            "conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc"
        ),
    ):
        unfreeze(model, "zzz")
    assert issubclass(PatternError, ValueError)


def test_bad_pattern_changes_nothing():
    model = TinyCNN()
    with pytest.raises(PatternError, match=r"'nope'"):
        freeze(model, "fc", "nope")
    assert trainable(model) == TINY_PARAMS


@pytest.mark.parametrize("bad", [3, "", None])
def test_non_str_pattern(bad):
    with pytest.raises(TypeError, match=re.escape(f"module-name pattern must be a non-empty str: {bad!r} (patterns)")):
        freeze(TinyCNN(), bad)


def test_overlapping_patterns_are_accepted():
    model = build_torchvision_meta("resnet18")
    changed = freeze(model, "layer1", "layer1.0")  # today: PatternError "pattern matches no module: 'layer1.0'"
    assert changed == [n for n, _ in model.named_parameters() if n.startswith("layer1.")]


# --- BatchNorm modes ----------------------------------------------------------------------------------


def test_batchnorm_keep_leaves_batchnorm_updating_in_train_mode():
    torch.manual_seed(0)
    model = TinyCNN()
    freeze(model, batchnorm="keep")
    assert type(model.stem[1]) is nn.BatchNorm2d
    before = model.stem[1].running_mean.clone()
    model.train()(torch.randn(4, 3, 8, 8))
    assert not torch.equal(model.stem[1].running_mean, before)
    assert int(model.stem[1].num_batches_tracked) == 1


def test_batchnorm_frozen_converts_only_under_the_patterns():
    model = TinyCNN()
    changed = freeze(model, "stem", batchnorm=BatchNormMode.FROZEN)
    assert changed == ["stem.0.weight", "stem.1.weight", "stem.1.bias"]
    assert isinstance(model.stem[1], FrozenBatchNorm)
    assert type(model.layer1[1]) is nn.BatchNorm2d
    assert "stem.1.weight" not in dict(model.named_parameters())  # buffers now, not parameters
    assert unfreeze(model) == ["stem.0.weight"]  # FrozenBatchNorm stays frozen
    assert isinstance(model.stem[1], FrozenBatchNorm)


@pytest.mark.parametrize("call", [freeze, freeze_backbone])
def test_bad_batchnorm_mode(call):
    model = TinyCNN()
    with pytest.raises(
        ValueError, match=re.escape("invalid batchnorm: 'freeze' (batchnorm); expected one of 'keep', 'frozen'")
    ):
        call(model, batchnorm="freeze")
    assert trainable(model) == TINY_PARAMS


def _perturb_batchnorm(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_frozen_batchnorm_matches_batchnorm_eval_on_resnet18():
    torch.manual_seed(0)
    model = build_torchvision("resnet18")
    _perturb_batchnorm(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(x)
    replaced = freeze_batchnorm(model)
    assert len(replaced) == 20 and replaced[0] == "bn1" and "layer2.0.downsample.1" in replaced
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected, rtol=1e-4, atol=1e-5)
        train_out = model.train()(x)  # stays fixed after model.train(): same output, stats unchanged
    torch.testing.assert_close(train_out, expected, rtol=1e-4, atol=1e-5)
    for key, value in model.state_dict().items():
        if "running" in key:
            assert torch.equal(value, stats[key]), key


def test_frozen_batchnorm_state_dict_loads_both_ways():
    plain = build_torchvision("resnet18")
    _perturb_batchnorm(plain, seed=1)
    plain.layer1[0].bn1.num_batches_tracked.fill_(7)
    frozen = build_torchvision("resnet18")
    freeze_batchnorm(frozen)
    frozen.load_state_dict(plain.state_dict())  # strict: num_batches_tracked is accepted and dropped
    torch.testing.assert_close(frozen.layer1[0].bn1.running_var, plain.layer1[0].bn1.running_var)
    torch.testing.assert_close(frozen.layer1[0].bn1.weight, plain.layer1[0].bn1.weight)
    back = build_torchvision("resnet18")
    back.load_state_dict(frozen.state_dict())  # and the other way, strict too
    torch.testing.assert_close(back.bn1.running_mean, plain.bn1.running_mean)


def test_frozen_batchnorm_loads_a_batchnorm_state_dict_directly():
    bn = nn.BatchNorm2d(4)
    _perturb_batchnorm(bn)
    bn.num_batches_tracked.fill_(3)
    fbn = FrozenBatchNorm(4)
    result = fbn.load_state_dict(bn.state_dict())
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(fbn, key), getattr(bn, key)), key
    assert list(fbn.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert list(fbn.parameters()) == []


@pytest.mark.parametrize(
    ("bn", "shape"),
    [
        (nn.BatchNorm1d(4, eps=1e-3), (3, 4)),
        (nn.BatchNorm1d(4), (3, 4, 5)),
        (nn.BatchNorm2d(4, affine=False), (2, 4, 3, 3)),
        (nn.BatchNorm3d(4), (2, 4, 2, 3, 3)),
    ],
)
def test_frozen_batchnorm_1d_2d_3d_match_eval(bn, shape):
    bn = bn.double()
    if bn.affine:
        _perturb_batchnorm(bn)
    else:
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    frozen = FrozenBatchNorm.from_batchnorm(bn)
    assert frozen.eps == bn.eps and frozen.num_features == 4
    assert frozen.running_mean.dtype == torch.float64
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(frozen(x), bn.eval()(x))


def test_frozen_batchnorm_repr():
    assert repr(FrozenBatchNorm(8, eps=1e-3)) == "FrozenBatchNorm(8, eps=0.001)"


def test_freeze_batchnorm_dot_boundary_on_vgg16_bn():
    model = build_torchvision_meta("vgg16_bn")  # BatchNorm at features.1, 4, 8, 11, 15, 18, ...
    assert freeze_batchnorm(model, "features.1") == ["features.1"]
    assert isinstance(model.features[1], FrozenBatchNorm)
    assert model.features[1].running_mean.is_meta
    assert type(model.features[11]) is nn.BatchNorm2d and type(model.features[15]) is nn.BatchNorm2d


def test_freeze_batchnorm_bad_pattern():
    with pytest.raises(PatternError, match=r"pattern matches no module: 'stem\.9' \(patterns\); closest: stem"):
        freeze_batchnorm(TinyCNN(), "stem.9")


def test_eval_frozen_batchnorm_after_train():
    torch.manual_seed(0)
    model = TinyCNN()
    freeze(model, "stem")
    model.train()
    assert eval_frozen_batchnorm(model) == ["stem.1"]
    assert not model.stem[1].training and model.layer1[1].training
    assert eval_frozen_batchnorm(model) == []  # already in eval
    frozen_before = model.stem[1].running_mean.clone()
    trained_before = model.layer1[1].running_mean.clone()
    model(torch.randn(4, 3, 8, 8))
    assert torch.equal(model.stem[1].running_mean, frozen_before)
    assert not torch.equal(model.layer1[1].running_mean, trained_before)


def test_eval_frozen_batchnorm_needs_both_affine_terms_frozen_and_skips_non_affine():
    model = TinyCNN().train()
    freeze(model, "stem.1.weight")
    assert eval_frozen_batchnorm(model) == []
    no_affine = nn.Sequential(nn.BatchNorm2d(3, affine=False)).train()
    assert eval_frozen_batchnorm(no_affine) == []
    assert no_affine[0].training


def test_eval_frozen_batchnorm_through_data_parallel():
    model = TinyCNN()
    dp = nn.DataParallel(model)
    freeze(dp, "module.layer1")
    dp.train()
    assert eval_frozen_batchnorm(dp) == ["layer1.1"]


# --- freeze_backbone ----------------------------------------------------------------------------------


def test_freeze_backbone_resnet18():
    model = build_torchvision_meta("resnet18")
    changed = freeze_backbone(model)
    assert len(changed) == 60 and "fc.weight" not in changed
    assert trainable(model) == ["fc.weight", "fc.bias"]


def test_freeze_backbone_keeps_inception_aux_head_trainable():
    model = build_torchvision_meta("inception_v3")
    freeze_backbone(model)
    assert trainable(model) == ["AuxLogits.fc.weight", "AuxLogits.fc.bias", "fc.weight", "fc.bias"]


def test_freeze_backbone_makes_frozen_heads_trainable_again():
    model = TinyCNN()
    freeze(model)
    assert freeze_backbone(model) == ["fc.weight", "fc.bias"]
    assert trainable(model) == ["fc.weight", "fc.bias"]


def test_freeze_backbone_explicit_head():
    model = TinyCNN()
    freeze_backbone(model, head="layer2")
    assert trainable(model) == ["layer2.0.weight", "layer2.0.bias", "layer2.1.weight", "layer2.1.bias"]
    with pytest.raises(HeadNotFoundError, match=r"no module named 'layer3' \(head\)"):
        freeze_backbone(model, head="layer3")


def test_freeze_backbone_frozen_batchnorm():
    model = TinyCNN()
    freeze_backbone(model, batchnorm="frozen")
    assert isinstance(model.stem[1], FrozenBatchNorm) and isinstance(model.layer1[1], FrozenBatchNorm)
    assert trainable(model) == ["fc.weight", "fc.bias"]


# --- wrappers -----------------------------------------------------------------------------------------


def test_freeze_through_data_parallel_uses_plain_names():
    model = TinyCNN()
    dp = nn.DataParallel(model)
    assert freeze(dp, "module.stem") == ["stem.0.weight", "stem.1.weight", "stem.1.bias"]
    assert freeze(dp, "layer1") == [n for n in TINY_PARAMS if n.startswith("layer1.")]
    assert freeze_backbone(dp) == ["layer2.0.weight", "layer2.0.bias", "layer2.1.weight", "layer2.1.bias"]
    assert trainable(model) == ["fc.weight", "fc.bias"]


def test_freeze_through_torch_compile_uses_plain_names():
    model = TinyCNN()
    compiled = torch.compile(model)
    assert [n for n, _ in compiled.named_parameters()][0] == "_orig_mod.stem.0.weight"
    assert freeze(compiled, "_orig_mod.stem") == ["stem.0.weight", "stem.1.weight", "stem.1.bias"]
    assert freeze_backbone(compiled)[0] == "layer1.0.weight"
    assert unfreeze(compiled, "layer2.1") == ["layer2.1.weight", "layer2.1.bias"]
    groups = param_groups(compiled, 1e-3)
    assert [g["name"] for g in groups] == ["backbone", "backbone/no_decay", "head", "head/no_decay"]
    assert trainable_report(compiled).modules[0]["module"] == "stem"


# --- param_groups -------------------------------------------------------------------------------------


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


# --- StagedUnfreezer ----------------------------------------------------------------------------------


def _frozen_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyCNN()
    freeze_backbone(model)
    opt = torch.optim.AdamW(param_groups(model, 1e-3, weight_decay=0.01))
    return model, opt


SCHEDULE = {1: "layer2", 2: {"patterns": ["layer1"], "lr": 5e-3}}


def test_unfreezer_applies_stages_at_their_epoch():
    model, opt = _frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, SCHEDULE, lr=2e-3)
    assert unfreezer.step(0) == []
    assert len(opt.param_groups) == 2
    assert unfreezer.step(1) == ["layer2.0.weight", "layer2.0.bias", "layer2.1.weight", "layer2.1.bias"]
    assert (opt.param_groups[-1]["name"], opt.param_groups[-1]["lr"]) == ("unfreeze:layer2", 2e-3)
    assert params_by_id(opt.param_groups[-1]["params"]).keys() == params_by_id(model.layer2.parameters()).keys()
    assert unfreezer.step(1) == [] and len(opt.param_groups) == 3
    assert len(unfreezer.step(2)) == 5
    assert (opt.param_groups[-1]["name"], opt.param_groups[-1]["lr"]) == ("unfreeze:layer1", 5e-3)
    assert trainable(model) == [n for n in TINY_PARAMS if not n.startswith("stem")]


def test_unfreezer_step_without_epoch_counts_up_and_catches_up():
    model, opt = _frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, [Stage(3, ("layer1",)), Stage(1, ("layer2",))])
    assert [s.epoch for s in unfreezer.stages] == [1, 3]
    assert unfreezer.step() == [] and unfreezer.epoch == 0
    assert len(unfreezer.step()) == 4 and unfreezer.epoch == 1
    late, _ = _frozen_setup()
    late_opt = torch.optim.SGD(late.fc.parameters(), lr=0.1)
    skipping = StagedUnfreezer(late, late_opt, {3: "layer1", 1: "layer2"})
    assert len(skipping.step(5)) == 9  # both stages, in epoch order
    assert [g["name"] for g in late_opt.param_groups[1:]] == ["unfreeze:layer2", "unfreeze:layer1"]


def test_unfreezer_default_lr_is_the_lowest_group_lr():
    model = TinyCNN()
    freeze_backbone(model)
    opt = torch.optim.SGD([{"params": [model.fc.weight], "lr": 0.1}, {"params": [model.fc.bias], "lr": 0.02}])
    StagedUnfreezer(model, opt, [(1, "layer2")]).step(1)
    assert opt.param_groups[-1]["lr"] == 0.02


def test_unfreezer_stage_lr_beats_unfreezer_lr():
    model, opt = _frozen_setup()
    StagedUnfreezer(model, opt, [Stage(0, ("layer2",), lr=3e-4)], lr=1.0).step(0)
    assert opt.param_groups[-1]["lr"] == 3e-4


def _assert_no_duplicates(opt):
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))


def test_unfreezer_never_adds_a_parameter_the_optimizer_holds():
    model = TinyCNN()
    freeze_backbone(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # holds every parameter, frozen ones too
    unfreezer = StagedUnfreezer(model, opt, {1: "layer2", 2: ["layer1", "fc"]})
    assert len(unfreezer.step(1)) == 4
    assert len(unfreezer.step(2)) == 5
    assert len(opt.param_groups) == 1
    _assert_no_duplicates(opt)
    assert trainable(model) == [n for n in TINY_PARAMS if not n.startswith("stem")]


def test_unfreezer_overlapping_stages_add_each_parameter_once():
    model, opt = _frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, {1: "layer1", 2: "layer1.3", 3: ["layer2", "fc"]})
    unfreezer.step(1)
    assert unfreezer.step(2) == [] and len(opt.param_groups) == 3
    unfreezer.step(3)
    assert len(opt.param_groups) == 4
    assert params_by_id(opt.param_groups[-1]["params"]).keys() == params_by_id(model.layer2.parameters()).keys()
    _assert_no_duplicates(opt)


def test_unfreezer_through_data_parallel():
    model, opt = _frozen_setup()
    unfreezer = StagedUnfreezer(nn.DataParallel(model), opt, {1: "module.layer2"})
    assert unfreezer.step(1) == [n for n in TINY_PARAMS if n.startswith("layer2.")]
    assert params_by_id(opt.param_groups[-1]["params"]).keys() == params_by_id(model.layer2.parameters()).keys()


def _train_step(model, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 8, 8, generator=g)
    y = torch.randint(0, 5, (4,), generator=g)
    opt.zero_grad()
    F.cross_entropy(model.train()(x), y).backward()
    opt.step()


def test_unfreezer_state_dict_round_trip():
    model, opt = _frozen_setup(seed=0)
    unfreezer = StagedUnfreezer(model, opt, SCHEDULE, lr=2e-3)
    for epoch in range(2):
        unfreezer.step(epoch)
        _train_step(model, opt, seed=epoch)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), unfreezer.state_dict()))
    assert saved[2] == {"epoch": 1, "applied": [0]}

    model2, opt2 = _frozen_setup(seed=123)  # as at the start, different init
    unfreezer2 = StagedUnfreezer(model2, opt2, SCHEDULE, lr=2e-3)
    model2.load_state_dict(saved[0])
    unfreezer2.load_state_dict(saved[2])
    opt2.load_state_dict(saved[1])

    assert flags(model2) == flags(model)
    assert (unfreezer2.epoch, unfreezer2.applied) == (1, [0])
    assert len(opt2.param_groups) == len(opt.param_groups) == 3
    def describe_groups(o):
        return [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in o.param_groups]

    assert describe_groups(opt2) == describe_groups(opt)
    names = {id(p): n for n, p in model.named_parameters()}
    names2 = {id(p): n for n, p in model2.named_parameters()}
    for g1, g2 in zip(opt.param_groups, opt2.param_groups):
        assert [names[id(p)] for p in g1["params"]] == [names2[id(p)] for p in g2["params"]]
        for p1, p2 in zip(g1["params"], g2["params"]):
            s1, s2 = opt.state[p1], opt2.state[p2]
            assert s1.keys() == s2.keys() and s1, names[id(p1)]
            for key in s1:
                torch.testing.assert_close(s2[key], s1[key])

    # both continue identically: the next stage, one more step
    assert unfreezer.step() == unfreezer2.step()
    assert describe_groups(opt2) == describe_groups(opt)
    _train_step(model, opt, seed=7)
    _train_step(model2, opt2, seed=7)
    for (name, p1), p2 in zip(model.state_dict().items(), model2.state_dict().values()):
        torch.testing.assert_close(p2, p1, msg=name)


def test_unfreezer_errors():
    model, opt = _frozen_setup()
    with pytest.raises(TypeError, match=re.escape("optimizer must be a torch.optim.Optimizer: list (optimizer)")):
        StagedUnfreezer(model, [], {1: "layer2"})
    with pytest.raises(TypeError, match=re.escape("schedule entry must be a Stage or epoch -> patterns: 5 (schedule)")):
        StagedUnfreezer(model, opt, [5])
    with pytest.raises(ValueError, match=re.escape("stage epoch must be an int >= 0: -1 (schedule)")):
        StagedUnfreezer(model, opt, {-1: "layer2"})
    with pytest.raises(ValueError, match=re.escape("stage epoch must be an int >= 0: True (schedule)")):
        StagedUnfreezer(model, opt, [Stage(True, ("layer2",))])
    with pytest.raises(ValueError, match=re.escape("stage at epoch 1 names no module (schedule)")):
        StagedUnfreezer(model, opt, {1: []})
    with pytest.raises(PatternError, match=r"pattern matches no module: 'layer9' \(schedule\[2\]\); closest: layer"):
        StagedUnfreezer(model, opt, {1: "layer2", 2: "layer9"})
    assert len(opt.param_groups) == 2 and trainable(model) == ["fc.weight", "fc.bias"]


def test_unfreezer_load_state_dict_errors():
    model, opt = _frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, {1: "layer2"})
    with pytest.raises(ValueError, match=re.escape("not a StagedUnfreezer state dict: {'epoch': 3} (state)")):
        unfreezer.load_state_dict({"epoch": 3})
    with pytest.raises(ValueError, match=re.escape("stage index out of range: 1 (state['applied'])")):
        unfreezer.load_state_dict({"epoch": 3, "applied": [1]})


# --- inference() --------------------------------------------------------------------------------------


def test_inference_sets_eval_and_inference_mode_and_restores_mixed_flags():
    model = TinyCNN().train()
    model.layer1.eval()
    model.stem[1].eval()
    before = [m.training for m in model.modules()]
    assert len(set(before)) == 2
    with inference(model) as inner:
        assert inner is model
        assert not any(m.training for m in model.modules())
        assert torch.is_inference_mode_enabled()
        out = model(torch.randn(2, 3, 8, 8))
    assert out.is_inference() and not out.requires_grad
    assert [m.training for m in model.modules()] == before
    assert not torch.is_inference_mode_enabled()


def test_inference_does_not_update_batchnorm_stats():
    model = TinyCNN().train()
    before = model.stem[1].running_mean.clone()
    with inference(model):
        model(torch.randn(2, 3, 8, 8))
    assert torch.equal(model.stem[1].running_mean, before)


def test_inference_restores_flags_after_an_exception():
    model = TinyCNN().train()
    model.layer2.eval()
    before = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with inference(model):
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()


def test_inference_mode_false_gives_no_grad():
    model = TinyCNN().train()
    with inference(model, inference_mode=False):
        assert not torch.is_inference_mode_enabled()
        assert not torch.is_grad_enabled()
        assert not model.training
        out = model(torch.randn(2, 3, 8, 8))
    assert not out.is_inference() and not out.requires_grad
    assert model.training and torch.is_grad_enabled()


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
    model, opt = _frozen_setup()
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
    model, opt = _frozen_setup()
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


# --- input checks added with the fixes above ------------------------------------------------------


def test_stage_accepts_a_single_pattern_string():
    assert Stage(1, "layer4").patterns == ("layer4",)


def test_param_groups_rejects_missing_and_nan_lr():
    model = TinyCNN()
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0: None \(lr\)"):
        param_groups(model, None)
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0: nan \(lr\)"):
        param_groups(model, float("nan"))


def test_trainable_report_rejects_a_bad_depth():
    with pytest.raises(ValueError, match=r"depth must be a positive int: 0 \(depth\)"):
        trainable_report(TinyCNN(), depth=0)


def test_freeze_batchnorm_refuses_layers_without_running_stats():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"cannot freeze BatchNorm2d\(4\): it keeps no running statistics \(track_running_stats=False\): `1` \(patterns\)"):
        freeze_batchnorm(model)
    assert isinstance(model[1], nn.BatchNorm2d)


def test_staged_unfreezer_group_names_drop_wrapper_prefixes():
    model = nn.DataParallel(TinyCNN())
    freeze(model)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    unfreezer = StagedUnfreezer(model, optimizer, {0: "module.fc"})
    unfreezer.step(0)
    assert optimizer.param_groups[-1]["name"] == "unfreeze:fc"
