"""Setups from the rest of the field for the check tables: detection, segmentation, linear probes
under ``torch.no_grad()``, heavy augmentation and dataset statistics.

Real torchvision/timm models, ``weights=None`` (and ``weights_backbone=None``), tiny inputs:
detection models at ``min_size=64, max_size=96`` on two 64x64 images, segmentation on 64x64 masks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision import transforms as v1
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.transforms import v2

import tlaudit
from tests.support.cases import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNET18_WEIGHTS,
    make,
    model,
    normalized,
    pixels,
)

FRCNN_WEIGHTS = "FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT"
SEG_WEIGHTS = torchvision.models.segmentation.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1


# -- detection ---------------------------------------------------------------------------------


def detector(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, min_size=64, max_size=96
    )


def detection_step(model: nn.Module, images: torch.Tensor, _labels: torch.Tensor, optimizer: Any) -> None:
    """The detection tutorial's step: targets are boxes and labels, the loss a dict."""
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])} for _ in images]
    model.train()
    losses = sum(model(list(images), targets).values())
    optimizer.zero_grad()
    losses.backward()
    optimizer.step()


def detection_setup(m: nn.Module, num_classes: int = 3, **fields: Any) -> tlaudit.TransferSetup:
    fields.setdefault("optimizer", torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.005))
    fields.setdefault("weights", FRCNN_WEIGHTS)
    return tlaudit.TransferSetup(model=m, num_classes=num_classes, sample=pixels(64), train_step=detection_step, **fields)


def tutorial_transform() -> v2.Compose:
    return v2.Compose([v2.RandomHorizontalFlip(0.5), v2.ToDtype(torch.float, scale=True), v2.ToPureTensor()])


def det_tutorial() -> tlaudit.TransferSetup:
    """The detection tutorial: no Normalize, the model normalizes inside (GeneralizedRCNNTransform)."""
    return detection_setup(detector(), transform=tutorial_transform())


def det_classification_backbone_weights() -> tlaudit.TransferSetup:
    """A detector declared with its backbone's classification weights: ImageNet's statistics, applied inside."""
    return detection_setup(detector(), weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1", transform=tutorial_transform())


def det_normalized_twice() -> tlaudit.TransferSetup:
    transform = v2.Compose([v2.ToDtype(torch.float, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return detection_setup(detector(), transform=transform)


def det_normalized_sample() -> tlaudit.TransferSetup:
    return detection_setup(detector()).replace(sample=normalized(64))


def det_predictor_without_background() -> tlaudit.TransferSetup:
    m = detector()
    m.roi_heads.box_predictor = FastRCNNPredictor(m.roi_heads.box_predictor.cls_score.in_features, 2)
    return detection_setup(m, num_classes=3)


def det_retinanet(num_classes: int = 3) -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    m = torchvision.models.detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, min_size=64, max_size=96
    )
    return detection_setup(m, num_classes=3, weights="RetinaNet_ResNet50_FPN_Weights.COCO_V1")


def ssdlite(num_classes: int | None = 3) -> nn.Module:
    """SSDlite320-MobileNetV3 with its classification head replaced for ``num_classes`` (None: the COCO
    head kept), as torchvision's builder makes the head
    (https://github.com/pytorch/vision/blob/main/torchvision/models/detection/ssdlite.py)."""
    from functools import partial

    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssdlite import SSDLiteClassificationHead

    torch.manual_seed(0)
    m = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    if num_classes is not None:
        channels = det_utils.retrieve_out_channels(m.backbone, (320, 320))
        anchors = m.anchor_generator.num_anchors_per_location()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        m.head.classification_head = SSDLiteClassificationHead(channels, anchors, num_classes, norm)
    return m


def det_ssdlite_recipe(weights: str = "MobileNet_V3_Large_Weights.IMAGENET1K_V1") -> tlaudit.TransferSetup:
    """torchvision's SSDlite recipe (https://github.com/pytorch/vision/blob/main/references/detection/README.md):
    ``--weights-backbone MobileNet_V3_Large_Weights.IMAGENET1K_V1 --lr 0.15 --weight-decay 0.00004``, all
    layers trained, SGD with momentum 0.9 and cosine annealing."""
    torch.manual_seed(0)
    m = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    optimizer = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.15, momentum=0.9, weight_decay=0.00004)
    return detection_setup(m, num_classes=91, weights=weights, optimizer=optimizer)


def det_predict_in_training_mode() -> tlaudit.TransferSetup:
    def predict(m: nn.Module, images: torch.Tensor) -> Any:
        with torch.no_grad():
            return m(list(images))

    return det_tutorial().replace(predict=predict)


# -- segmentation ------------------------------------------------------------------------------


def masks(classes: int = 3) -> torch.Tensor:
    y = (torch.arange(64).view(1, 1, 64) // 22).expand(2, 64, 64).clone() % classes
    y[:, :2] = 255
    return y.long()


def segmenter() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)


def seg_step(ignore_index: int | None) -> Any:
    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: Any) -> None:
        m.train()
        out = m(x)["out"]
        loss = F.cross_entropy(out, y, ignore_index=ignore_index) if ignore_index is not None else F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def seg_setup(ignore_index: int | None = 255, **fields: Any) -> tlaudit.TransferSetup:
    m = segmenter()
    fields.setdefault("targets", masks())
    return make(m, num_classes=3, optimizer=torch.optim.Adam(m.parameters(), lr=1e-4), train_step=seg_step(ignore_index), **fields)


def seg_preset_transform() -> tlaudit.TransferSetup:
    """The weights' SemanticSegmentation preset as transform: read, not "no normalization"."""
    return make(segmenter(), num_classes=3, targets=masks().clamp(max=2), weights=SEG_WEIGHTS, transform=SEG_WEIGHTS.transforms())


def seg_without_targets() -> tlaudit.TransferSetup:
    """No targets given: the default step's synthesized labels do not fit (N, C, H, W) logits."""
    m = segmenter()
    return tlaudit.TransferSetup(model=m, num_classes=3, sample=normalized(64), optimizer=torch.optim.Adam(m.parameters(), lr=1e-4))


# -- linear probes under torch.no_grad() --------------------------------------------------------


class NoGradProbe(nn.Module):
    """DINO/lightly/Lightning-style linear evaluation: the backbone under no_grad, requires_grad left True."""

    def __init__(self) -> None:
        super().__init__()
        resnet = model("resnet18")
        self.backbone = nn.Sequential(*list(resnet.children())[:-1])
        self.fc = nn.Linear(512, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.backbone(x).flatten(1)
        return self.fc(features)


def probe_no_grad(**fields: Any) -> tlaudit.TransferSetup:
    m = NoGradProbe()
    return make(m, num_classes=2, optimizer=torch.optim.SGD(m.fc.parameters(), lr=0.01), **fields)


def probe_no_grad_head_left_out() -> tlaudit.TransferSetup:
    """The same probe with an optimizer built over nothing but the backbone: the head's gradients are lost."""
    m = NoGradProbe()
    return make(m, num_classes=2, optimizer=torch.optim.SGD(m.backbone.parameters(), lr=1e-3))


# -- dataset statistics --------------------------------------------------------------------------


def stats(mean: tuple[float, ...], std: tuple[float, ...]) -> tlaudit.TransferSetup:
    transform = v1.Compose([v1.RandomCrop(64, padding=4), v1.ToTensor(), v1.Normalize(mean, std)])
    return make(model("resnet18"), weights=RESNET18_WEIGHTS, transform=transform)


def stats_tiny_imagenet() -> tlaudit.TransferSetup:
    return stats((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))


def stats_slightly_off() -> tlaudit.TransferSetup:
    """ImageNet's mean with a std 12% too wide: a typical pixel moves by about 0.15 units."""
    return stats((0.485, 0.456, 0.406), (0.26, 0.25, 0.25))


def stats_cifar() -> tlaudit.TransferSetup:
    return stats((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


def timm_heavy_augmentation() -> tlaudit.TransferSetup:
    import timm.data

    transform = timm.data.create_transform(
        64, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel", mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    return make(model("resnet18"), weights=RESNET18_WEIGHTS, transform=transform)
