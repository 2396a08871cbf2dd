"""Tests for tlaudit.normalization: expected_normalization, find_normalization(s), Normalization.matches."""

from __future__ import annotations

import json
import random
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
import torchvision.transforms as v1
from torch import nn
from torchvision.models import ResNet50_Weights, ViT_B_16_Weights
from torchvision.transforms import InterpolationMode, v2

from tlaudit.auditing.assertions import assert_normalization
from tlaudit.auditing.rules.normalization import compare_normalization, expects_transform_input
from tlaudit.auditing.rules.probing import UnreadableNormalization, measure_normalization, opaque_steps, read_normalizations
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
    assert expected_normalization("ResNet50_Weights.IMAGENET1K_V1") == expected_normalization(ResNet50_Weights.IMAGENET1K_V1)
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
    cfg = SimpleNamespace(mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(3, 288, 288), crop_pct=1.0, interpolation="bilinear")
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
    with pytest.raises(
        ValueError, match=r"^model has no pretrained_cfg: Linear \(weights\), and no preprocessor_config.json .*; pass the weights enum"
    ):
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
    with pytest.raises(TypeError, match=re.escape(f"cannot read a normalization from {type(weights).__name__}: {weights!r} (weights)")):
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
    ],
    ids=["None", "v2", "v1", "empty-sequential", "empty-list"],
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


# --- pipelines the reader cannot parse: opaque_steps, measure_normalization, read_normalizations --------


def _standardize(mean, std):
    mean, std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return lambda x: (x - mean) / std


class Standardize:
    """A hand-written transform that takes uint8 CHW tensors only."""

    def __init__(self, mean, std):
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __call__(self, image):
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 tensor, got {type(image).__name__}")
        return (image.float() / 255 - self.mean) / self.std


def _stats(n: Normalization) -> tuple:
    return tuple(round(v, 4) for v in n.mean), tuple(round(v, 4) for v in n.std)


def test_opaque_steps_names_what_cannot_be_read():
    def to_float(x):
        return x / 255

    pipeline = v2.Compose(
        [
            v2.Resize(64),
            v2.RandomApply([v2.Lambda(to_float)]),
            nn.Sequential(v2.CenterCrop(56)),
            Standardize([0.5] * 3, [0.5] * 3),
        ]
    )
    assert opaque_steps(pipeline) == ["Lambda", "Standardize"]
    assert opaque_steps(to_float) == ["test_opaque_steps_names_what_cannot_be_read.<locals>.to_float"]
    assert opaque_steps(v1.Compose([v1.Lambda(to_float)])) == ["Lambda"]


@pytest.mark.parametrize(
    "pipeline",
    [
        None,
        ResNet50_Weights.IMAGENET1K_V2.transforms(),
        v1.Compose([v1.RandomResizedCrop(64), v1.ColorJitter(0.4), v1.ToTensor(), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD)]),
        v2.Compose([v2.ToImage(), v2.RandomChoice([v2.RandomHorizontalFlip(), v2.RandAugment()]), v2.ToDtype(torch.float32, scale=True)]),
        [v2.Resize(64), nn.Sequential(v2.CenterCrop(32))],
    ],
    ids=["None", "preset", "v1", "v2-random-choice", "list"],
)
def test_opaque_steps_none_in_torchvision_pipelines(pipeline):
    assert opaque_steps(pipeline) == []


@pytest.mark.parametrize(
    "pipeline",
    [
        v1.Compose([v1.Resize(300), v1.CenterCrop(224), v1.ToTensor(), v1.Lambda(_standardize(IMAGENET_MEAN, IMAGENET_STD))]),
        v1.Compose(
            [
                v1.RandomResizedCrop(224),
                v1.RandomHorizontalFlip(),
                v1.RandomVerticalFlip(),
                v1.ToTensor(),
                v1.Lambda(_standardize(IMAGENET_MEAN, IMAGENET_STD)),
            ]
        ),
        v2.Compose(
            [
                v2.ToImage(),
                v2.RandomCrop(224, padding=16),  # zero padding at the border: the median ignores it
                v2.RandomRotation(10),
                v2.ToDtype(torch.float32, scale=True),
                v2.Lambda(_standardize(IMAGENET_MEAN, IMAGENET_STD)),
                v2.RandomErasing(p=1.0, value=0),
            ]
        ),
    ],
    ids=["resize-crop", "random-crop-flips", "pad-rotate-erase"],
)
def test_measure_through_resizes_crops_and_flips(pipeline):
    n = measure_normalization(pipeline)
    assert _stats(n) == (IMAGENET_MEAN, IMAGENET_STD)
    assert n.measured and n.source == "measured on constant images, a PIL image"


def test_measure_tries_the_input_kinds_in_turn():
    n = measure_normalization(Standardize([0.5, 0.4, 0.3], [0.2, 0.25, 0.5]), size=32)
    assert _stats(n) == ((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    assert n.source == "measured on constant images, a uint8 CHW tensor"
    standardize = _standardize([0.1] * 3, [0.3] * 3)

    def floats_only(x):
        if not x.is_floating_point():
            raise TypeError(f"expected a float tensor, got {x.dtype}")
        return standardize(x)

    floats = measure_normalization(floats_only, size=32)  # a PIL image and a uint8 tensor raise
    assert floats.source == "measured on constant images, a float 0..1 CHW tensor"
    assert _stats(floats) == ((0.1,) * 3, (0.3,) * 3)


def test_measure_one_channel():
    pipeline = v1.Compose([v1.ToTensor(), v1.Lambda(_standardize([0.25], [0.5]))])
    assert _stats(measure_normalization(pipeline, size=32, channels=1)) == ((0.25,), (0.5,))
    with pytest.raises(ValueError, match=re.escape("channels must be 1 or 3: 4 (channels)")):
        measure_normalization(pipeline, channels=4)


def test_measure_a_pipeline_without_normalization_is_the_identity():
    n = measure_normalization(v1.Compose([v1.Resize(64), v1.Lambda(v1.functional.to_tensor)]), size=64)
    assert n.is_identity and _stats(n) == ((0.0,) * 3, (1.0,) * 3)
    assert compare_normalization([n], expected_normalization(ResNet50_Weights.IMAGENET1K_V2)).kind == "missing"


@pytest.mark.parametrize(
    ("pipeline", "reason"),
    [
        (
            v1.Compose([v1.ColorJitter(brightness=0.4, saturation=0.4), v1.ToTensor(), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD)]),
            r"^on a PIL image, its output (is not affine in the input level|changes with the random seed)",
        ),
        (
            v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x * (0.5 + torch.rand(1)))]),
            r"^on a PIL image, its output changes with the random seed \(a random photometric step\?\)$",
        ),
        (
            v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x**2.2)]),
            r"^on a PIL image, its output is not affine in the input level \(a photometric step\?\)$",
        ),
        (
            v1.Compose([v1.Grayscale(3), v1.ToTensor()]),
            r"^on a PIL image, its output is not affine in the input level",
        ),
        (v1.Lambda(lambda image: image), r"^on a PIL image, it returns Image, not a float tensor$"),
        (
            v2.Compose([v2.ToImage(), v2.Lambda(lambda x: x)]),
            r"^on a PIL image, it returns a torch\.uint8 tensor, not a float tensor$",
        ),
        (
            v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x[:2])]),
            r"^on a PIL image, it returns shape \(2, 32, 32\), not 3 channels first$",
        ),
        (
            v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x.mean())]),
            r"^on a PIL image, it returns shape \(\), not 3 channels first$",
        ),
        (
            v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x * 0 + 1)]),
            r"^on a PIL image, its output does not depend on the input level$",
        ),
        (v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x / 0)]), r"^on a PIL image, it returns non-finite values$"),
        (
            v1.Lambda(lambda x: 1 / 0),
            r"^on a PIL image, it raises ZeroDivisionError: division by zero; on a uint8 CHW tensor, it raises "
            r"ZeroDivisionError: division by zero; on a float 0\.\.1 CHW tensor, it raises "
            r"ZeroDivisionError: division by zero; "
            r"on a uint8 HWC array as image=, it raises TypeError: .*unexpected keyword argument 'image'$",
        ),
    ],
    ids=[
        "color-jitter",
        "random-gain",
        "gamma",
        "grayscale",
        "pil-out",
        "uint8-out",
        "two-channels",
        "scalar",
        "constant",
        "non-finite",
        "raises",
    ],
)
def test_measure_rejects_what_it_cannot_tell(pipeline, reason):
    with pytest.raises(UnreadableNormalization, match=reason):
        measure_normalization(pipeline, size=32)


def test_measure_restores_the_random_states():
    np = pytest.importorskip("numpy")
    draws = []

    def random_gain(x):
        draws.append((torch.rand(1).item(), random.random(), np.random.rand()))
        return x

    pipeline = v1.Compose([v1.RandomHorizontalFlip(), v1.ToTensor(), v1.Lambda(random_gain), v1.Normalize([0.5] * 3, [0.5] * 3)])
    torch.manual_seed(1234), random.seed(1234), np.random.seed(1234)
    expected = (torch.rand(1).item(), random.random(), np.random.rand())
    torch.manual_seed(1234), random.seed(1234), np.random.seed(1234)
    assert _stats(measure_normalization(pipeline, size=32)) == ((0.5,) * 3, (0.5,) * 3)
    assert len(draws) == 5  # three levels under one seed, two under another: each run reseeded
    assert draws[0] == draws[1] == draws[2] and draws[3] == draws[4] != draws[0]
    assert (torch.rand(1).item(), random.random(), np.random.rand()) == expected


def test_measure_silences_the_pipeline_warnings():
    def warns(x):
        warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
        return (x - 0.5) / 0.5

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        n = measure_normalization(v1.Compose([v1.ToTensor(), v1.Lambda(warns)]), size=32)
    assert _stats(n) == ((0.5,) * 3, (0.5,) * 3)


def test_measure_a_timm_pipeline():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False)
    eval_pipeline = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    assert opaque_steps(eval_pipeline) == ["MaybeToTensor"]
    assert _stats(measure_normalization(eval_pipeline)) == (IMAGENET_MEAN, IMAGENET_STD)
    train = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model), is_training=True)
    with pytest.raises(UnreadableNormalization, match=r"^on a PIL image, its output"):  # timm's ColorJitter
        measure_normalization(train)
    [read] = read_normalizations(train)  # the Normalize read from the steps stands
    assert not read.measured and read.matches(Normalization(IMAGENET_MEAN, IMAGENET_STD))


def test_measure_an_albumentations_pipeline():
    A = pytest.importorskip("albumentations")
    pytest.importorskip("albumentations.pytorch")
    from albumentations.pytorch import ToTensorV2

    pipeline = A.Compose([A.Resize(64, 64), A.HorizontalFlip(), A.Normalize(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)), ToTensorV2()])
    assert opaque_steps(pipeline) == ["Compose"]
    n = measure_normalization(pipeline, size=64)
    assert _stats(n) == ((0.5, 0.4, 0.3), (0.2,) * 3)
    assert n.source == "measured on constant images, a uint8 HWC array as image="


def test_read_normalizations_reads_known_steps_without_measuring():
    pipeline = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    [n] = read_normalizations(pipeline)
    assert not n.measured and n.source.startswith("Normalize(")


def test_read_normalizations_reads_a_normalize_step_whatever_surrounds_it():
    """A Normalize step is evidence: read, not measured, next to opaque steps (timm's RandAugment and
    RandomErasing measure as an impossible negative std)."""
    timm_data = pytest.importorskip("timm.data")
    heavy = timm_data.create_transform(
        64, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel", mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    assert opaque_steps(heavy)
    [n] = read_normalizations(heavy, size=64)
    assert not n.measured and _stats(n) == (IMAGENET_MEAN, IMAGENET_STD)
    beside = v1.Compose([v1.ToTensor(), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD), v1.Lambda(lambda x: x)])
    assert [not n.measured for n in read_normalizations(beside, size=32)] == [True]
    without = read_normalizations(v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x)]), size=32)
    assert compare_normalization(without, expected_normalization(ResNet50_Weights.IMAGENET1K_V2)).kind == "missing"


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (lambda x: 1 - x, r"its estimate is not a normalization \(mean \[1\.0, 1\.0, 1\.0\], std \[-1\.0, -1\.0, -1\.0\]"),
        (lambda x: x / 1000, r"its estimate is not a normalization .*std \[1000\.0"),
    ],
    ids=["inverted", "rescaled"],
)
def test_measure_rejects_an_estimate_that_is_no_normalization(step, reason):
    with pytest.raises(UnreadableNormalization, match=reason):
        measure_normalization(v1.Compose([v1.ToTensor(), v1.Lambda(step)]), size=32)


def test_read_normalizations_cannot_tell():
    pipeline = v1.Compose([v1.Resize(64), v1.Lambda(lambda image: image.convert("L"))])
    with pytest.raises(
        UnreadableNormalization,
        match=r"^the transform could not be read \(`Lambda`\) or measured: "
        r"on a PIL image, it returns Image, not a float tensor$",
    ):
        read_normalizations(pipeline, size=32)


# --- compare_normalization and the identity ----------------------------------------------------------


def test_compare_treats_an_identity_as_no_normalization():
    expected = Normalization(IMAGENET_MEAN, IMAGENET_STD)
    identity = Normalization((0.0,) * 3, (1.0,) * 3, source="measured on constant images, a PIL image")
    mismatch = compare_normalization([identity], expected)
    assert mismatch.kind == "missing" and mismatch.found == (identity,)
    assert compare_normalization([identity, Normalization(IMAGENET_MEAN, IMAGENET_STD)], expected) is None
    assert compare_normalization([], Normalization((0.0,), (1.0,))) is None  # weights that take raw 0..1 pixels


# --- transform_input: torchvision's builders -----------------------------------------------------------


def _builders_turning_on_transform_input():
    import inspect

    import torchvision.models as tvm

    names = set()
    for module in (tvm, tvm.quantization):
        for name in tvm.list_models(module=module):
            builder = tvm.get_model_builder(name)
            if re.search(r'"transform_input",\s*True', inspect.getsource(builder)):
                names.add(tvm.get_model_weights(builder).__name__)
    return names


def test_expects_transform_input_follows_torchvision_builders():
    turned_on = _builders_turning_on_transform_input()
    assert turned_on == {"Inception_V3_Weights", "GoogLeNet_Weights", "Inception_V3_QuantizedWeights", "GoogLeNet_QuantizedWeights"}
    import torchvision.models as tvm

    for name in tvm.list_models(module=tvm):
        weights = tvm.get_model_weights(name)
        for member in weights:
            assert expects_transform_input(member) is (weights.__name__ in turned_on), member
    assert expects_transform_input("GoogLeNet_Weights.DEFAULT") is True
    assert expects_transform_input({"mean": [0.5] * 3, "std": [0.5] * 3}) is None
    assert expects_transform_input("not a weights name") is None


# --- assert_normalization applies the same rule --------------------------------------------------------


def test_assert_normalization_measures_a_lambda():
    right = v1.Compose([v1.Resize(256), v1.CenterCrop(224), v1.ToTensor(), v1.Lambda(_standardize(IMAGENET_MEAN, IMAGENET_STD))])
    assert_normalization(right, ResNet50_Weights.IMAGENET1K_V2)
    wrong = v1.Compose([v1.ToTensor(), v1.Lambda(_standardize([0.5] * 3, [0.5] * 3))])
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "tlaudit.assert_normalization: the transform normalizes with mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5] "
            "(measured on constant images, a PIL image); the weights (ResNet50_Weights.IMAGENET1K_V2) expect mean "
        ),
    ):
        assert_normalization(wrong, ResNet50_Weights.IMAGENET1K_V2)
    with pytest.raises(AssertionError, match=r"applies no normalization \(measured on constant images, a PIL image\)"):
        assert_normalization(v1.Compose([v1.ToTensor(), v1.Lambda(lambda x: x)]), ResNet50_Weights.IMAGENET1K_V2)


def test_assert_normalization_cannot_verify_what_it_can_neither_read_nor_measure():
    with pytest.raises(
        AssertionError,
        match=r"^tlaudit\.assert_normalization: cannot verify the normalization: the transform could not be read "
        r"\(`Lambda`\) or measured: on a PIL image, it returns Image, not a float tensor\nhint: normalize with",
    ):
        assert_normalization(v1.Lambda(lambda image: image), {"mean": [0.5] * 3, "std": [0.5] * 3})
