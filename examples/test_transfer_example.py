"""Use it in your tests: assert that a transfer-learning setup is sound, with the ``tlaudit`` fixture.

Installing tlaudit registers the pytest plugin; run ``pytest examples/test_transfer_example.py``.
Inside a test that requests the ``tlaudit`` fixture, that name is the fixture, so import what you
need from the package by name.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from tlaudit import TransferSetup, freeze_backbone, inference, param_groups, replace_head, unfreeze

NUM_CLASSES = 5


def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Fine-tune ResNet-18's last stage and a new 5-class head; everything else stays frozen."""
    model = torchvision.models.resnet18()  # real code: resnet18(weights=ResNet18_Weights.DEFAULT)
    replace_head(model, NUM_CLASSES)
    freeze_backbone(model, batchnorm="frozen")  # BatchNorm statistics fixed too
    unfreeze(model, "layer4")
    optimizer = torch.optim.AdamW(param_groups(model, 1e-4, head_lr=1e-3))
    return model, optimizer


def predict(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with inference(model):  # eval mode + inference_mode, training flags restored after
        return model(images).softmax(dim=1)


def test_only_the_last_stage_and_the_head_train(tlaudit):
    model, optimizer = build()
    tlaudit.assert_frozen(model, "conv1", "bn1", "layer1", "layer2", "layer3")
    tlaudit.assert_trainable(model, "layer4", "fc")
    tlaudit.assert_head(model, NUM_CLASSES, sample=torch.randn(2, 3, 64, 64))
    tlaudit.assert_lr_below(optimizer, 1e-4, exclude="fc", model=model)  # the head may learn faster


def test_inference_is_eval_mode_and_deterministic(tlaudit):
    model, _ = build()
    tlaudit.assert_eval_inference(predict, model, torch.randn(2, 3, 64, 64))


def test_preprocessing_matches_the_weights(tlaudit):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    tlaudit.assert_normalization(weights.transforms(), weights)


@pytest.mark.tlaudit(fail_on="warning")  # stricter than the default (errors only) for this test
def test_the_whole_setup_passes_the_audit(tlaudit):
    model, optimizer = build()
    sample = torch.randn(4, 3, 64, 64)
    report = tlaudit.audit(
        model=model,
        num_classes=NUM_CLASSES,
        sample=sample,
        targets=torch.arange(4) % NUM_CLASSES,
        optimizer=optimizer,
        frozen=["conv1", "bn1", "layer1", "layer2", "layer3"],
        predict=predict,
    )
    assert "frozen-grad" in report.checks_run


@pytest.mark.tlaudit_setup  # collected as example_setup[frozen-grad], example_setup[head-size], ...
def example_setup() -> TransferSetup:
    model, optimizer = build()
    return TransferSetup(
        model=model,
        num_classes=NUM_CLASSES,
        sample=torch.randn(4, 3, 64, 64),
        optimizer=optimizer,
        frozen=["conv1", "bn1", "layer1", "layer2", "layer3"],
        predict=predict,
    )
