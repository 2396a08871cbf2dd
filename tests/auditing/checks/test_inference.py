"""The checks of ``tlaudit/auditing/checks/inference.py``: eval-mode, eval-nondeterministic, grad-inference.

What they watch: that predict runs in eval mode, deterministically and without gradients. For each
check ID, the setups that must trigger it (``TRIGGERS``) next to the setups that must not
(``CLEAN``); ``tests/auditing/checks/_cases.py`` turns the tables into tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import tlaudit
from tests.support import field_cases as fc
from tests.support.cases import Case, make, model, predict_inference, size_of
from tests.support.check_cases import case_tests

TRIGGERS: dict[str, list[Case]] = {}
CLEAN: dict[str, list[Case]] = {}


# -- predict functions and models these cases use --------------------------------------------------


def predict_no_eval(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(x)  # no model.eval()


def predict_with_grad(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    return m(x)  # no no_grad / inference_mode


def predict_no_grad(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    with torch.no_grad():
        return m(x)


def predict_inference_mode(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    with torch.inference_mode():
        return m(x)


class InputDropout(nn.Module):
    """A wrapper that drops input pixels with functional dropout; ``respect_mode`` passes ``training=self.training``."""

    def __init__(self, backbone: nn.Module, respect_mode: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.respect_mode = respect_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.respect_mode:
            x = F.dropout(x, 0.5, training=self.training)
        else:
            x = F.dropout(x, 0.5)  # training defaults to True for the functional form
        return self.backbone(x)


class NoisyInput(nn.Module):
    """A wrapper that adds random noise (augmentation) inside ``forward``, in eval mode too."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x + 0.1 * torch.randn_like(x))


# -- eval-mode -------------------------------------------------------------------------------------


def em_vgg() -> tlaudit.TransferSetup:
    return make(model("vgg11"), predict=predict_no_eval)


def em_mobilenet() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"), predict=predict_no_eval)


def em_efficientnet() -> tlaudit.TransferSetup:
    return make(model("efficientnet_b0"), predict=predict_no_eval)


def em_one_submodule_in_train() -> tlaudit.TransferSetup:
    def predict(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        m.eval()
        m.layer3.train()  # e.g. left over from a staged-unfreezing loop
        with torch.no_grad():
            return m(x)

    return make(model("resnet18"), predict=predict)


def em_clean_vgg() -> tlaudit.TransferSetup:
    return make(model("vgg11"), predict=predict_inference)


def em_clean_mobilenet() -> tlaudit.TransferSetup:
    return make(model("mobilenet_v3_small"), predict=predict_no_grad)


def em_clean_efficientnet() -> tlaudit.TransferSetup:
    return make(model("efficientnet_b0"), predict=predict_inference_mode)


TRIGGERS["eval-mode"] = [
    Case(
        "vgg11-no-eval",
        em_vgg,
        r"^`VGG` ran in training mode during predict: 2 dropout layers active \(`classifier\.2`, `classifier\.5`\)$",
        count=1,
    ),
    Case(
        "mobilenet-no-eval",
        em_mobilenet,
        r"^`MobileNetV3` ran in training mode during predict: 1 dropout layer active \(`classifier\.2`\); "
        r"\d+ BatchNorm layers using batch statistics",
        count=1,
    ),
    Case(
        "efficientnet-no-eval",
        em_efficientnet,
        r"^`EfficientNet` ran in training mode during predict: 1 dropout layer active",
        count=1,
    ),
    Case(
        "resnet18-one-stage-in-train",
        em_one_submodule_in_train,
        r"^`layer3` ran in training mode during predict: 5 BatchNorm layers using batch statistics \(`layer3\.0\.bn1`",
        count=1,
    ),
]
CLEAN["eval-mode"] = [
    Case("vgg11-inference", em_clean_vgg),
    Case("mobilenet-eval-no-grad", em_clean_mobilenet),
    Case("efficientnet-eval-inference-mode", em_clean_efficientnet),
]


# -- eval-nondeterministic -------------------------------------------------------------------------


def en_functional_dropout() -> tlaudit.TransferSetup:
    return make(InputDropout(model("resnet18")), predict=predict_inference)


def en_noise_in_forward() -> tlaudit.TransferSetup:
    return make(NoisyInput(model("densenet121")), predict=predict_no_grad)


def en_clean_dropout_respects_mode() -> tlaudit.TransferSetup:
    return make(InputDropout(model("resnet18"), respect_mode=True), predict=predict_inference)


def en_clean_resnet() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_no_grad)


TRIGGERS["eval-nondeterministic"] = [
    Case(
        "resnet18-functional-dropout",
        en_functional_dropout,
        r"^two predict calls on the same sample returned different outputs$",
        count=1,
    ),
    Case(
        "densenet121-noise-in-forward",
        en_noise_in_forward,
        r"^two predict calls on the same sample returned different outputs$",
        count=1,
    ),
]
CLEAN["eval-nondeterministic"] = [
    Case("resnet18-dropout-respects-mode", en_clean_dropout_respects_mode),
    Case("resnet18", en_clean_resnet),
]


# -- grad-inference --------------------------------------------------------------------------------


def gi_resnet_with_grad() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_with_grad)


def gi_vit_with_grad() -> tlaudit.TransferSetup:
    return make(model("vit_tiny"), size_of("vit_tiny"), predict=predict_with_grad)


def gi_clean_inference_mode() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_inference_mode)


def gi_clean_no_grad() -> tlaudit.TransferSetup:
    return make(model("vit_tiny"), size_of("vit_tiny"), predict=predict_no_grad)


def gi_clean_grad_mode_left_off() -> tlaudit.TransferSetup:
    def predict(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        m.eval()
        torch.set_grad_enabled(False)  # and never turned back on: the audit restores it
        return m(x)

    return make(model("efficientnet_b0"), predict=predict)


def gi_clean_tlaudit_inference_no_grad() -> tlaudit.TransferSetup:
    def predict(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with tlaudit.inference(m, inference_mode=False):
            return m(x)

    return make(model("squeezenet1_1"), predict=predict)


def predict_by_parts(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Validation code of captioning/re-id projects: the parts called one by one, no torch.no_grad()."""
    m.eval()
    features = torch.flatten(m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))), 1)
    return m.fc(features)


def predict_by_parts_no_grad(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return predict_by_parts(m, x)


def gi_parts_with_grad() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_by_parts)


def gi_clean_parts_no_grad() -> tlaudit.TransferSetup:
    return make(model("resnet18"), predict=predict_by_parts_no_grad)


TRIGGERS["grad-inference"] = [
    Case(
        "resnet18-parts-called-directly",
        gi_parts_with_grad,
        r"^predict calls `conv1`, `bn1`, `relu` and \d+ more with gradients enabled \(parts of the model, called directly\)$",
        count=1,
    ),
    Case(
        "resnet18-eval-without-no-grad",
        gi_resnet_with_grad,
        r"^predict runs the model with gradients enabled$",
        count=1,
    ),
    Case("vit-eval-without-no-grad", gi_vit_with_grad, r"^predict runs the model with gradients enabled$", count=1),
]
CLEAN["grad-inference"] = [
    Case("resnet18-parts-called-directly-no-grad", gi_clean_parts_no_grad),
    Case("resnet18-inference-mode", gi_clean_inference_mode),
    Case("vit-no-grad", gi_clean_no_grad),
    Case("squeezenet-tlaudit-inference-no-grad", gi_clean_tlaudit_inference_no_grad),
    Case("efficientnet-grad-mode-left-off", gi_clean_grad_mode_left_off),
]


# -- the tests -------------------------------------------------------------------------------------


TRIGGERS["eval-mode"] += [
    Case(
        "detection-predict-in-training-mode",
        fc.det_predict_in_training_mode,
        r"^`FasterRCNN` ran in training mode during predict: predict raised there",
        count=1,
    ),
]


test_trigger, test_clean, test_full_audit_changes_nothing = case_tests(TRIGGERS, CLEAN)
