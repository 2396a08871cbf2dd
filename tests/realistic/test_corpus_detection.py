"""Detection fine-tuning transcribed from torchvision's "TorchVision Object Detection Finetuning
Tutorial" (https://pytorch.org/tutorials/intermediate/torchvision_tutorial.html) and its docs.

Adapted everywhere: ``weights=None, weights_backbone=None``; the ResNet-50 FPN backbone is built
with ``resnet_fpn_backbone(..., norm_layer=FrozenBatchNorm2d, trainable_layers=3)``, which is what
the builders do when weights are given; images are 2 crops of 64x64 with ``min_size=64,
max_size=96``; the targets (a list of dicts) live in the train step, as in the tutorial's loop.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.ops import misc as misc_nn_ops
from torchvision.transforms import v2 as T

import tlaudit
from tests.realistic.corpus import assert_correct, assert_named, rows
from tests.support import field_cases
from tlaudit.examples._common import pixels, pretend_pretrained

SIZE = {"min_size": 64, "max_size": 96}
FRCNN_WEIGHTS = torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.DEFAULT
MRCNN_WEIGHTS = torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.DEFAULT


def tutorial_transform(train: bool) -> T.Compose:
    """The tutorial's ``get_transform``: no Normalize, the model normalizes inside."""
    steps: list[Any] = []
    if train:
        steps.append(T.RandomHorizontalFlip(0.5))
    steps += [T.ToDtype(torch.float, scale=True), T.ToPureTensor()]
    return T.Compose(steps)


def detection_targets(n: int, label: int = 1, masks: bool = False) -> list[dict[str, torch.Tensor]]:
    targets = []
    for i in range(n):
        t = {"boxes": torch.tensor([[4.0 + i, 6.0, 40.0, 50.0]]), "labels": torch.tensor([label])}
        if masks:
            m = torch.zeros(1, 64, 64, dtype=torch.uint8)
            m[:, 6:50, 4 + i : 40] = 1
            t["masks"] = m
        targets.append(t)
    return targets


def tutorial_step(targets: list[dict[str, torch.Tensor]]) -> Any:
    """``train_one_epoch``: the loss dict in training mode, summed."""

    def step(model: nn.Module, images: torch.Tensor, _labels: torch.Tensor, optimizer: Any) -> None:
        model.train()
        loss_dict = model(list(images), targets)
        losses = sum(loss for loss in loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()

    return step


def tutorial_predict(model: nn.Module, images: torch.Tensor) -> Any:
    model.eval()
    with torch.no_grad():
        return model(list(images))


def tutorial_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=0.0005)


def backbone50() -> nn.Module:
    return resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d, trainable_layers=3)


def setup_for(
    model: nn.Module, num_classes: int, weights: Any, targets: list[dict[str, torch.Tensor]], **extra: Any
) -> tlaudit.TransferSetup:
    optimizer = tutorial_optimizer(model)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=num_classes,
        sample=pixels(2, 64),
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1),
        weights=weights,
        transform=tutorial_transform(True),
        train_step=tutorial_step(targets),
        predict=tutorial_predict,
        **extra,
    )


# Tutorial, "1 - Finetuning from a pretrained model": the box predictor replaced for
# 1 class (person) + background.
def faster_rcnn_box_predictor() -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    model = FasterRCNN(backbone50(), num_classes=91, **SIZE)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, 2)
    return setup_for(model, 2, FRCNN_WEIGHTS, detection_targets(2))


# Tutorial, "An Instance segmentation model for PennFudan Dataset": box and mask predictors.
def mask_rcnn_predictors() -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    model = MaskRCNN(backbone50(), num_classes=91, **SIZE)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, 2)
    in_features_mask = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(in_features_mask, 256, 2)
    return setup_for(model, 2, MRCNN_WEIGHTS, detection_targets(2, masks=True))


# Tutorial, "2 - Modifying the model to add a different backbone": mobilenet_v2().features with
# ``out_channels = 1280``, one feature map, AnchorGenerator and MultiScaleRoIAlign.
def mobilenet_backbone() -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    backbone = pretend_pretrained(torchvision.models.mobilenet_v2(weights=None)).features
    backbone.out_channels = 1280
    anchor_generator = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    roi_pooler = torchvision.ops.MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    model = FasterRCNN(backbone, num_classes=2, rpn_anchor_generator=anchor_generator, box_roi_pool=roi_pooler, **SIZE)
    return setup_for(model, 2, "MobileNet_V2_Weights.IMAGENET1K_V1", detection_targets(2))


# torchvision's detection docs: ``fasterrcnn_mobilenet_v3_large_fpn`` built for a new number of
# classes directly (num_classes counts the background).
def fasterrcnn_mobilenet_v3_num_classes() -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=4, **SIZE)
    pretend_pretrained(model)
    return setup_for(model, 4, "FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT", detection_targets(2, label=3))


# RetinaNet fine-tuned by swapping the classification head, the pattern of torchvision's own
# ``retinanet_resnet50_fpn_v2`` builder: ``RetinaNetClassificationHead(in_channels, num_anchors,
# num_classes)`` (torchvision/models/detection/retinanet.py).
def retinanet_classification_head() -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50",
        weights=None,
        norm_layer=misc_nn_ops.FrozenBatchNorm2d,
        trainable_layers=3,
        returned_layers=[2, 3, 4],
        extra_blocks=torchvision.ops.feature_pyramid_network.LastLevelP6P7(256, 256),
    )
    model = RetinaNet(backbone, num_classes=91, **SIZE)
    num_anchors = model.head.classification_head.num_anchors
    model.head.classification_head = RetinaNetClassificationHead(256, num_anchors, 3)
    return setup_for(model, 3, "RetinaNet_ResNet50_FPN_Weights.COCO_V1", detection_targets(2, label=2))


# torchvision's detection references, SSDlite320-MobileNetV3-Large
# (https://github.com/pytorch/vision/blob/main/references/detection/README.md): ``--weights-backbone
# MobileNet_V3_Large_Weights.IMAGENET1K_V1 --lr 0.15 --weight-decay 0.00004``, cosine annealing, the
# whole detector trained. Adapted: weights=None, two 64x64 images resized by the model to 320.
def ssdlite_reference_recipe() -> tlaudit.TransferSetup:
    return field_cases.det_ssdlite_recipe()


# The SSDlite head swap as torchvision's builder makes the head
# (https://github.com/pytorch/vision/blob/main/torchvision/models/detection/ssdlite.py):
# ``SSDLiteClassificationHead(in_channels, num_anchors, num_classes, norm_layer)`` for 3 classes on
# the COCO detector, fine-tuned at the tutorial's SGD 0.005.
def ssdlite_classification_head() -> tlaudit.TransferSetup:
    return field_cases.detection_setup(field_cases.ssdlite(3), weights="SSDLite320_MobileNet_V3_Large_Weights.COCO_V1")


CORRECT: dict[str, Any] = {
    "tv-references-ssdlite-recipe": ssdlite_reference_recipe,
    "tv-ssdlite-classification-head": ssdlite_classification_head,
    "tv-detection-tutorial-faster-rcnn-box-predictor": faster_rcnn_box_predictor,
    "tv-detection-tutorial-mask-rcnn-predictors": mask_rcnn_predictors,
    "tv-detection-tutorial-mobilenet-v2-backbone": mobilenet_backbone,
    "tv-detection-docs-mobilenet-v3-fpn-num-classes": fasterrcnn_mobilenet_v3_num_classes,
    "tv-retinanet-classification-head": retinanet_classification_head,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_correct_source_audits_without_errors(build: Any) -> None:
    assert_correct(build)


# -- the sources' own bugs -----------------------------------------------------------------------


# The tutorial: "num_classes = 2  # 1 class (person) + background"; torchvision's docs: "number
# of output classes of the model (including the background)". The common bug counts only the
# objects: 3 object classes labelled 1..3 but a predictor with 3 outputs.
def box_predictor_without_background() -> tlaudit.TransferSetup:
    torch.manual_seed(0)
    model = FasterRCNN(backbone50(), num_classes=91, **SIZE)
    model.roi_heads.box_predictor = FastRCNNPredictor(model.roi_heads.box_predictor.cls_score.in_features, 3)
    return setup_for(model, 4, FRCNN_WEIGHTS, detection_targets(2, label=3))


# Inference with the model left in training mode: torchvision raises "targets should be passed"
# in training mode; the tutorial calls ``model.eval()`` first.
def predict_in_training_mode() -> tlaudit.TransferSetup:
    def predict(model: nn.Module, images: torch.Tensor) -> Any:
        with torch.no_grad():
            return model(list(images))

    return faster_rcnn_box_predictor().replace(predict=predict)


# The same fine-tune with the COCO classification head kept (91 classes) for a 3-class dataset: the
# builder's docs, "num_classes (int, optional): number of output classes of the model (including the
# background)". Source: https://github.com/pytorch/vision/blob/main/torchvision/models/detection/ssdlite.py
def ssdlite_coco_head_kept() -> tlaudit.TransferSetup:
    return field_cases.detection_setup(field_cases.ssdlite(None), weights="SSDLite320_MobileNet_V3_Large_Weights.COCO_V1")


BUGGY: dict[str, Any] = {
    "tv-ssdlite-coco-head-kept": (ssdlite_coco_head_kept, "head-size", "head.classification_head"),
    "tv-detection-box-predictor-without-background": (box_predictor_without_background, "head-size", "cls_score"),
    "tv-detection-predict-in-training-mode": (predict_in_training_mode, "eval-mode", "training mode"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_sources_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
