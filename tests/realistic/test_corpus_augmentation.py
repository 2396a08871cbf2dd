"""Heavy augmentation around Normalize, and dataset statistics, transcribed from public pipelines.

Every setup fine-tunes an ImageNet ResNet-18 (``weights=None`` with pretrained-looking BatchNorm
statistics) on 64x64 crops; what changes is the input pipeline the audit reads.
"""

from __future__ import annotations

from typing import Any

import pytest
import timm.data
import torch
import torchvision
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torchvision import transforms
from torchvision.transforms import v2

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

WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: Any) -> None:
    model.train()
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def with_pipeline(transform: Any, train_step: Any = step, classes: int = 4) -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Linear(512, classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
    return tlaudit.TransferSetup(
        model=model,
        num_classes=classes,
        sample=images(),
        targets=labels(classes=classes),
        optimizer=optimizer,
        weights=WEIGHTS,
        transform=transform,
        train_step=train_step,
        predict=eval_predict,
    )


# https://github.com/pytorch/vision/blob/main/references/classification/presets.py
# ClassificationPresetTrain(auto_augment_policy="ta_wide", random_erase_prob=0.1), v2 backend:
# TrivialAugmentWide before the tensor conversion, RandomErasing after Normalize.
def references_trivialaugment_v2() -> tlaudit.TransferSetup:
    return with_pipeline(
        v2.Compose(
            [
                v2.RandomResizedCrop(176, antialias=True),
                v2.RandomHorizontalFlip(0.5),
                v2.TrivialAugmentWide(interpolation=v2.InterpolationMode.BILINEAR),
                v2.PILToTensor(),
                v2.ToDtype(torch.float, scale=True),
                v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                v2.RandomErasing(p=0.1),
                v2.ToPureTensor(),
            ]
        )
    )


# The same presets with auto_augment_policy="ra" (RandAugment) and random_erase_prob=0.25, v1 API.
# Source: https://github.com/pytorch/vision/blob/main/references/classification/presets.py
def references_randaugment_v1() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(0.5),
                transforms.RandAugment(num_ops=2, magnitude=9),
                transforms.PILToTensor(),
                transforms.ConvertImageDtype(torch.float),
                transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                transforms.RandomErasing(p=0.25),
            ]
        )
    )


# https://pytorch.org/vision/stable/generated/torchvision.transforms.AutoAugment.html with the
# ImageNet policy, as the docs' "Illustration of transforms" gallery applies it.
def docs_autoaugment_imagenet() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.AutoAugment(transforms.AutoAugmentPolicy.IMAGENET),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
    )


# https://github.com/facebookresearch/moco/blob/main/main_moco.py ``--aug-plus`` (MoCo v2):
# ColorJitter inside RandomApply, RandomGrayscale, GaussianBlur, flip, then Normalize.
def moco_v2_aug_plus() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.RandomResizedCrop(224, scale=(0.2, 1.0)),
                transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                transforms.RandomGrayscale(p=0.2),
                transforms.RandomApply([transforms.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ]
        )
    )


# https://pytorch.org/vision/stable/generated/torchvision.transforms.AugMix.html before Normalize.
def docs_augmix() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.AugMix(),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
    )


# https://github.com/huggingface/pytorch-image-models/blob/main/train.py: create_transform with
# auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, re_mode="pixel", and the Mixup/CutMix
# function applied to each batch in the loop, with SoftTargetCrossEntropy.
def timm_train_randaugment_mixup() -> tlaudit.TransferSetup:
    transform = timm.data.create_transform(
        224,
        is_training=True,
        auto_augment="rand-m9-mstd0.5-inc1",
        re_prob=0.25,
        re_mode="pixel",
        interpolation="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    mixup_fn = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=4)
    train_loss_fn = SoftTargetCrossEntropy()

    def mixup_step(model: nn.Module, input: torch.Tensor, target: torch.Tensor, optimizer: Any) -> None:
        model.train()
        input, target = mixup_fn(input, target)
        loss = train_loss_fn(model(input), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return with_pipeline(transform, mixup_step)


# https://pytorch.org/vision/stable/auto_examples/transforms/plot_cutmix_mixup.html: CutMix or
# MixUp on the batch after the DataLoader, the soft labels into CrossEntropyLoss.
def docs_cutmix_mixup_v2() -> tlaudit.TransferSetup:
    cutmix_or_mixup = v2.RandomChoice([v2.CutMix(num_classes=4), v2.MixUp(num_classes=4)])
    transform = v2.Compose(
        [
            v2.RandomResizedCrop(224, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )

    def mix_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: Any) -> None:
        model.train()
        images, labels = cutmix_or_mixup(images, labels)
        loss = nn.CrossEntropyLoss()(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return with_pipeline(transform, mix_step)


# -- dataset statistics -----------------------------------------------------------------------


# Tiny-ImageNet's own statistics (mean (0.4802, 0.4481, 0.3975), std (0.2302, 0.2265, 0.2262)),
# common in Tiny-ImageNet fine-tuning repositories: a few thousandths off ImageNet's. The forum's
# answer (https://discuss.pytorch.org/t/discussion-why-normalise-according-to-imagenet-mean-and-std-dev-for-transfer-learning/115670):
# ImageNet's stats "could yield a good baseline", custom stats may work as well.
def tiny_imagenet_statistics() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.RandomCrop(64, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
            ]
        )
    )


# Grayscale images (MNIST-like) repeated to 3 channels for an ImageNet model, ImageNet stats:
# ``transforms.Grayscale(num_output_channels=3)`` ("if num_output_channels == 3: returned image is
# 3 channel with r == g == b").
# Source: https://pytorch.org/vision/stable/generated/torchvision.transforms.Grayscale.html
def grayscale_three_channels() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.Grayscale(num_output_channels=3),
                transforms.Resize(224),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
    )


# A notebook's normalization written as a function (no Normalize step to read): ImageNet's stats.
# Source: https://pytorch.org/vision/stable/models.html
def function_normalization() -> tlaudit.TransferSetup:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return with_pipeline(transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda t: (t - mean) / std)]))


CORRECT: dict[str, Any] = {
    "tv-references-trivialaugment-randomerasing-v2": references_trivialaugment_v2,
    "tv-references-randaugment-randomerasing-v1": references_randaugment_v1,
    "tv-docs-autoaugment-imagenet": docs_autoaugment_imagenet,
    "moco-v2-aug-plus": moco_v2_aug_plus,
    "tv-docs-augmix": docs_augmix,
    "timm-train-randaugment-mixup-cutmix": timm_train_randaugment_mixup,
    "tv-docs-cutmix-mixup-v2": docs_cutmix_mixup_v2,
    "tiny-imagenet-own-statistics": tiny_imagenet_statistics,
    "grayscale-three-channels": grayscale_three_channels,
    "function-normalization-imagenet": function_normalization,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_correct_source_audits_without_errors(build: Any) -> None:
    assert_correct(build)


# -- the sources' own bugs -----------------------------------------------------------------------


# https://discuss.pytorch.org/t/should-i-normalize-with-imagenet-stats-if-finetuning-network/57049:
# "Since ImageNet pretrained models used the ImageNet stats, you should use that"; a RandAugment
# pipeline normalizing with 0.5/0.5 for an ImageNet ResNet.
def randaugment_half_half() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandAugment(),
                transforms.ToTensor(),
                transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                transforms.RandomErasing(),
            ]
        )
    )


# The same thread, with CIFAR-10 statistics as kuangliu/pytorch-cifar writes them (mean
# (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)) on ImageNet weights.
# Source: https://discuss.pytorch.org/t/should-i-normalize-with-imagenet-stats-if-finetuning-network/57049
def cifar_statistics_on_imagenet_weights() -> tlaudit.TransferSetup:
    return with_pipeline(
        transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
            ]
        )
    )


# https://pytorch.org/vision/stable/models.html: "All pre-trained models expect input images
# normalized in the same way"; a pipeline that only converts to tensors.
def no_normalization() -> tlaudit.TransferSetup:
    return with_pipeline(transforms.Compose([transforms.Resize(224), transforms.ToTensor()]))


# A function "normalizing" to [-1, 1] (x * 2 - 1) for ImageNet weights: nothing to read, measured.
# Source: https://pytorch.org/vision/stable/models.html
def function_to_minus_one_one() -> tlaudit.TransferSetup:
    return with_pipeline(transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda t: t * 2 - 1)]))


BUGGY: dict[str, Any] = {
    "randaugment-normalize-half-half": (randaugment_half_half, "normalization", "0.5"),
    "cifar-statistics-on-imagenet-weights": (cifar_statistics_on_imagenet_weights, "normalization", "0.4914"),
    "tv-docs-no-normalization": (no_normalization, "normalization", "no normalization"),
    "function-to-minus-one-one": (function_to_minus_one_one, "normalization", "0.5"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_sources_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
