"""Tests for tlaudit.surgery: find_heads, replace_head, remove_head, truncate."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tests.support.helpers import (
    ALL_TORCHVISION_MODELS,
    SLOW_MODELS,
    TiedHead,
    TinyCNN,
    WithGetClassifier,
    build_torchvision,
    build_torchvision_meta,
    conv_head_sequential,
    expected_heads,
    headless_sequential,
    linear_sequential,
    meta_input,
)
from tlaudit import HeadNotFoundError, describe, find_heads, freeze, remove_head, replace_head, truncate


def out_features(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def in_features(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def test_every_torchvision_builder_is_covered():
    assert len(ALL_TORCHVISION_MODELS) >= 80
    assert SLOW_MODELS < set(ALL_TORCHVISION_MODELS)
    for name in ALL_TORCHVISION_MODELS:
        expected_heads(name)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_MODELS else n for n in ALL_TORCHVISION_MODELS])
def test_head_surgery_on_every_torchvision_model(name):
    model = build_torchvision_meta(name).eval()
    heads = find_heads(model)
    assert heads == expected_heads(name)
    old = [model.get_submodule(head) for head in heads]
    kind = nn.Conv2d if name.startswith("squeezenet") else nn.Linear
    assert type(old[0]) is kind
    if kind is nn.Conv2d:
        assert old[0].kernel_size == (1, 1)
    feature_dim = in_features(old[0])

    assert replace_head(model, 7) is model
    new = [model.get_submodule(head) for head in heads]
    for head, before, after in zip(heads, old, new):
        assert after is not before and type(after) is type(before), head
        assert (in_features(after), out_features(after)) == (in_features(before), 7), head
        assert after.weight.is_meta and after.weight.requires_grad, head
    with torch.no_grad():
        assert model(meta_input(name)).shape == (2, 7)

    assert remove_head(model) == feature_dim
    assert isinstance(model.get_submodule(heads[0]), nn.Identity)
    for aux, replaced in zip(heads[1:], new[1:]):  # auxiliary heads are left alone
        assert model.get_submodule(aux) is replaced, aux
    with torch.no_grad():
        assert model(meta_input(name)).shape == (2, feature_dim)


def test_meta_fallback_builds_the_same_architecture_as_cpu():
    """The RegNets cannot be built under torch.device('meta'); the helper's fallback must not change them."""
    with pytest.raises(NotImplementedError):
        with torch.device("meta"):
            build_torchvision("regnet_x_400mf")
    meta = build_torchvision_meta("regnet_x_400mf")
    cpu = build_torchvision("regnet_x_400mf")
    assert all(t.is_meta for t in meta.state_dict().values())
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in cpu.state_dict().items()}


# --- real CPU forwards --------------------------------------------------------------------------------


def test_resnet18_cpu_replace_and_remove_head():
    torch.manual_seed(0)
    model = build_torchvision("resnet18").eval()
    x = torch.randn(2, 3, 32, 32)
    features = torch.flatten(truncate(model, "avgpool")(x), 1)
    replace_head(model, 7)
    assert model.fc.out_features == 7 and model.fc.in_features == 512
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert remove_head(model) == 512
        torch.testing.assert_close(model(x), features)


@pytest.mark.parametrize(("name", "feature_dim"), [("squeezenet1_1", 512), ("mobilenet_v3_small", 1024)])
def test_small_models_cpu_forward(name, feature_dim):
    model = build_torchvision(name).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert replace_head(model, 7)(x).shape == (2, 7)
        assert remove_head(model) == feature_dim
        assert model(x).shape == (2, feature_dim)


def test_squeezenet_head_is_a_1x1_conv_and_stays_one():
    model = build_torchvision_meta("squeezenet1_1")
    old = model.classifier[1]
    replace_head(model, 7)
    new = model.classifier[1]
    assert isinstance(new, nn.Conv2d) and new is not old
    assert (new.in_channels, new.out_channels, new.kernel_size, new.stride) == (512, 7, (1, 1), (1, 1))
    assert model.num_classes == 7  # SqueezeNet stores num_classes; it follows the new head


def test_googlenet_train_mode_aux_heads_cpu():
    torch.manual_seed(0)
    model = build_torchvision("googlenet")
    replace_head(model, 7)
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert type(out).__name__ == "GoogLeNetOutputs"
    assert out.logits.shape == (2, 7)
    assert out.aux_logits2.shape == (2, 7)
    assert out.aux_logits1.shape == (2, 7)


def test_googlenet_aux_false_replaces_only_the_main_head():
    model = build_torchvision("googlenet")
    aux1, aux2 = model.aux1.fc2, model.aux2.fc2
    replace_head(model, 7, aux=False)
    assert model.fc.out_features == 7
    assert model.aux1.fc2 is aux1 and model.aux2.fc2 is aux2
    out = model.train()(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 7)
    assert out.aux_logits1.shape == out.aux_logits2.shape == (2, 1000)


def test_inception_v3_train_mode_aux_head_cpu():
    torch.manual_seed(0)
    model = build_torchvision("inception_v3")
    replace_head(model, 7)
    assert (model.fc.out_features, model.AuxLogits.fc.out_features) == (7, 7)
    out = model.train()(torch.randn(2, 3, 299, 299))
    assert type(out).__name__ == "InceptionOutputs"
    assert out.logits.shape == (2, 7)
    assert out.aux_logits.shape == (2, 7)


def test_inception_v3_aux_false_on_meta():
    model = build_torchvision_meta("inception_v3")
    replace_head(model, 7, aux=False)
    assert (model.fc.out_features, model.AuxLogits.fc.out_features) == (7, 1000)


def test_googlenet_without_aux_logits_has_one_head():
    model = build_torchvision_meta("googlenet", aux_logits=False)
    assert find_heads(model) == ["fc"]


def test_vit_num_classes_attribute_follows_the_new_head():
    model = build_torchvision_meta("vit_b_16")
    replace_head(model, 7)
    assert model.num_classes == 7
    assert model.heads.head.out_features == 7


# --- replace_head keeps kind, dtype, device, bias -----------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_replace_head_keeps_dtype(dtype):
    model = TinyCNN().to(dtype)
    replace_head(model, 7)
    assert model.fc.weight.dtype == dtype and model.fc.bias.dtype == dtype
    assert model.fc.weight.device.type == "cpu"
    out = model(torch.randn(2, 3, 8, 8, dtype=dtype))
    assert out.shape == (2, 7) and out.dtype == dtype


def test_replace_head_keeps_meta_device():
    with torch.device("meta"):
        model = TinyCNN()
    replace_head(model, 7)
    assert model.fc.weight.is_meta
    assert model(torch.empty(2, 3, 8, 8, device="meta")).shape == (2, 7)


@pytest.mark.parametrize("bias", [True, False])
def test_replace_head_keeps_linear_bias_presence(bias):
    model = TinyCNN(head_bias=bias)
    replace_head(model, 7)
    assert (model.fc.bias is not None) is bias
    assert (model.fc.in_features, model.fc.out_features) == (8, 7)


@pytest.mark.parametrize("bias", [True, False])
def test_replace_head_keeps_conv_kind_and_bias(bias):
    model = conv_head_sequential(bias=bias)
    assert find_heads(model) == ["2"]
    replace_head(model, 7)
    head = model[2]
    assert isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1)
    assert (head.in_channels, head.out_channels) == (8, 7)
    assert (head.bias is not None) is bias
    assert model(torch.randn(2, 3, 6, 6)).shape == (2, 7)


def test_replace_head_new_layer_is_fresh_and_trainable():
    model = TinyCNN()
    freeze(model)
    old = model.fc
    replace_head(model, 5)
    assert model.fc is not old
    assert model.fc.weight.requires_grad and model.fc.bias.requires_grad
    assert not model.stem[0].weight.requires_grad  # the rest is untouched


def test_replace_head_updates_num_classes_attribute():
    model = TinyCNN(num_classes=5)
    replace_head(model, 9)
    assert model.num_classes == 9


def test_replace_head_with_explicit_head_name():
    model = WithGetClassifier(broken=True)  # the conventions pick `fc`, the user knows better
    assert find_heads(model) == ["fc"]
    replace_head(model, 7, head="logits")
    assert model.logits.out_features == 7
    assert model.fc.out_features == 6
    assert model(torch.randn(2, 3, 6, 6)).shape == (2, 7)


def test_remove_head_on_linear_sequential_and_conv_head():
    seq = linear_sequential()
    assert find_heads(seq) == ["3"]
    assert remove_head(seq) == 16
    assert seq(torch.randn(2, 3, 2, 2)).shape == (2, 16)
    conv = conv_head_sequential()
    assert remove_head(conv) == 8
    assert conv(torch.randn(2, 3, 6, 6)).shape == (2, 8)


def test_remove_head_with_explicit_head():
    model = WithGetClassifier()
    assert remove_head(model, head="logits") == 6
    assert isinstance(model.logits, nn.Identity)
    assert model(torch.randn(2, 3, 6, 6)).shape == (2, 6)


# --- find_heads rules ---------------------------------------------------------------------------------


def test_find_heads_on_helper_models():
    assert find_heads(TinyCNN()) == ["fc"]
    assert find_heads(TiedHead()) == ["fc"]
    assert find_heads(linear_sequential()) == ["3"]
    assert find_heads(conv_head_sequential()) == ["2"]


def test_find_heads_prefers_get_classifier():
    assert find_heads(WithGetClassifier()) == ["logits"]


def test_find_heads_falls_back_when_get_classifier_raises():
    assert find_heads(WithGetClassifier(broken=True)) == ["fc"]


class _AuxModel(nn.Module):
    """No conventional head attribute: main head = last Linear outside aux children; aux listed after."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.aux_branch = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
        self.out = nn.Linear(4, 3)


def test_find_heads_main_first_then_aux():
    assert find_heads(_AuxModel()) == ["out", "aux_branch.2"]


def test_find_heads_no_head_found():
    with pytest.raises(
        HeadNotFoundError,
        match=re.escape(
            "no classification head found: Sequential has no `fc`, `classifier`, `head` or `heads` child and no "
            "Linear or 1x1 Conv2d layer (model); pass head='<module name>' (top-level children: 0, 1, 2, 3, 4)"
        ),
    ):
        find_heads(headless_sequential())


def test_replace_head_no_head_found_suggests_head_argument():
    with pytest.raises(HeadNotFoundError, match=r"pass head='<module name>'"):
        replace_head(headless_sequential(), 3)
    with pytest.raises(HeadNotFoundError, match=r"no classification head found"):
        remove_head(headless_sequential())


@pytest.mark.parametrize("name", ["vit_b_16", "resnet18"])
def test_find_heads_after_remove_head_does_not_pick_a_backbone_layer(name):
    model = build_torchvision_meta(name)
    remove_head(model)
    with pytest.raises(
        HeadNotFoundError, match=r"holds no Linear or 1x1 Conv2d layer \((Identity|Sequential); removed\?\) \(model\); pass head="
    ):
        find_heads(model)


# --- errors -------------------------------------------------------------------------------------------


def test_bad_head_name_lists_closest_names():
    model = TinyCNN()
    with pytest.raises(HeadNotFoundError, match=re.escape("no module named 'fcc' (head); closest: fc; hint: use find_heads(model)")):
        replace_head(model, 3, head="fcc")
    with pytest.raises(HeadNotFoundError, match=r"no module named 'stem\.7' \(head\); closest: stem\.[0-2]"):
        remove_head(model, head="stem.7")


def test_bad_head_name_without_close_names_still_hints_find_heads():
    with pytest.raises(HeadNotFoundError, match=r"^no module named 'zzzzzz' \(head\); hint: use find_heads\(model\)$"):
        replace_head(TinyCNN(), 3, head="zzzzzz")


def test_empty_and_non_str_head():
    with pytest.raises(HeadNotFoundError, match=re.escape("no head named: [] (head)")):
        replace_head(TinyCNN(), 3, head=[])
    with pytest.raises(TypeError, match=re.escape("head must be a module name (str): 1 (head)")):
        replace_head(TinyCNN(), 3, head=[1])


def test_head_that_is_not_linear_or_conv():
    with pytest.raises(
        HeadNotFoundError,
        match=re.escape(
            "head is neither Linear nor Conv2d: `stem` is Sequential (head); pass head= naming the last Linear or 1x1 Conv2d layer"
        ),
    ):
        replace_head(TinyCNN(), 3, head="stem")
    with pytest.raises(HeadNotFoundError, match=r"head is neither Linear nor Conv2d: `pool` is AdaptiveAvgPool2d"):
        remove_head(TinyCNN(), head="pool")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "7", None])
def test_bad_num_classes(bad):
    model = TinyCNN()
    with pytest.raises(ValueError, match=re.escape(f"num_classes must be a positive int: {bad!r} (num_classes)")):
        replace_head(model, bad)
    assert model.fc.out_features == 5  # nothing changed


# --- wrappers -----------------------------------------------------------------------------------------


def test_data_parallel_names_have_no_prefix():
    model = TinyCNN()
    dp = nn.DataParallel(model)
    assert find_heads(dp) == ["fc"]
    assert replace_head(dp, 7) is dp
    assert model.fc.out_features == 7
    assert dp.eval()(torch.randn(2, 3, 8, 8)).shape == (2, 7)
    assert remove_head(dp) == 8
    assert isinstance(model.fc, nn.Identity)


def test_data_parallel_accepts_prefixed_head_name():
    model = WithGetClassifier(broken=True)
    replace_head(nn.DataParallel(model), 7, head="module.logits")
    assert model.logits.out_features == 7


def test_torch_compile_wrapper_names_have_no_prefix():
    model = TinyCNN()
    compiled = torch.compile(model)
    assert type(compiled).__name__ == "OptimizedModule"
    assert find_heads(compiled) == ["fc"]
    assert replace_head(compiled, 7) is compiled
    assert model.fc.out_features == 7
    assert replace_head(compiled, 4, head="_orig_mod.fc") is compiled
    assert model.fc.out_features == 4
    assert describe(compiled).heads == ("fc",)


def test_nested_wrappers():
    model = WithGetClassifier(broken=True)
    wrapped = nn.DataParallel(torch.compile(model))
    assert find_heads(wrapped) == ["fc"]
    assert remove_head(wrapped, head="module._orig_mod.logits") == 6
    assert isinstance(model.logits, nn.Identity)


# --- truncate -----------------------------------------------------------------------------------------


def test_truncate_top_level():
    model = TinyCNN().eval()
    part = truncate(model, "layer1")
    assert isinstance(part, nn.Sequential)
    assert [n for n, _ in part.named_children()] == ["stem", "layer1"]
    assert part.layer1 is model.layer1  # shares modules, no copy
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(part(x), model.layer1(model.stem(x)))


def test_truncate_dotted_path_into_sequential():
    model = TinyCNN().eval()
    part = truncate(model, "layer1.1")
    assert [n for n, _ in part.named_children()] == ["stem", "layer1"]
    assert [n for n, _ in part.layer1.named_children()] == ["0", "1"]
    assert part.layer1[1] is model.layer1[1]
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(part(x), model.layer1[1](model.layer1[0](model.stem(x))))


def test_truncate_vgg_features_on_meta():
    model = build_torchvision_meta("vgg16")
    part = truncate(model, "features.10")
    assert [n for n, _ in part.named_children()] == ["features"]
    assert len(part.features) == 11
    assert part(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 256, 56, 56)


def test_truncate_through_wrapper():
    model = TinyCNN()
    part = truncate(nn.DataParallel(model), "module.layer2")
    assert [n for n, _ in part.named_children()] == ["stem", "layer1", "layer2"]


def test_truncate_bad_name_lists_valid_names():
    with pytest.raises(
        KeyError,
        match=re.escape("no child named 'layer3' in TinyCNN (upto='layer3'); valid names: stem, layer1, layer2, pool, fc"),
    ):
        truncate(TinyCNN(), "layer3")
    with pytest.raises(KeyError, match=re.escape("no child named '9' in Sequential (upto='layer1.9'); valid names: 0, 1, 2, 3")):
        truncate(TinyCNN(), "layer1.9")


@pytest.mark.parametrize("bad", ["", 3, None])
def test_truncate_bad_type(bad):
    with pytest.raises(TypeError, match=re.escape(f"upto must be a child module name: {bad!r} (upto)")):
        truncate(TinyCNN(), bad)
