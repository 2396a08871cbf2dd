"""Tests for tlaudit.freezing: freeze, unfreeze and freeze_backbone, also through wrappers."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tests.support.helpers import TINY_PARAMS, TinyCNN, build_torchvision_meta, flags, trainable
from tlaudit import (
    FrozenBatchNorm,
    HeadNotFoundError,
    PatternError,
    freeze,
    freeze_backbone,
    param_groups,
    trainable_report,
    unfreeze,
)


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
    assert freeze(model, "*.bn2") == [n for n, _ in model.named_parameters() if n.startswith(("layer3.", "layer4.")) and ".bn2." in n]
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
