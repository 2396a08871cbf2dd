"""Transfer-learning bugs as users post them and maintainers or forum experts confirm them.

Each builder is the setup from the question, transcribed on a torchvision ResNet-18
(``weights=None`` with pretrained-looking BatchNorm statistics, 64x64 crops); the verdict is the
answer's. Each table also keeps the fixed version the answer gives, which must audit clean.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
from torch import nn

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
from tlaudit.examples._common import pixels, pretend_pretrained

WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: Any) -> None:
    model.train()
    optimizer.zero_grad()
    nn.CrossEntropyLoss()(model(x), y).backward()
    optimizer.step()


def resnet(classes: int = 3) -> nn.Module:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Linear(512, classes)
    return model


def setup_of(model: nn.Module, classes: int = 3, **kw: Any) -> tlaudit.TransferSetup:
    values: dict[str, Any] = {
        "model": model,
        "num_classes": classes,
        "sample": images(),
        "targets": labels(classes=classes),
        "optimizer": torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9),
        "weights": WEIGHTS,
        "train_step": step,
        "predict": eval_predict,
    }
    values.update(kw)
    return tlaudit.TransferSetup(**values)


# https://pytorch.org/docs/stable/notes/autograd.html#setting-requires-grad ("apply
# .requires_grad_(False) to the parameters"): ``model.requires_grad = False`` sets a plain attribute
# on the module and freezes nothing, the forums' recurring question; the fix is
# ``model.requires_grad_(False)`` (https://discuss.pytorch.org/t/what-does-param-requires-grad-false-or-true-do-in-the-pretrained-model/99026).
def module_attribute_requires_grad() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.requires_grad = False
    model.fc = nn.Linear(512, 3)
    return setup_of(model, strategy="feature_extraction")


# Source: https://pytorch.org/docs/stable/notes/autograd.html#setting-requires-grad
def module_requires_grad_fixed() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.requires_grad_(False)
    model.fc = nn.Linear(512, 3)
    return setup_of(model, strategy="feature_extraction")


# https://pytorch.org/docs/stable/notes/autograd.html#locally-disabling-gradient-computation:
# ``model.eval()`` changes Dropout/BatchNorm behaviour and "is not a mechanism" for disabling
# gradients; a "freeze" by ``backbone.eval()`` leaves the backbone training.
def eval_is_not_a_freeze() -> tlaudit.TransferSetup:
    model = resnet()
    for name, module in model.named_children():
        if name != "fc":
            module.eval()
    return setup_of(
        model,
        strategy="feature_extraction",
        train_step=lambda m, x, y, opt: (opt.zero_grad(), nn.CrossEntropyLoss()(m(x), y).backward(), opt.step()),
    )


# https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html (targets are class
# indices in [0, C)): the forums' "IndexError: Target 4 is out of bounds" comes from a new head
# with fewer outputs than the dataset has classes; the fix: ``nn.Linear(num_ftrs, num_classes)``.
def head_narrower_than_classes() -> tlaudit.TransferSetup:
    return setup_of(resnet(2), classes=5, targets=labels(classes=5))


# The forums' "mat1 and mat2 shapes cannot be multiplied" after a head swap: a head sized for
# resnet50 (2048 features) on a resnet18, whose ``fc.in_features`` is 512 (the tutorials read it).
# Source: https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html
def head_in_features_of_another_model() -> tlaudit.TransferSetup:
    model = pretend_pretrained(torchvision.models.resnet18())
    model.fc = nn.Linear(2048, 3)
    return setup_of(model)


# "element 0 of tensors does not require grad and does not have a grad_fn": the forward wrapped in
# ``torch.no_grad()`` inside the training loop (autograd notes, "No-grad mode"); backward raises.
# Source: https://pytorch.org/docs/stable/notes/autograd.html#locally-disabling-gradient-computation
def forward_under_no_grad_in_training() -> tlaudit.TransferSetup:
    def no_grad_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: Any) -> None:
        model.train()
        optimizer.zero_grad()
        with torch.no_grad():
            outputs = model(x)
        nn.CrossEntropyLoss()(outputs, y).backward()
        optimizer.step()

    return setup_of(resnet(), train_step=no_grad_step)


# https://stackoverflow.com/questions/61854165 ("Why must use DataParallel when testing?"): a
# checkpoint saved from ``nn.DataParallel`` has keys prefixed with ``module.``; merged or loaded
# with ``strict=False`` nothing matches and "you are left with the randomly initialised model";
# the answer strips the prefix.
def dataparallel_checkpoint_strict_false() -> tlaudit.TransferSetup:
    saved = {f"module.{k}": v for k, v in pretend_pretrained(torchvision.models.resnet18()).state_dict().items()}
    model = torchvision.models.resnet18()
    result = model.load_state_dict(saved, strict=False)
    model.fc = nn.Linear(512, 3)
    return setup_of(model, load_result=result)


# Source: https://stackoverflow.com/questions/61854165
def dataparallel_checkpoint_fixed() -> tlaudit.TransferSetup:
    saved = {f"module.{k}": v for k, v in pretend_pretrained(torchvision.models.resnet18()).state_dict().items()}
    model = torchvision.models.resnet18()
    result = model.load_state_dict({k.removeprefix("module."): v for k, v in saved.items()})
    model.fc = nn.Linear(512, 3)
    return setup_of(model, load_result=result)


# https://pytorch.org/vision/stable/generated/torchvision.transforms.ToTensor.html (scales [0, 255]
# to [0.0, 1.0]): images turned into tensors by ``torch.from_numpy(img).float()`` keep 0..255
# values, never scaled or normalized, fed to an ImageNet model.
def raw_pixels_0_255() -> tlaudit.TransferSetup:
    return setup_of(resnet(), sample=pixels(2, 64) * 255)


# https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html's ``visualize_model``
# runs under ``torch.no_grad()``; inference without it builds the autograd graph (memory).
def predict_without_no_grad() -> tlaudit.TransferSetup:
    def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return model(x)

    return setup_of(resnet(), predict=predict)


# The tutorial's transform on a setup whose sample is normalized a second time by the user's
# own collate (``(x - mean) / std`` on already normalized tensors).
# Source: https://pytorch.org/vision/stable/models.html
def doubly_normalized_sample() -> tlaudit.TransferSetup:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return setup_of(resnet(), sample=(images() - mean) / std)


CORRECT: dict[str, Any] = {
    "forum-requires-grad-underscore-fixed": module_requires_grad_fixed,
    "forum-dataparallel-prefix-stripped": dataparallel_checkpoint_fixed,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_the_answers_fix_audits_without_errors(build: Any) -> None:
    assert_correct(build)


BUGGY: dict[str, Any] = {
    "forum-module-attribute-requires-grad": (module_attribute_requires_grad, "frozen-grad", "strategy"),
    "forum-eval-is-not-a-freeze": (eval_is_not_a_freeze, "frozen-grad", "layer1"),
    "forum-target-out-of-bounds-narrow-head": (head_narrower_than_classes, "head-size", "5 columns"),
    "forum-mat1-mat2-head-in-features": (head_in_features_of_another_model, "user-code-error", "mat1 and mat2"),
    "forum-forward-under-no-grad": (forward_under_no_grad_in_training, "user-code-error", "does not require grad"),
    "forum-dataparallel-prefix-strict-false": (dataparallel_checkpoint_strict_false, "pretrained-not-loaded", "module."),
    "forum-raw-0-255-pixels": (raw_pixels_0_255, "input-range", "0..255 pixels"),
    "tutorial-predict-without-no-grad": (predict_without_no_grad, "grad-inference", "gradients"),
    "doubly-normalized-sample": (doubly_normalized_sample, "input-range", "far from a normalized"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
