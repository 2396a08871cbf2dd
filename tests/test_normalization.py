"""Tests for tlaudit.normalization: expected_normalization, find_normalization(s), Normalization.matches."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms as v1
from torch import nn
from torchvision.models import ResNet50_Weights, ViT_B_16_Weights
from torchvision.transforms import InterpolationMode, v2

from tlaudit.normalization import Normalization, expected_normalization, find_normalization, find_normalizations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def summary(n: Normalization) -> tuple:
    return (n.mean, n.std, n.crop_size, n.resize_size, n.interpolation)


# --- expected_normalization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (ResNet50_Weights.IMAGENET1K_V1, (IMAGENET_MEAN, IMAGENET_STD, 224, 256, "bilinear")),
        (ResNet50_Weights.IMAGENET1K_V2, (IMAGENET_MEAN, IMAGENET_STD, 224, 232, "bilinear")),
        (ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1, (IMAGENET_MEAN, IMAGENET_STD, 384, 384, "bicubic")),
    ],
)
def test_from_weights_enum(weights, expected):
    n = expected_normalization(weights)
    assert summary(n) == expected
    assert n.source == str(weights)


def test_from_weights_names():
    assert expected_normalization("ResNet50_Weights.IMAGENET1K_V1") == expected_normalization(
        ResNet50_Weights.IMAGENET1K_V1
    )
    default = expected_normalization("ResNet50_Weights.DEFAULT")
    assert summary(default) == (IMAGENET_MEAN, IMAGENET_STD, 224, 232, "bilinear")
    assert default.source == "ResNet50_Weights.IMAGENET1K_V2"  # DEFAULT is an alias of V2


@pytest.mark.parametrize("name", ["nonsense", "ResNet50_Weights.NOPE", "NoSuch_Weights.IMAGENET1K_V1"])
def test_unknown_weights_name(name):
    with pytest.raises(
        ValueError,
        match=re.escape(f"unknown weights name: {name!r} (weights); expected e.g. 'ResNet50_Weights.IMAGENET1K_V2'"),
    ) as info:
        expected_normalization(name)
    assert info.value.__cause__ is not None  # chained from torchvision's own error


def test_from_plain_mapping():
    n = expected_normalization({"mean": [0.5] * 3, "std": torch.tensor([0.25, 0.25, 0.25]), "crop_size": 192})
    assert summary(n) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 192, None, None)
    assert n.source == "mapping"
    full = expected_normalization(
        {
            "mean": 0.5,
            "std": 0.5,
            "crop_size": (160, 160),
            "resize_size": [176],
            "interpolation": InterpolationMode.NEAREST,
        }
    )
    assert summary(full) == ((0.5,), (0.5,), 160, 176, "nearest")


TIMM_CFG = {
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "input_size": (3, 224, 224),
    "crop_pct": 0.875,
    "interpolation": "bicubic",
}


def test_from_timm_pretrained_cfg_mapping():
    n = expected_normalization(TIMM_CFG)
    assert summary(n) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 224, 256, "bicubic")
    assert n.source == "pretrained_cfg"


def test_from_timm_cfg_object():
    cfg = SimpleNamespace(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(3, 288, 288), crop_pct=1.0, interpolation="bilinear"
    )
    n = expected_normalization(cfg)
    assert summary(n) == (IMAGENET_MEAN, IMAGENET_STD, 288, 288, "bilinear")
    assert n.source == "SimpleNamespace"


class _TimmLike(nn.Module):
    def __init__(self, attribute: str = "pretrained_cfg") -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        setattr(self, attribute, dict(TIMM_CFG))


@pytest.mark.parametrize("attribute", ["pretrained_cfg", "default_cfg"])
def test_from_module_with_pretrained_cfg(attribute):
    n = expected_normalization(_TimmLike(attribute))
    assert summary(n) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 224, 256, "bicubic")
    assert n.source == "_TimmLike.pretrained_cfg"


def test_module_without_pretrained_cfg():
    with pytest.raises(ValueError, match=r"^model has no pretrained_cfg: Linear \(weights\); pass the weights enum"):
        expected_normalization(nn.Linear(2, 2))


def test_mapping_without_mean_or_std():
    message = "mapping needs 'mean' and 'std' keys: ['crop_size', 'mean'] (weights)"
    with pytest.raises(ValueError, match=re.escape(message)):
        expected_normalization({"mean": [0.5] * 3, "crop_size": 224})
    with pytest.raises(ValueError, match=re.escape("mapping needs 'mean' and 'std' keys: [] (weights)")):
        expected_normalization({})


def test_mapping_with_bad_values():
    with pytest.raises(ValueError, match=re.escape("weights['mean'] is empty (weights['mean'])")):
        expected_normalization({"mean": [], "std": [0.5]})
    message = "weights['std'] must be a sequence of numbers: 'abc' (weights['std'])"
    with pytest.raises(ValueError, match=re.escape(message)):
        expected_normalization({"mean": [0.5], "std": "abc"})


@pytest.mark.parametrize("weights", [42, None, [0.5, 0.5]])
def test_unsupported_weights_type(weights):
    with pytest.raises(
        TypeError, match=re.escape(f"cannot read a normalization from {type(weights).__name__}: {weights!r} (weights)")
    ):
        expected_normalization(weights)


# --- find_normalization(s) ----------------------------------------------------------------------------


def test_find_in_v1_nested_compose():
    pipeline = v1.Compose(
        [
            v1.Resize(256),
            v1.CenterCrop(224),
            v1.Compose([v1.PILToTensor(), v1.Normalize([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])]),
        ]
    )
    n = find_normalization(pipeline)
    assert (n.mean, n.std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert n.source.startswith("Normalize(")


def test_find_in_v2_nested_compose_and_random_apply():
    pipeline = v2.Compose(
        [
            v2.RandomResizedCrop(224),
            v2.RandomApply([v2.ColorJitter(0.2)], p=0.5),
            v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.RandomApply([v2.Normalize([0.5] * 3, [0.2] * 3)])]),
        ]
    )
    n = find_normalization(pipeline)
    assert (n.mean, n.std) == ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))


def test_find_in_v1_random_apply():
    n = find_normalization(v1.RandomApply([v1.Normalize([0.3], [0.7])], p=1.0))
    assert (n.mean, n.std) == ((0.3,), (0.7,))


def test_find_in_random_apply_of_a_sequential_module():
    n = find_normalization(v1.RandomApply(nn.Sequential(v1.Normalize([0.3] * 3, [0.7] * 3)), p=1.0))
    assert (n.mean, n.std) == ((0.3,) * 3, (0.7,) * 3)


def test_find_in_nn_sequential():
    pipeline = nn.Sequential(v2.Resize(64), nn.Sequential(v2.CenterCrop(56), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)))
    n = find_normalization(pipeline)
    assert (n.mean, n.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_find_in_plain_list():
    assert find_normalization([v2.Resize(64), v2.Normalize([0.5], [0.5])]).mean == (0.5,)


@pytest.mark.parametrize("module", [v1, v2], ids=["v1", "v2"])
def test_find_in_random_apply_with_module_list(module):
    pipeline = module.RandomApply(nn.ModuleList([module.Normalize([0.5] * 3, [0.5] * 3)]), p=0.5)
    assert find_normalization(pipeline) is not None  # today: None


def test_find_in_weights_preset_transform():
    preset = ResNet50_Weights.IMAGENET1K_V2.transforms()
    n = find_normalization(preset)
    assert summary(n) == summary(expected_normalization(ResNet50_Weights.IMAGENET1K_V2))
    assert n.source == "ImageClassification"
    nested = find_normalization(v2.Compose([v2.RandomHorizontalFlip(), preset]))
    assert summary(nested) == summary(n)


@pytest.mark.parametrize(
    "pipeline",
    [
        None,
        v2.Compose([v2.Resize(256), v2.ToDtype(torch.float32, scale=True)]),
        v1.Compose([v1.Resize(256), v1.PILToTensor()]),
        nn.Sequential(),
        [],
        v2.Lambda(lambda x: x),
    ],
    ids=["None", "v2", "v1", "empty-sequential", "empty-list", "lambda"],
)
def test_no_normalization(pipeline):
    assert find_normalization(pipeline) is None
    assert find_normalizations(pipeline) == []


def test_find_normalizations_lists_double_normalization_in_order():
    pipeline = v2.Compose(
        [
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.RandomHorizontalFlip(),
            v2.Compose([v2.RandomApply([v2.Normalize([0.5] * 3, [0.5] * 3)])]),
        ]
    )
    found = find_normalizations(pipeline)
    assert [(n.mean, n.std) for n in found] == [(IMAGENET_MEAN, IMAGENET_STD), ((0.5,) * 3, (0.5,) * 3)]
    assert find_normalization(pipeline) == found[0]


def test_preset_followed_by_normalize_is_double():
    pipeline = v2.Compose([ResNet50_Weights.IMAGENET1K_V1.transforms(), v2.Normalize([0.5] * 3, [0.5] * 3)])
    found = find_normalizations(pipeline)
    assert [n.mean for n in found] == [IMAGENET_MEAN, (0.5, 0.5, 0.5)]
    assert found[0].crop_size == 224 and found[1].crop_size is None


# --- Normalization ------------------------------------------------------------------------------------


def test_matches_within_tolerance():
    a = Normalization(IMAGENET_MEAN, IMAGENET_STD)
    b = Normalization((0.4855, 0.456, 0.406), IMAGENET_STD)
    assert a.matches(b) and b.matches(a)
    assert not a.matches(b, tol=1e-4)
    assert not a.matches(Normalization(IMAGENET_MEAN, (0.229, 0.224, 0.5)))
    assert not a.matches(Normalization((0.5, 0.5, 0.5), IMAGENET_STD))


def test_matches_broadcasts_one_channel_values():
    one = Normalization((0.5,), (0.25,))
    three = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert one.matches(three) and three.matches(one)
    assert not one.matches(Normalization((0.5, 0.5, 0.6), (0.25, 0.25, 0.25)))
    mixed = Normalization((0.5,), (0.25, 0.25, 0.25))
    assert mixed.matches(three)


def test_matches_different_channel_counts():
    assert not Normalization((0.5, 0.5), (0.5, 0.5)).matches(Normalization((0.5,) * 3, (0.5,) * 3))


def test_matches_ignores_sizes_and_source():
    a = Normalization(IMAGENET_MEAN, IMAGENET_STD, crop_size=224, source="x")
    b = Normalization(IMAGENET_MEAN, IMAGENET_STD, crop_size=384, interpolation="bicubic", source="y")
    assert a.matches(b)


def test_normalization_to_dict_is_json():
    n = expected_normalization(ResNet50_Weights.IMAGENET1K_V2)
    data = n.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "crop_size": 224,
        "resize_size": 232,
        "interpolation": "bilinear",
        "source": "ResNet50_Weights.IMAGENET1K_V2",
        "crop_pct": None,
        "crop_mode": None,
        "on_device": False,
    }


def test_normalization_is_frozen():
    n = Normalization((0.5,), (0.5,))
    with pytest.raises(AttributeError):
        n.mean = (0.1,)
