"""Classification fine-tuning transcribed from torchvision's and timm's own tutorials and docs.

Models are built with ``weights=None`` / ``pretrained=False`` and given pretrained-looking BatchNorm
statistics; inputs are 64x64 crops of real photographs (the sources use 224).
"""

from __future__ import annotations

from typing import Any

import pytest
import timm
import timm.data
import timm.optim
import torch
import torchvision
from torch import nn
from torchvision import transforms

import tlaudit
from tests.realistic.corpus import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    assert_correct,
    assert_named,
    eval_predict,
    images,
    labels,
    rows,
)
from tlaudit.examples._common import pretend_pretrained

TUTORIAL_TRAIN = transforms.Compose(
    [
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
)


def finetune_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: Any) -> None:
    """``train_model`` of the finetuning tutorial (without the Inception branch)."""
    model.train()
    optimizer.zero_grad()
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    optimizer.step()


def params_to_update(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
# ("Finetuning Torchvision Models"): initialize_model + set_parameter_requires_grad, feature_extract=True.
# Adapted: weights=None, 64px crops, 3 classes instead of 2.
def squeezenet_feature_extract() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.squeezenet1_0())
    for param in model.parameters():
        param.requires_grad = False
    model.classifier[1] = nn.Conv2d(512, 3, kernel_size=(1, 1), stride=(1, 1))
    model.num_classes = 3
    optimizer = torch.optim.SGD(params_to_update(model), lr=0.001, momentum=0.9)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=images(),
        targets=labels(classes=3),
        optimizer=optimizer,
        weights="SqueezeNet1_0_Weights.IMAGENET1K_V1",
        transform=TUTORIAL_TRAIN,
        strategy="feature_extraction",
        train_step=finetune_step,
        predict=eval_predict,
    )


# Same tutorial, densenet branch, feature_extract=False (fine-tune everything).
# Source: https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
def densenet_finetune() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.densenet121())
    model.classifier = nn.Linear(model.classifier.in_features, 3)
    optimizer = torch.optim.SGD(params_to_update(model), lr=0.001, momentum=0.9)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=images(),
        targets=labels(classes=3),
        optimizer=optimizer,
        weights="DenseNet121_Weights.IMAGENET1K_V1",
        transform=TUTORIAL_TRAIN,
        strategy="fine_tuning",
        train_step=finetune_step,
        predict=eval_predict,
    )


# Same tutorial, inception branch: AuxLogits.fc and fc replaced, input 299, the train loss
# ``loss1 + 0.4 * loss2`` over (outputs, aux_outputs). Adapted: batch 2, feature_extract=True.
# Source: https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
def inception_feature_extract() -> tlaudit.TransferSetup:
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)  # what weights= sets
    model = pretend_pretrained(model)
    for param in model.parameters():
        param.requires_grad = False
    model.AuxLogits.fc = nn.Linear(model.AuxLogits.fc.in_features, 2)
    model.fc = nn.Linear(model.fc.in_features, 2)
    optimizer = torch.optim.SGD(params_to_update(model), lr=0.001, momentum=0.9)

    def step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Any) -> None:
        m.train()
        opt.zero_grad()
        criterion = nn.CrossEntropyLoss()
        outputs, aux_outputs = m(x)
        loss = criterion(outputs, y) + 0.4 * criterion(aux_outputs, y)
        loss.backward()
        opt.step()

    return tlaudit.TransferSetup(
        model=model,
        num_classes=2,
        sample=images(2, 299),
        targets=labels(),
        optimizer=optimizer,
        weights="Inception_V3_Weights.IMAGENET1K_V1",
        strategy="feature_extraction",
        train_step=step,
        predict=eval_predict,
    )


# https://pytorch.org/vision/stable/models.html ("Using the pre-trained models"): the weights'
# own preset, ``preprocess = weights.transforms()``; EfficientNet's classifier[1] replaced.
def efficientnet_weights_preset() -> tlaudit.TransferSetup:
    weights = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1
    model = pretend_pretrained(torchvision.models.efficientnet_b0())
    model.classifier[1] = nn.Linear(model.classifier[1].in_features, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=4,
        sample=images(),
        targets=labels(classes=4),
        optimizer=optimizer,
        weights=weights,
        transform=weights.transforms(),
        train_step=finetune_step,
        predict=eval_predict,
    )


# torchvision's mobilenet_v3_small: the last classifier Linear replaced (classifier[3]), the
# features frozen with ``requires_grad_(False)`` (the autograd notes' way to freeze), the weights'
# own preset as transform.
# Source: https://pytorch.org/vision/stable/models/mobilenetv3.html
def mobilenet_v3_frozen_features() -> tlaudit.TransferSetup:
    weights = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    model = pretend_pretrained(torchvision.models.mobilenet_v3_small())
    model.features.requires_grad_(False)
    model.classifier[3] = nn.Linear(model.classifier[3].in_features, 5)
    optimizer = torch.optim.Adam(params_to_update(model), lr=1e-3)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=5,
        sample=images(),
        targets=labels(classes=5),
        optimizer=optimizer,
        weights=weights,
        transform=weights.transforms(),
        frozen=["features"],
        train_step=finetune_step,
        predict=eval_predict,
    )


# torchvision VisionTransformer: ``model.heads.head`` replaced. Adapted: a 1-layer ViT at 32px
# (vit_b_16 is 86M parameters); the weights enum still names ViT_B_16's ImageNet statistics.
# Source: https://pytorch.org/vision/stable/models/vision_transformer.html
def vit_heads_head() -> tlaudit.TransferSetup:
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64)
    model.heads.head = nn.Linear(model.heads.head.in_features, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=images(2, 32),
        targets=labels(classes=3),
        optimizer=optimizer,
        weights="ViT_B_16_Weights.IMAGENET1K_V1",
        train_step=finetune_step,
        predict=eval_predict,
    )


# https://huggingface.co/docs/timm/quickstart ("Fine-tune a pretrained model"):
# ``timm.create_model(name, pretrained=True, num_classes=N)`` and the model's own data config,
# ``create_transform(**resolve_model_data_config(model), is_training=True)``.
def timm_quickstart() -> tlaudit.TransferSetup:
    model = pretend_pretrained(timm.create_model("resnet18", pretrained=False, num_classes=4))
    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=4,
        sample=images(),
        targets=labels(classes=4),
        optimizer=optimizer,
        weights=model.pretrained_cfg,
        transform=transform,
        train_step=finetune_step,
        predict=eval_predict,
    )


# https://huggingface.co/docs/timm/feature_extraction ("reset_classifier"): a model's classifier
# reset for a new number of classes; timm.optim.create_optimizer_v2 with AdamW.
def timm_reset_classifier() -> tlaudit.TransferSetup:
    model = pretend_pretrained(timm.create_model("efficientnet_b0", pretrained=False))
    model.reset_classifier(6)
    optimizer = timm.optim.create_optimizer_v2(model, opt="adamw", lr=2e-4, weight_decay=0.05)
    config = timm.data.resolve_model_data_config(model)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=6,
        sample=images(),
        targets=labels(classes=6),
        optimizer=optimizer,
        weights=model.pretrained_cfg,
        transform=timm.data.create_transform(**config),
        train_step=finetune_step,
        predict=eval_predict,
    )


# timm ViT (pretrained_cfg mean/std 0.5) with its own data config: the timm docs' rule "use the
# model's pretrained_cfg". Adapted: vit_tiny at img_size 32.
# Source: https://huggingface.co/docs/timm/quickstart
def timm_vit_own_config() -> tlaudit.TransferSetup:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8)
    config = timm.data.resolve_model_data_config(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.05)
    x = (images(2, 32, normalize=False) - 0.5) / 0.5
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=x,
        targets=labels(classes=3),
        optimizer=optimizer,
        weights=model.pretrained_cfg,
        transform=timm.data.create_transform(**config, is_training=True),
        train_step=finetune_step,
        predict=eval_predict,
    )


# timm/utils/model.py ``freeze(root_module, submodules)``: the stem and first stage frozen,
# their BatchNorms converted to FrozenBatchNorm2d (include_bn_running_stats=True).
# Source: https://github.com/huggingface/pytorch-image-models/blob/main/timm/utils/model.py
def timm_utils_freeze() -> tlaudit.TransferSetup:
    from timm.utils.model import freeze

    model = pretend_pretrained(timm.create_model("resnet18", pretrained=False, num_classes=3))
    freeze(model, ["conv1", "bn1", "layer1"])
    optimizer = torch.optim.SGD(params_to_update(model), lr=0.01, momentum=0.9)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=images(),
        targets=labels(classes=3),
        optimizer=optimizer,
        weights=model.pretrained_cfg,
        frozen=["conv1", "layer1"],
        train_step=finetune_step,
        predict=eval_predict,
    )


CORRECT: dict[str, Any] = {
    "tv-finetuning-tutorial-squeezenet-feature-extract": squeezenet_feature_extract,
    "tv-finetuning-tutorial-densenet-finetune": densenet_finetune,
    "tv-finetuning-tutorial-inception-aux": inception_feature_extract,
    "tv-models-docs-efficientnet-weights-preset": efficientnet_weights_preset,
    "tv-mobilenet-v3-frozen-features": mobilenet_v3_frozen_features,
    "tv-vit-heads-head": vit_heads_head,
    "timm-quickstart-finetune": timm_quickstart,
    "timm-reset-classifier-create-optimizer": timm_reset_classifier,
    "timm-vit-own-data-config": timm_vit_own_config,
    "timm-utils-freeze": timm_utils_freeze,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_correct_source_audits_without_errors(build: Any) -> None:
    assert_correct(build)


# -- the sources' own bugs -----------------------------------------------------------------------


# A timm ViT (pretrained_cfg mean/std 0.5) fed ImageNet's mean/std by a hard-coded torchvision
# pipeline: timm's docs say to take the normalization from the model's pretrained_cfg
# (https://huggingface.co/docs/timm/quickstart, "resolve_model_data_config").
def timm_vit_with_imagenet_stats() -> tlaudit.TransferSetup:
    setup = timm_vit_own_config()
    pipeline = transforms.Compose([transforms.Resize(32), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return setup.replace(transform=pipeline)


# The finetuning tutorial's ``feature_extract=True`` with the head swapped BEFORE the freeze loop:
# the new classifier is frozen too (the tutorial creates the layer after the loop on purpose:
# "parameters of newly constructed modules have requires_grad=True by default").
# Source: https://pytorch.org/tutorials/beginner/finetuning_torchvision_models_tutorial.html
def squeezenet_head_frozen_by_loop() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.squeezenet1_0())
    model.classifier[1] = nn.Conv2d(512, 3, kernel_size=(1, 1), stride=(1, 1))
    for param in model.parameters():
        param.requires_grad = False
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=3,
        sample=images(),
        targets=labels(classes=3),
        optimizer=optimizer,
        weights="SqueezeNet1_0_Weights.IMAGENET1K_V1",
        train_step=finetune_step,
        predict=eval_predict,
    )


BUGGY: dict[str, Any] = {
    "timm-vit-imagenet-stats": (timm_vit_with_imagenet_stats, "normalization", "0.5"),
    "tv-finetuning-tutorial-head-before-freeze": (squeezenet_head_frozen_by_loop, "head-frozen", "classifier"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_sources_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
