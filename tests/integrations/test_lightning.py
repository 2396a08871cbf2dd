"""Tests for the Lightning callback (tlaudit/integrations/lightning.py) with a real ``Trainer`` on CPU.

A tiny CNN (a ``backbone`` and a ``head``) fits for two epochs of two batches, with and without
``BackboneFinetuning``; the callback's audits are read from ``callback.reports``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from tlaudit import AuditFailed  # noqa: E402
from tlaudit.integrations.lightning import TransferAudit  # noqa: E402


class Classifier(pl.LightningModule):
    def __init__(self, optimizer_params: Callable[[Classifier], Any] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 3)
        self.optimizer_params = optimizer_params or (lambda m: [p for p in m.parameters() if p.requires_grad])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self(x)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.optimizer_params(self), lr=0.005, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}


def loader() -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(8, 3, 16, 16, generator=gen), torch.randint(3, (8,), generator=gen))
    return DataLoader(data, batch_size=4)


def fit(module: pl.LightningModule, *callbacks: pl.Callback, data: tuple[DataLoader, DataLoader] | None = None) -> pl.Trainer:
    """Two epochs of two batches on CPU, one validation batch (and one sanity check), nothing logged
    or saved; ``data``: the train and validation loaders (default: :func:`loader`'s)."""
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=list(callbacks),
    )
    train, val = data if data is not None else (loader(), loader())
    trainer.fit(module, train, val)
    return trainer


def test_a_clean_fit_audits_clean_at_each_stage():
    audit = TransferAudit(stream=io.StringIO())
    trainer = fit(Classifier(), audit)
    assert trainer.global_step == 4
    assert set(trainer.callback_metrics) == {"train_loss"}  # the audit's replayed training_step logged nothing extra
    assert list(audit.reports) == ["static", "inference", "train"]  # the sanity check validates first
    for stage, report in audit.reports.items():
        assert not report.findings, f"{stage}: {report.to_text()}"
    assert set(audit.reports["static"].checks_run) == {"head-frozen", "optimizer-missing", "optimizer-frozen", "lr-threshold"}
    notes = "\n".join(audit.reports["train"].notes)
    assert "scheduler (StepLR, stepped per epoch)" in notes and "sample (the first batch, shape (4, 3, 16, 16))" in notes
    assert "0 of 8 modules in training mode, no_grad" in "\n".join(audit.reports["inference"].notes)


def test_an_optimizer_without_the_backbone_fails_the_fit_at_its_first_step():
    """At the start of the fit the flag alone says "trainable": a warning. The first step shows the
    backbone's gradients, which no optimizer applies: the error, before that step runs."""
    audit = TransferAudit(stream=io.StringIO())
    with pytest.raises(AuditFailed, match="train audit at the first optimizer step: optimizer-missing"):
        fit(Classifier(lambda m: m.head.parameters()), audit)
    static = audit.reports["static"].by_check("optimizer-missing")
    assert [f.severity.value for f in static] == ["warning"]
    assert "no step observed yet: an error if the first step gives them a gradient" in static[0].message
    assert {f.check for f in audit.reports["train"].errors} == {"optimizer-missing"}


class LinearProbe(Classifier):
    """lightly's ``LinearClassifier`` with ``freeze_model=True``
    (https://github.com/lightly-ai/lightly/blob/master/lightly/utils/benchmarking/linear_classifier.py):
    the backbone runs under ``torch.no_grad()`` in ``forward``, keeps ``requires_grad=True``, is left
    out of ``configure_optimizers`` and put in eval mode at each training epoch's start."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.backbone.forward(x).flatten(start_dim=1)
        return self.head(features)

    def on_train_epoch_start(self) -> None:
        self.backbone.eval()

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(list(self.head.parameters()), lr=0.1 * 4 / 256, momentum=0.9, weight_decay=0.0)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}


def test_a_linear_probe_with_its_backbone_under_no_grad_is_not_stopped():
    audit = TransferAudit(stream=io.StringIO())
    trainer = fit(LinearProbe(), audit)
    assert trainer.global_step == 4
    assert [f.severity.value for f in audit.reports["static"].by_check("optimizer-missing")] == ["warning"]
    for stage, report in audit.reports.items():
        assert not report.errors, f"{stage}: {report.to_text()}"
    frozen = audit.reports["train"].by_check("trainable-no-grad")
    assert [f.severity.value for f in frozen] == ["info"]  # frozen in effect, with what requires_grad=True costs


def test_backbone_finetuning_is_audited_again_after_the_unfreeze():
    from lightning.pytorch.callbacks import BackboneFinetuning

    audit = TransferAudit(fail_on=None, stream=io.StringIO())
    fit(Classifier(), BackboneFinetuning(unfreeze_backbone_at_epoch=1, train_bn=True), audit)
    assert list(audit.reports) == ["static", "inference", "train", "train (epoch 1)"]
    assert "train audit after the param groups or trainable parameters changed (epoch 1)" in audit.session.stream.getvalue()
    for stage, report in audit.reports.items():
        assert not report.findings, f"{stage}: {report.to_text()}"


def test_backbone_finetuning_frozen_batchnorm_is_explained():
    """train_bn=False: Lightning turns off running stats but leaves the layers in training mode."""
    from lightning.pytorch.callbacks import BackboneFinetuning

    audit = TransferAudit(strategy="feature_extraction", fail_on=None, stream=io.StringIO())
    fit(Classifier(), BackboneFinetuning(unfreeze_backbone_at_epoch=5, train_bn=False), audit)
    report = audit.reports["train"]
    assert [f.subject for f in report.by_check("frozen-bn-train")] == ["backbone.1"]
    assert any("BaseFinetuning.freeze(..., train_bn=False)" in note for note in report.notes)
