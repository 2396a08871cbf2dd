"""``TransferAuditCallback``: a Hugging Face ``Trainer`` callback for vision models (extra ``tlaudit[huggingface]``).

* ``on_train_begin`` (the optimizer and scheduler exist): the **static** audit, the checks that need
  no train step, on the model, the optimizer, and the train dataset's ``transform``;
* then it watches the loop with :func:`tlaudit.watch`'s engine: the **train** audit at the first
  optimizer step (the model called with ``pixel_values=``/``labels=``, the loss it computes itself,
  replayed on the snapshot), and the **inference** audit after the first evaluation pass;
* ``on_train_end`` stops watching (the hooks are gone after the audits anyway).

``fail_on`` raises :class:`~tlaudit.AuditFailed` out of ``Trainer.train()``; ``fail_on=None`` reports
and goes on. Reports are in ``callback.reports`` by stage.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from tlaudit.auditing.report import Report
from tlaudit.watcher import Watch
from tlaudit.watcher.build import dataset_fields
from tlaudit.watcher.session import AuditSession

__all__ = ["TransferAuditCallback"]


class TransferAuditCallback(TrainerCallback):
    """Audit ``Trainer.train()``: statically at its start, at the first optimizer step, and after the
    first evaluation pass. Keywords: the options of every watched run (see
    :class:`~tlaudit.watcher.session.AuditSession`), as for :func:`tlaudit.watch`."""

    def __init__(self, **options: Any) -> None:
        self.session = AuditSession(**options)
        self._watch: Watch | None = None

    @property
    def reports(self) -> dict[str, Report]:
        return self.session.reports

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
        if self.session.checks("static") and isinstance(model, torch.nn.Module):
            fields: dict[str, Any] = {"model": model}
            observed = {"model": type(model).__name__}
            if isinstance(optimizer, torch.optim.Optimizer):
                fields["optimizer"] = optimizer
                observed["optimizer"] = f"{type(optimizer).__name__}, the Trainer's optimizer"
            loader = kwargs.get("train_dataloader")
            dataset = getattr(loader, "dataset", None)
            more, seen, notes = dataset_fields([dataset] if dataset is not None else [])
            fields.update(more)
            observed.update(seen)
            self.session.audit("static", fields, observed, [*notes, "the train audit follows at the first optimizer step"])
        self._watch = Watch(self.session)
        self._watch.__enter__()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch.__exit__(None, None, None)
