"""``TransferAuditCallback``: a Hugging Face ``Trainer`` callback (extra ``tlaudit[huggingface]``), for
vision and text models alike.

* ``on_train_begin`` (the optimizer and scheduler exist): the **static** audit, the checks that need
  no train step, on the model, the optimizer (accelerate's ``AcceleratedOptimizer`` unwrapped), the
  ``lr_scheduler`` the Trainer hands over (so a warm-up that starts at lr 0 is read as the schedule
  it is, and its peak is checked), the train dataset's ``transform`` and class count, and the
  statistics of the image processor (the Trainer's ``processing_class``, else the one saved beside
  the checkpoint); with the dataset's class count, ``head-size`` too, on a sample of the shape the
  model's config declares;
* then it watches the loop with :func:`tlaudit.watch`'s engine: the **train** audit at the first
  optimizer step (the model called with its own inputs, ``pixel_values=`` or ``input_ids=``, and
  ``labels=``; the loss it computes itself, replayed on the snapshot), and the **inference** audit
  after the first evaluation pass;
* ``on_train_end`` stops watching, and says so when no evaluation ran during ``train()`` (inference
  was then never audited).

``fail_on`` raises :class:`~tlaudit.AuditFailed` out of ``Trainer.train()`` (a one-line reason; the
report is written once, before); ``fail_on=None`` reports and goes on. Reports are in
``callback.reports`` by stage.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from transformers import TrainerCallback

from tlaudit.auditing.report import Report
from tlaudit.watcher import Watch
from tlaudit.watcher.build import dataset_fields
from tlaudit.watcher.facts import bound_to, config_sample, hf_weights, rebound
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
        raw = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it
        if isinstance(model, torch.nn.Module) and (self.session.checks("static") or self.session.checks("train")):
            fields: dict[str, Any] = {"model": model}
            observed = {"model": type(model).__name__}
            if isinstance(raw, torch.optim.Optimizer):
                fields["optimizer"] = raw
                observed["optimizer"] = f"{type(raw).__name__}, the Trainer's optimizer"
                scheduler = kwargs.get("lr_scheduler")
                scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate's AcceleratedScheduler wraps it
                if scheduler is not None and bound_to(scheduler, raw):
                    fields["scheduler"] = rebound(scheduler, raw)
                    observed["scheduler"] = f"{type(scheduler).__name__}, the Trainer's lr_scheduler"
            loader = kwargs.get("train_dataloader")
            dataset = getattr(loader, "dataset", None)
            more, seen, notes = dataset_fields([dataset] if dataset is not None else [])
            fields.update(more)
            observed.update(seen)
            expected = hf_weights(model, kwargs.get("processing_class"))
            if expected is not None:
                fields["weights"] = expected[0]
                observed["weights"] = expected[1]
            also: list[str] = []
            sample = config_sample(model)
            if sample is not None and (fields.get("num_classes") or self.session.intent.get("num_classes")):
                fields["sample"] = sample
                observed["sample"] = f"synthesized from the model's config, shape {tuple(sample.shape)}"
                also.append("head-size")
            self.session.audit(
                "static",
                fields,
                observed,
                [*notes, "the train audit follows at the first optimizer step"],
                also=also,
            )
        self._watch = Watch(self.session)
        self._watch.say_missing_inference = False  # on_train_end says it, with what this callback cannot see
        self._watch.__enter__()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch.__exit__(None, None, None)
            if "inference" not in self.session.reports and self.session.checks("inference"):
                stream = self.session.stream or sys.stderr
                stream.write(
                    "tlaudit watch: no inference audited: no evaluation ran during train(), so eval-mode, "
                    "eval-nondeterministic and grad-inference did not run; predictions made after train() "
                    "are not watched by this callback (run the program under `tlaudit run` to audit them)\n"
                )
                stream.flush()
