"""Lightning modules transcribed from Lightning's docs and examples.

The LightningModule is the model; the step is what the Trainer runs, written out
(``optimizer.zero_grad(); module.training_step(batch, i).backward(); optimizer.step()``), and the
optimizer is the module's own ``configure_optimizers()``. Adapted everywhere: resnet18 for
resnet50, ``weights=None`` with pretrained-looking BatchNorm statistics, 64x64 crops.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

import tlaudit
from tests.realistic.corpus import (
    IMAGENET,
    assert_correct,
    assert_named,
    eval_predict,
    images,
    labels,
    rows,
)
from tlaudit.examples._common import pretend_pretrained


def trainer_step(module: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: Any) -> None:
    """What ``Trainer.fit`` does per batch: train mode, training_step, backward, step."""
    module.train()
    optimizer.zero_grad()
    loss = module.training_step((x, y), 0)
    loss.backward()
    optimizer.step()


class ImagenetTransferLearning(pl.LightningModule):
    """https://lightning.ai/docs/pytorch/stable/advanced/pretrained.html ("Example: Imagenet"):
    ``feature_extractor.eval()`` and ``with torch.no_grad()`` in forward; the backbone's
    requires_grad is left True."""

    def __init__(self, num_target_classes: int = 10) -> None:
        super().__init__()
        backbone = pretend_pretrained(torchvision.models.resnet18())
        num_filters = backbone.fc.in_features
        layers = list(backbone.children())[:-1]
        self.feature_extractor = nn.Sequential(*layers)
        self.feature_extractor.eval()
        self.classifier = nn.Linear(num_filters, num_target_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.feature_extractor.eval()
        with torch.no_grad():
            representations = self.feature_extractor(x).flatten(1)
        return self.classifier(representations)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The docs' snippet leaves this out; the classifier's parameters, as the frozen backbone needs.
        return torch.optim.Adam(self.classifier.parameters(), lr=1e-3)


# Source: https://lightning.ai/docs/pytorch/stable/advanced/pretrained.html
def docs_imagenet_transfer() -> tlaudit.TransferSetup:
    module = ImagenetTransferLearning()
    return tlaudit.TransferSetup(
        model=module,
        num_classes=10,
        sample=images(),
        targets=labels(classes=10),
        optimizer=module.configure_optimizers(),
        weights=IMAGENET,
        train_step=trainer_step,
        predict=eval_predict,
    )


class Encoder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 64), nn.ReLU(), nn.Linear(64, 100))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CIFAR10Classifier(pl.LightningModule):
    """The same page, "Use a pretrained LightningModule": ``feature_extractor.freeze()`` (requires_grad
    False and eval) and a new ``nn.Linear(100, 10)``."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_extractor = Encoder()  # AutoEncoder.load_from_checkpoint(PATH).encoder
        self.feature_extractor.freeze()
        self.classifier = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        representations = self.feature_extractor(x)
        return self.classifier(representations)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


# Source: https://lightning.ai/docs/pytorch/stable/advanced/pretrained.html
def docs_pretrained_lightning_module() -> tlaudit.TransferSetup:
    module = CIFAR10Classifier()
    return tlaudit.TransferSetup(
        model=module,
        num_classes=10,
        sample=images(2, 16),
        targets=labels(classes=10),
        optimizer=module.configure_optimizers(),
        train_step=trainer_step,
        predict=eval_predict,
    )


class TransferLearningModel(pl.LightningModule):
    """examples/pytorch/domain_templates/computer_vision_fine_tuning.py: a ResNet feature extractor,
    a 3-layer fc ending in one logit (cats vs dogs, BCEWithLogitsLoss), Adam over the parameters
    that require grad, MultiStepLR; the MilestonesFinetuning callback freezes the backbone
    (``BaseFinetuning.freeze(feature_extractor, train_bn=True)``) before training."""

    def __init__(self, lr: float = 1e-3, milestones: tuple[int, int] = (2, 4)) -> None:
        super().__init__()
        backbone = pretend_pretrained(torchvision.models.resnet18())
        self.feature_extractor = nn.Sequential(*list(backbone.children())[:-1])
        self.fc = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 32), nn.Linear(32, 1))
        self.loss_func = F.binary_cross_entropy_with_logits
        self.lr = lr
        self.milestones = milestones

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_extractor(x).squeeze(-1).squeeze(-1)
        return self.fc(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        y_logits = self.forward(x)
        return self.loss_func(input=y_logits, target=y.view((-1, 1)).type_as(x))

    def configure_optimizers(self) -> tuple[list[Any], list[Any]]:
        parameters = list(self.parameters())
        trainable_parameters = list(filter(lambda p: p.requires_grad, parameters))
        optimizer = torch.optim.Adam(trainable_parameters, lr=self.lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(self.milestones), gamma=0.1)
        return [optimizer], [scheduler]


# Source: https://github.com/Lightning-AI/pytorch-lightning/blob/master/examples/pytorch/domain_templates/computer_vision_fine_tuning.py
def example_milestones_finetuning() -> tlaudit.TransferSetup:
    module = TransferLearningModel()
    BaseFinetuning.freeze(module.feature_extractor, train_bn=True)  # MilestonesFinetuning.freeze_before_training
    [optimizer], [scheduler] = module.configure_optimizers()
    return tlaudit.TransferSetup(
        model=module,
        num_classes=2,
        sample=images(),
        targets=labels(),
        optimizer=optimizer,
        scheduler=scheduler,
        weights=IMAGENET,
        train_step=trainer_step,
        predict=eval_predict,
    )


# The same example after MilestonesFinetuning's first milestone: ``unfreeze_and_add_param_group(
# modules=feature_extractor[-5:], optimizer, train_bn=True)`` adds the last layers as a new group
# at the callback's initial_denom_lr (lr / 10).
# Source: https://github.com/Lightning-AI/pytorch-lightning/blob/master/examples/pytorch/domain_templates/computer_vision_fine_tuning.py
def example_milestones_after_unfreeze() -> tlaudit.TransferSetup:
    setup = example_milestones_finetuning()
    module = setup.model
    BaseFinetuning.unfreeze_and_add_param_group(modules=module.feature_extractor[-5:], optimizer=setup.optimizer, train_bn=True)
    return setup


# https://lightning.ai/docs/pytorch/stable/api/lightning.pytorch.callbacks.BackboneFinetuning.html:
# the module exposes ``self.backbone``; before ``unfreeze_backbone_at_epoch`` the callback freezes
# it (``freeze_before_training``) and the optimizer holds what requires grad.
class BackboneModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        resnet = pretend_pretrained(torchvision.models.resnet18())
        self.backbone = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten())
        self.head = nn.Linear(512, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()), lr=1e-3)


# Source: https://lightning.ai/docs/pytorch/stable/api/lightning.pytorch.callbacks.BackboneFinetuning.html
def docs_backbone_finetuning() -> tlaudit.TransferSetup:
    module = BackboneModule()
    BaseFinetuning.freeze(module.backbone)
    return tlaudit.TransferSetup(
        model=module,
        num_classes=5,
        sample=images(),
        targets=labels(classes=5),
        optimizer=module.configure_optimizers(),
        weights=IMAGENET,
        train_step=trainer_step,
        predict=eval_predict,
    )


CORRECT: dict[str, Any] = {
    "lightning-docs-imagenet-transfer-no-grad": docs_imagenet_transfer,
    "lightning-docs-pretrained-module-freeze": docs_pretrained_lightning_module,
    "lightning-example-milestones-finetuning": example_milestones_finetuning,
    "lightning-example-milestones-after-unfreeze": example_milestones_after_unfreeze,
    "lightning-docs-backbone-finetuning": docs_backbone_finetuning,
}


@pytest.mark.parametrize("build", rows(CORRECT))
def test_correct_source_audits_without_errors(build: Any) -> None:
    assert_correct(build)


# -- the sources' own bugs -----------------------------------------------------------------------


# ``configure_optimizers`` of the fine-tuning example filters on requires_grad, so it must run
# after the freeze; with BackboneFinetuning's pattern inverted (unfreeze by hand without adding
# a param group) the unfrozen layers train in no optimizer group: Lightning's docs for
# ``unfreeze_and_add_param_group`` exist for this.
# Source: https://lightning.ai/docs/pytorch/stable/api/lightning.pytorch.callbacks.BaseFinetuning.html
def unfrozen_without_param_group() -> tlaudit.TransferSetup:
    setup = docs_backbone_finetuning()
    BaseFinetuning.make_trainable(setup.model.backbone[-3:])
    return setup


BUGGY: dict[str, Any] = {
    "lightning-unfrozen-without-param-group": (unfrozen_without_param_group, "optimizer-missing", "backbone.7"),
}


@pytest.mark.parametrize(("build", "check", "fragment"), rows(BUGGY))
def test_the_sources_bug_is_named(build: Any, check: str, fragment: str) -> None:
    assert_named(build, check, fragment)
