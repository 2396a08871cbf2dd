"""``TransferAudit``: a Lightning callback that audits a ``Trainer.fit`` run (extra ``tlaudit[lightning]``).

Where it audits, on the engine path :func:`tlaudit.watch` uses (:class:`~tlaudit.watcher.session.AuditSession`):

* ``on_fit_start`` (after ``configure_optimizers``, after ``BaseFinetuning`` froze the backbone in
  ``setup``): the **static** audit, the checks that need no train step (optimizer membership, LR
  ceilings, normalization, pretrained weights), with the optimizer and scheduler from
  ``trainer.optimizers`` and ``trainer.lr_scheduler_configs``;
* ``on_train_batch_start`` of the first batch: the **train** audit on the real batch; the audited
  step replays ``training_step(batch, 0)``, backward and ``optimizer.step()`` on the engine's
  snapshot, which restores everything before Lightning runs the real step. Again at the first
  batch after the optimizer's param groups or the set of trainable parameters changed: after each
  unfreeze stage of ``BaseFinetuning``, where optimizer and scheduler mismatches appear;
* ``on_validation_batch_start`` of the first validation batch (the sanity check counts): the
  **inference** audit, calling the module's ``forward`` in the modes Lightning set.

``fail_on`` raises :class:`~tlaudit.AuditFailed` out of ``Trainer.fit``; ``fail_on=None`` reports and
goes on. Reports are in ``callback.reports`` by stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning
from torch.utils.data import DataLoader

from tlaudit.auditing.checks.frozen import frozen_bn_train
from tlaudit.auditing.report import Report
from tlaudit.auditing.rules.inputs import call_model, clone_sample, describe_sample
from tlaudit.evaluation import TrainingFlags
from tlaudit.watcher.build import dataset_fields
from tlaudit.watcher.session import AuditSession
from tlaudit.watcher.verdicts import bn_left_out, finetuners_without_bn, without_by_design

__all__ = ["TransferAudit"]


_BN_NOTE = (
    "BaseFinetuning.freeze(..., train_bn=False) sets requires_grad=False and track_running_stats=False on "
    "BatchNorm layers but never calls eval(): in training they normalize with batch statistics. "
    "Keep them in eval mode (tlaudit.eval_frozen_batchnorm(pl_module) in on_train_epoch_start) or use "
    "train_bn=True to train them"
)


class TransferAudit(Callback):
    """Audit the fit: statically at its start, traced on the first batch and after each unfreeze, and
    inference on the first validation batch. Keywords: the options of every watched run (see
    :class:`~tlaudit.watcher.session.AuditSession`), as for :func:`tlaudit.watch`."""

    def __init__(self, **options: Any) -> None:
        self.session = AuditSession(**options)
        self._audited: tuple[int, frozenset[int]] | None = None
        self._inference_done = False

    @property
    def reports(self) -> dict[str, Report]:
        return self.session.reports

    # -- what the trainer holds ----------------------------------------------------------------

    @staticmethod
    def _fields(trainer: Trainer, pl_module: LightningModule) -> tuple[dict[str, Any], dict[str, str], list[str]]:
        fields: dict[str, Any] = {"model": pl_module}
        observed = {"model": type(pl_module).__name__}
        notes: list[str] = []
        if trainer.optimizers:
            fields["optimizer"] = trainer.optimizers[0]
            observed["optimizer"] = f"{type(trainer.optimizers[0]).__name__}, trainer.optimizers[0]"
            if len(trainer.optimizers) > 1:
                notes.append(f"{len(trainer.optimizers)} optimizers: the audit reads the first")
        configs = [c for c in trainer.lr_scheduler_configs if getattr(c.scheduler, "optimizer", None) is fields.get("optimizer")]
        if configs:
            fields["scheduler"] = configs[0].scheduler
            observed["scheduler"] = f"{type(configs[0].scheduler).__name__}, stepped per {configs[0].interval}"
        loader = getattr(trainer, "train_dataloader", None)
        if isinstance(loader, DataLoader):
            more, seen, more_notes = dataset_fields([loader.dataset])
            fields.update(more)
            observed.update(seen)
            notes.extend(more_notes)
        return fields, observed, notes

    def _state(self, trainer: Trainer, pl_module: LightningModule) -> tuple[int, frozenset[int]]:
        groups = sum(len(o.param_groups) for o in trainer.optimizers)
        return groups, frozenset(id(p) for p in pl_module.parameters() if p.requires_grad)

    # -- the hooks -----------------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.session.checks("static"):
            return
        fields, observed, notes = self._fields(trainer, pl_module)
        self.session.audit("static", fields, observed, [*notes, "the train audit follows on the first batch"])

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        state = self._state(trainer, pl_module)
        if state == self._audited:
            return
        stage = "train" if self._audited is None else f"train (epoch {trainer.current_epoch})"
        self._audited = state
        fields, observed, notes = self._fields(trainer, pl_module)
        sample, targets, rebuild = _split(batch)
        if sample is not None:
            fields["sample"] = sample
            observed["sample"] = f"the first batch, {describe_sample(sample)}"
            if targets is not None:
                fields["targets"] = targets
                observed["targets"] = "the first batch"
            fields["train_step"] = _replay_training_step(pl_module, rebuild)
        else:
            notes.append("the batch holds no tensor the audit can take as the sample: the default train step ran")
        finetuning = any(isinstance(c, BaseFinetuning) for c in trainer.callbacks)  # type: ignore[attr-defined]

        def explain(report: Report) -> list[str]:
            return [_BN_NOTE] if finetuning and report.by_check(frozen_bn_train.id) else []

        by_design = bn_left_out(pl_module, trainer.optimizers, finetuners_without_bn(trainer.callbacks))  # type: ignore[attr-defined]
        self.session.audit(stage, fields, observed, notes, explain=explain, adjust=lambda r: without_by_design(r, *by_design))

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._inference_done:
            return
        self._inference_done = True
        sample, _, _ = _split(batch)
        if sample is None or type(pl_module).forward is LightningModule.forward:
            return  # nothing to call: the module defines no forward
        flags = TrainingFlags.of(pl_module)
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def predict(model: LightningModule, x: Any) -> Any:
            flags.restore()  # the modes Lightning set for validation
            if inference:
                with torch.inference_mode():
                    return call_model(model, x)
            with torch.set_grad_enabled(grad):
                return call_model(model, x)

        modes = "inference mode" if inference else ("grad enabled" if grad else "no_grad")
        observed = {
            "sample": f"the first validation batch, {describe_sample(sample)}",
            "predict": f"forward in the modes Lightning set: {sum(flags.flags)} of {len(flags.flags)} modules in training mode, {modes}",
        }
        with torch.inference_mode(False):
            self.session.audit("inference", {"model": pl_module, "sample": clone_sample(sample), "predict": predict}, observed)


_LABEL_KEYS = ("labels", "label")


def _split(batch: Any) -> tuple[Any, torch.Tensor | None, Any]:
    """``(sample, targets, rebuild)``: the first two tensors of a tuple/list batch (or the batch itself),
    or, for a dict of tensors (a tokenizer's output, a Hugging Face collator's batch), the dict
    without its ``labels`` and those labels; and ``rebuild(sample, targets)`` that puts copies back in
    the batch's structure."""
    if isinstance(batch, Mapping) and batch and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in batch.items()):
        key = next((k for k in _LABEL_KEYS if k in batch and batch[k].ndim), None)
        inputs = {k: v for k, v in batch.items() if k != key}
        if not inputs:
            return None, None, None
        if key is None:
            return inputs, None, lambda s, t: dict(s)
        return inputs, batch[key], lambda s, t: {**s, key: t}
    if isinstance(batch, torch.Tensor):
        return batch, None, lambda s, t: s
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        if len(batch) > 1 and isinstance(batch[1], torch.Tensor) and batch[1].ndim and batch[1].shape[0] == batch[0].shape[0]:
            return batch[0], batch[1], lambda s, t: type(batch)([s, t, *batch[2:]]) if isinstance(batch, list) else (s, t, *batch[2:])
        return batch[0], None, lambda s, t: type(batch)([s, *batch[1:]]) if isinstance(batch, list) else (s, *batch[1:])
    return None, None, None


def _replay_training_step(pl_module: LightningModule, rebuild: Any) -> Any:
    """``train_step`` for the audit: ``training_step`` on the audit's copy of the batch, backward, step."""

    def replayed_step(model: LightningModule, sample: Any, targets: torch.Tensor, optimizer: Any) -> None:
        if optimizer is not None:
            optimizer.zero_grad()
        out = pl_module.training_step(rebuild(sample, targets), 0)
        loss = out["loss"] if isinstance(out, dict) else out
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            return  # manual optimization stepped itself, or nothing is trainable
        loss.backward()
        if optimizer is not None:
            optimizer.step()

    return replayed_step
