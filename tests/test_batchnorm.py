"""Tests for tlaudit.batchnorm: the batchnorm= modes of freeze, FrozenBatchNorm, freeze_batchnorm, eval_frozen_batchnorm."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tests.support.helpers import TINY_PARAMS, TinyCNN, build_torchvision, build_torchvision_meta, trainable
from tlaudit import (
    BatchNormMode,
    FrozenBatchNorm,
    PatternError,
    eval_frozen_batchnorm,
    freeze,
    freeze_backbone,
    freeze_batchnorm,
    unfreeze,
)

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
    with pytest.raises(ValueError, match=re.escape("invalid batchnorm: 'freeze' (batchnorm); expected one of 'keep', 'frozen'")):
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


# --- input checks -------------------------------------------------------------------------------------


def test_freeze_batchnorm_refuses_layers_without_running_stats():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(
        ValueError, match=r"cannot freeze BatchNorm2d\(4\): it keeps no running statistics \(track_running_stats=False\): `1` \(patterns\)"
    ):
        freeze_batchnorm(model)
    assert isinstance(model[1], nn.BatchNorm2d)
