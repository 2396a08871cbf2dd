"""The checks of ``tlaudit/auditing/checks/data.py``: normalization, input-range, label-range.

What they watch: that the inputs are normalized as the weights expect and the labels are in range.
For each check ID, the setups that must trigger it (``TRIGGERS``) next to the setups that must not
(``CLEAN``); ``tests/auditing/checks/_cases.py`` turns the tables into tests.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms as v1
from torchvision.transforms import v2

import tlaudit
from tests.support import field_cases as fc
from tests.support.cases import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NC,
    RESNET18_WEIGHTS,
    Case,
    make,
    model,
    normalized,
    pixels,
    size_of,
)
from tests.support.check_cases import case_tests

TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


# -- normalization ---------------------------------------------------------------------------------


def _norm_setup(transform: Any, weights: Any = RESNET18_WEIGHTS) -> tlaudit.TransferSetup:
    return make(model("resnet18"), weights=weights, transform=transform)


def nz_v1_wrong_mean_std() -> tlaudit.TransferSetup:
    return _norm_setup(v1.Compose([v1.Resize(72), v1.CenterCrop(64), v1.ToTensor(), v1.Normalize([0.5] * 3, [0.5] * 3)]))


def nz_v2_wrong_mean_std() -> tlaudit.TransferSetup:
    return _norm_setup(v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.25] * 3)]))


def nz_v1_none() -> tlaudit.TransferSetup:
    return _norm_setup(v1.Compose([v1.Resize(72), v1.CenterCrop(64), v1.ToTensor()]))


def nz_v2_none() -> tlaudit.TransferSetup:
    return _norm_setup(v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]))


def nz_v2_double() -> tlaudit.TransferSetup:
    norm = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return _norm_setup(v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), norm, v2.Compose([norm])]))


def nz_v1_double() -> tlaudit.TransferSetup:
    return _norm_setup(v1.Compose([v1.ToTensor(), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD)]))


def nz_preset_with_other_stats() -> tlaudit.TransferSetup:
    return _norm_setup(RESNET18_WEIGHTS.transforms(), weights={"mean": [0.5] * 3, "std": [0.5] * 3})


def nz_clean_preset() -> tlaudit.TransferSetup:
    return _norm_setup(RESNET18_WEIGHTS.transforms())


def nz_clean_v2() -> tlaudit.TransferSetup:
    return _norm_setup(
        v2.Compose(
            [
                v2.ToImage(),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        ),
        weights="ResNet18_Weights.IMAGENET1K_V1",
    )


def nz_clean_v1_nested() -> tlaudit.TransferSetup:
    return _norm_setup(v1.Compose([v1.Compose([v1.Resize(72), v1.ToTensor()]), v1.Compose([v1.Normalize(IMAGENET_MEAN, IMAGENET_STD)])]))


def nz_clean_vit_preset() -> tlaudit.TransferSetup:
    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    return make(model("vit_tiny"), size_of("vit_tiny"), weights=weights, transform=weights.transforms())


# Pipelines the reader cannot parse step by step: measured on constant images.


def _standardize(mean: Any, std: Any) -> Any:
    mean, std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return lambda x: (x - mean) / std


def _lambda_pipeline(mean: Any, std: Any) -> Any:
    return v1.Compose([v1.Resize(72), v1.RandomCrop(64), v1.RandomHorizontalFlip(), v1.ToTensor(), v1.Lambda(_standardize(mean, std))])


class Standardize:
    """A hand-written transform, as tutorials write them: uint8 CHW tensor in, normalized float out."""

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return (F.interpolate(image[None].float(), size=64)[0] / 255 - self.mean) / self.std


def nz_lambda_wrong_stats() -> tlaudit.TransferSetup:
    return _norm_setup(_lambda_pipeline([0.5] * 3, [0.5] * 3))


def nz_custom_class_wrong_stats() -> tlaudit.TransferSetup:
    return _norm_setup(Standardize([0.5, 0.4, 0.3], [0.2] * 3))


def nz_lambda_right_stats() -> tlaudit.TransferSetup:
    return _norm_setup(_lambda_pipeline(IMAGENET_MEAN, IMAGENET_STD))


def nz_custom_class_right_stats() -> tlaudit.TransferSetup:
    return _norm_setup(Standardize(IMAGENET_MEAN, IMAGENET_STD))


def nz_timm_create_transform() -> tlaudit.TransferSetup:
    timm = pytest.importorskip("timm")
    config = timm.data.resolve_data_config({}, model=timm.create_model("resnet18", pretrained=False))
    return _norm_setup(timm.data.create_transform(**config))  # holds timm's MaybeToTensor: measured


# Inception v3 rebuilt by hand: torchvision's builder turns transform_input on with these weights.
INCEPTION_WEIGHTS = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1


def _inception(transform_input: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=transform_input)
    tlaudit.replace_head(m, NC)
    return m


def nz_inception_transform_input_off() -> tlaudit.TransferSetup:
    return make(_inception(False), 80, weights=INCEPTION_WEIGHTS, transform=INCEPTION_WEIGHTS.transforms())


def nz_inception_transform_input_off_no_transform() -> tlaudit.TransferSetup:
    return make(_inception(False), 80, weights=INCEPTION_WEIGHTS)


def nz_inception_transform_input_with_other_stats() -> tlaudit.TransferSetup:
    half = {"mean": [0.5] * 3, "std": [0.5] * 3}
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(**half)])
    return make(_inception(True), 80, weights=half, transform=transform)


def nz_inception_transform_input_on() -> tlaudit.TransferSetup:
    return make(_inception(True), 80, weights=INCEPTION_WEIGHTS, transform=INCEPTION_WEIGHTS.transforms())


TRIGGERS["normalization"] = [
    Case(
        "v1-wrong-mean-std",
        nz_v1_wrong_mean_std,
        r"^the transform normalizes with mean \[0\.5, 0\.5, 0\.5\], std \[0\.5, 0\.5, 0\.5\]; the weights "
        r"\(ResNet18_Weights\.IMAGENET1K_V1\) expect mean \[0\.485, 0\.456, 0\.406\], std \[0\.229, 0\.224, 0\.225\] "
        r"\(a typical pixel moves by 0\.74 of the weights' normalized units\)$",
        count=1,
    ),
    Case(
        "v2-wrong-mean-std",
        nz_v2_wrong_mean_std,
        r"normalizes with mean \[0\.5, 0\.5, 0\.5\], std \[0\.25, 0\.25, 0\.25\]",
        count=1,
    ),
    Case(
        "v1-no-normalize",
        nz_v1_none,
        r"^the transform applies no normalization; the weights expect mean \[0\.485, 0\.456, 0\.406\]",
        count=1,
    ),
    Case("v2-no-normalize", nz_v2_none, r"^the transform applies no normalization", count=1),
    Case("v2-double", nz_v2_double, r"^the transform normalizes 2 times \(double normalization\)$", count=1),
    Case("v1-double", nz_v1_double, r"^the transform normalizes 2 times \(double normalization\)$", count=1),
    Case(
        "preset-vs-other-weights",
        nz_preset_with_other_stats,
        r"normalizes with mean \[0\.485, 0\.456, 0\.406\].*the weights \(mapping\) expect mean \[0\.5, 0\.5, 0\.5\]",
        count=1,
    ),
    Case(
        "lambda-wrong-stats",
        nz_lambda_wrong_stats,
        r"^the transform normalizes with mean \[0\.5, 0\.5, 0\.5\], std \[0\.5, 0\.5, 0\.5\] \(measured on constant "
        r"images, a PIL image\); the weights \(ResNet18_Weights\.IMAGENET1K_V1\) expect mean \[0\.485",
        count=1,
    ),
    Case(
        "custom-class-wrong-stats",
        nz_custom_class_wrong_stats,
        r"normalizes with mean \[0\.5, 0\.4, 0\.3\], std \[0\.2, 0\.2, 0\.2\] "
        r"\(measured on constant images, a uint8 CHW tensor\)",
        count=1,
    ),
    Case(
        "inception-transform-input-off",
        nz_inception_transform_input_off,
        r"^`Inception3` has `transform_input=False`, but torchvision builds it with `transform_input=True` for "
        r"Inception_V3_Weights\.IMAGENET1K_V1: the weights see input normalized with ImageNet's mean/std",
        count=1,
    ),
    Case(
        "inception-transform-input-off-without-transform",
        nz_inception_transform_input_off_no_transform,
        r"^`Inception3` has `transform_input=False`",
        count=1,
    ),
    Case(
        "inception-transform-input-on-with-other-stats",
        nz_inception_transform_input_with_other_stats,
        r"^`Inception3` has `transform_input=True`, which re-normalizes input from ImageNet's mean/std, but the "
        r"weights \(mapping\) expect mean \[0\.5, 0\.5, 0\.5\], std \[0\.5, 0\.5, 0\.5\]$",
        count=1,
    ),
]
CLEAN["normalization"] = [
    Case("weights-transforms", nz_clean_preset),
    Case("v2-compose-right-normalize", nz_clean_v2),
    Case("v1-nested-compose", nz_clean_v1_nested),
    Case("vit-preset", nz_clean_vit_preset),
    Case("lambda-right-stats", nz_lambda_right_stats),
    Case("custom-class-right-stats", nz_custom_class_right_stats),
    Case("timm-create-transform", nz_timm_create_transform),
    Case("inception-transform-input-on", nz_inception_transform_input_on),
]


def _returns_a_pil_image(image: Any) -> Any:
    return image.resize((64, 64))


def _raises_on_every_input(image: Any) -> Any:
    raise RuntimeError("no such file: labels.csv")


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (
            v1.Compose([v1.Resize(72), v1.Lambda(_returns_a_pil_image)]),
            r"^the transform could not be read \(`Lambda`\) or measured: "
            r"on a PIL image, it returns Image, not a float tensor$",
        ),
        (
            _raises_on_every_input,
            r"^the transform could not be read \(`_raises_on_every_input`\) or measured: on a PIL image, it raises "
            r"RuntimeError: no such file: labels\.csv; on a uint8 CHW tensor, it raises RuntimeError: .*; on a float "
            r"0\.\.1 CHW tensor, it raises RuntimeError: .*; on a uint8 HWC array as image=, it raises RuntimeError: "
            r"no such file: labels\.csv$",
        ),
    ],
    ids=["returns-a-pil-image", "raises-on-every-input"],
)
def test_normalization_skips_a_transform_it_can_neither_read_nor_measure(transform: Any, reason: str) -> None:
    """Where neither the steps nor the measurement tell, the check is skipped with the reason, not an error."""
    report = tlaudit.audit(_norm_setup(transform), select=["normalization"])
    assert report.checks_run == () and report.findings == ()
    [skipped] = report.skipped
    assert skipped.check == "normalization" and re.search(reason, skipped.reason), skipped


def test_normalization_skips_without_transform_where_the_model_has_no_flag() -> None:
    report = tlaudit.audit(make(model("resnet18"), weights=RESNET18_WEIGHTS), select=["normalization"])
    assert [(s.check, s.reason) for s in report.skipped] == [("normalization", "no `transform` given")]


def test_transform_input_finding_stands_when_the_transform_cannot_be_measured() -> None:
    setup = make(_inception(False), 80, weights=INCEPTION_WEIGHTS, transform=_raises_on_every_input)
    report = tlaudit.audit(setup, select=["normalization"])
    assert report.checks_run == ("normalization",) and report.skipped == ()
    assert [f.subject for f in report.findings] == ["transform_input"]


# -- input-range -----------------------------------------------------------------------------------


def ir_unit_pixels() -> tlaudit.TransferSetup:
    return make(model("resnet18"), sample=pixels())


def ir_byte_pixels() -> tlaudit.TransferSetup:
    return make(model("resnet18"), sample=(pixels() * 255).round())


def ir_double_normalized() -> tlaudit.TransferSetup:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return make(model("efficientnet_b0"), sample=(normalized() - mean) / std)


def ir_clean_normalized() -> tlaudit.TransferSetup:
    return make(model("resnet18"))


def ir_clean_preset_transform() -> tlaudit.TransferSetup:
    from PIL import Image

    image = Image.fromarray((pixels(96)[0].permute(1, 2, 0).numpy() * 255).astype("uint8"))
    sample = torch.stack([RESNET18_WEIGHTS.transforms(crop_size=64, resize_size=72)(image)] * 2)
    return make(model("densenet121"), sample=sample)


TRIGGERS["input-range"] = [
    Case(
        "unit-pixels",
        ir_unit_pixels,
        r"^the sample looks like 0\.\.1 pixels, not normalized: range \[0(\.\d+)?, (0\.\d+|1)\]",
        count=1,
    ),
    Case(
        "byte-pixels",
        ir_byte_pixels,
        r"^the sample looks like 0\.\.255 pixels, not normalized: range \[\d+, \d+\]",
        count=1,
    ),
    Case(
        "double-normalized",
        ir_double_normalized,
        r"^the sample's statistics are far from a normalized input's .*doubly normalized\?$",
        count=1,
    ),
]
CLEAN["input-range"] = [
    Case("normalized", ir_clean_normalized),
    Case("preset-transform", ir_clean_preset_transform),
]


# -- label-range -----------------------------------------------------------------------------------


def lb_one_based() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=torch.tensor([1, NC]))


def lb_negative() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"), targets=torch.tensor([-1, 2]))


def lb_one_hot_wrong_columns() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=F.one_hot(torch.tensor([0, 3]), NC - 1).float())


def lb_clean() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=torch.tensor([0, NC - 1]))


def lb_clean_ignore_index() -> tlaudit.TransferSetup:
    return make(model("resnet18"), targets=torch.tensor([-100, 3]))


def lb_clean_one_hot() -> tlaudit.TransferSetup:
    return make(model("squeezenet1_1"), targets=F.one_hot(torch.tensor([0, 4]), NC).float())


TRIGGERS["label-range"] = [
    Case(
        "one-based",
        lb_one_based,
        r"^targets range over \[1, 5\], outside \[0, 5\) \(num_classes\): e\.g\. \[5\]$",
        count=1,
    ),
    Case(
        "negative",
        lb_negative,
        r"^targets range over \[-1, 2\], outside \[0, 5\) \(num_classes\): e\.g\. \[-1\]$",
        count=1,
    ),
    Case(
        "one-hot-wrong-columns",
        lb_one_hot_wrong_columns,
        r"^soft/one-hot targets have 4 columns, expected num_classes 5$",
        count=1,
    ),
]
CLEAN["label-range"] = [
    Case("in-range", lb_clean),
    Case("ignore-index", lb_clean_ignore_index),
    Case("one-hot", lb_clean_one_hot),
]


# -- the tests -------------------------------------------------------------------------------------


# -- the rest of the field: detection, presets, heavy augmentation, graded statistics ----------------
TRIGGERS["normalization"] += [
    Case(
        "detection-normalized-twice",
        fc.det_normalized_twice,
        r"^the input is normalized 2 times \(double normalization, once in `transform` \(GeneralizedRCNNTransform\) "
        r"inside the model\)$",
        count=1,
    ),
    Case("cifar-statistics-error", fc.stats_cifar, r"a typical pixel moves by 0\.32 of the weights' normalized units", count=1),
    Case(
        "std-12-percent-off-warning",
        fc.stats_slightly_off,
        r"moves by 0\.1\d of the weights' normalized units",
        severity="warning",
        count=1,
    ),
    Case(
        "tiny-imagenet-statistics-info",
        fc.stats_tiny_imagenet,
        r"^the transform normalizes with mean \[0\.4802, 0\.4481, 0\.3975\].*moves by 0\.0[45]",
        severity="info",
        count=1,
    ),
]
CLEAN["normalization"] += [
    Case("detection-tutorial-no-normalize", fc.det_tutorial),
    Case("detection-backbone-classification-weights", fc.det_classification_backbone_weights),
    Case("segmentation-preset-transform", fc.seg_preset_transform),
    Case("timm-randaugment-randomerasing", fc.timm_heavy_augmentation),
]
TRIGGERS["input-range"] += [
    Case(
        "detection-normalized-sample",
        fc.det_normalized_sample,
        r"^the sample looks normalized already, but the model normalizes inside",
        count=1,
    ),
]
CLEAN["input-range"] += [Case("detection-pixels", fc.det_tutorial)]
TRIGGERS["label-range"] += [
    Case(
        "segmentation-255-loss-without-ignore-index",
        lambda: fc.seg_setup(None),
        r"^targets range over \[0, 255\], outside \[0, 3\)",
        count=1,
    ),
    Case(
        "segmentation-255-ignored-by-the-loss",
        fc.seg_setup,
        r"^per-pixel targets hold \[255\] outside \[0, 3\): the train step's loss ran on them without error",
        severity="info",
        count=1,
    ),
]


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)
