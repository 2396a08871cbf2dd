"""From observed calls to ``TransferSetup`` fields: the replayed train step and predict, and the
objects a run holds but never passes through a hook (its schedulers and the dataset being iterated).

The train step the audit traces is a **replay** of the user's own: the model called on the real
batch with the training flags it had, the loss the run computed (the same function, keyword
arguments and targets), backward and ``optimizer.step()``. It runs inside the audit, on the
engine's snapshot, which restores every parameter, gradient, buffer, flag and optimizer state
before the user's real step executes. A replay rather than the engine's default step, because the
default calls ``model.train()`` and cross-entropy, and a run that keeps frozen BatchNorm layers in
eval mode or trains with another loss must be audited as it is.

Schedulers and the dataset are found, read-only, among the live objects (``gc.get_objects``) once, at
the first audited step: the schedulers bound to the stepping optimizer, and the DataLoader iterators
that have yielded a batch (the one the loop is iterating).
"""
from __future__ import annotations

import gc
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.dataloader import _BaseDataLoaderIter

from tlaudit._names import unwrap
from tlaudit.auditing.rules.outputs import named_outputs
from tlaudit.watcher.observe import ModelCall

__all__ = ["find_schedulers", "find_datasets", "dataset_fields", "sample_slot", "train_fields", "inference_fields"]


def _callable_model(model: nn.Module) -> nn.Module:
    """The module to replay: a ``torch.compile`` wrapper's original module (no recompilation for
    the audit's hooks); other wrappers as they are."""
    inner = unwrap(model)
    return inner if type(model).__name__ == "OptimizedModule" else model


def find_schedulers(optimizer: torch.optim.Optimizer) -> list[Any]:
    """The live LR schedulers that step ``optimizer``; composite ones (SequentialLR, ChainedScheduler) first."""
    lr = torch.optim.lr_scheduler
    kinds = (lr.LRScheduler, lr.ReduceLROnPlateau)
    found = [o for o in gc.get_objects() if issubclass(type(o), kinds) and getattr(o, "optimizer", None) is optimizer]
    return sorted(found, key=lambda s: not isinstance(s, (lr.SequentialLR, lr.ChainedScheduler)))


def find_datasets() -> list[Dataset[Any]]:
    """The datasets of the DataLoader iterators that have yielded a batch, else of the only live DataLoader."""
    objects = gc.get_objects()
    active = [o for o in objects if issubclass(type(o), _BaseDataLoaderIter) and getattr(o, "_num_yielded", 0) > 0]
    datasets = list({id(it._dataset): it._dataset for it in active}.values())
    if datasets:
        return datasets
    loaders = [o for o in objects if issubclass(type(o), DataLoader)]
    return [loaders[0].dataset] if len(loaders) == 1 else []


def dataset_fields(datasets: list[Dataset[Any]]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """``transform`` and ``num_classes`` (its ``classes``) of the dataset being iterated, with provenance and notes."""
    fields: dict[str, Any] = {}
    observed: dict[str, str] = {}
    notes: list[str] = []
    if len(datasets) > 1:
        notes.append(f"{len(datasets)} DataLoaders were being iterated; the transform and classes are read from the first")
    if not datasets:
        return fields, observed, notes
    dataset, where = datasets[0], type(datasets[0]).__name__
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
        where = f"{where} of {type(dataset).__name__}"
    transform = getattr(dataset, "transform", None)
    if transform is not None:
        fields["transform"] = transform
        observed["transform"] = f"{where}.transform"
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        fields["num_classes"] = len(classes)
        observed["num_classes"] = f"{len(classes)}, {where}.classes"
    return fields, observed, notes


def _batch(sample: Any) -> int | None:
    return sample.shape[0] if isinstance(sample, torch.Tensor) and sample.ndim else None


def sample_slot(call: ModelCall) -> int | str | None:
    """Where the model's input batch is: ``0`` (the first argument), a keyword (``pixel_values``), or None."""
    if call.args:
        return 0 if isinstance(call.args[0], torch.Tensor) else None
    return next((k for k, v in call.kwargs.items() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)


def _call(module: nn.Module, call: ModelCall, slot: int | str, sample: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
    """Call ``module`` as the run did, with ``sample`` (and ``targets`` for a ``labels`` keyword) in place."""
    if slot == 0:
        return module(sample, *call.args[1:], **call.kwargs)
    kwargs = {**call.kwargs, str(slot): sample}
    if targets is not None and isinstance(kwargs.get("labels"), torch.Tensor):
        kwargs["labels"] = targets
    return module(*call.args, **kwargs)


def train_fields(call: ModelCall, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """``model``, ``sample``, ``targets``, ``optimizer``, ``scheduler`` and the replayed ``train_step``."""
    notes: list[str] = []
    fields: dict[str, Any] = {"model": call.module, "optimizer": optimizer}
    observed = {"model": f"{type(call.module).__name__}, the outermost module called", "optimizer": type(optimizer).__name__}
    schedulers = find_schedulers(optimizer)
    if schedulers:
        fields["scheduler"] = schedulers[0]
        observed["scheduler"] = type(schedulers[0]).__name__
        if len(schedulers) > 1:
            notes.append(f"{len(schedulers)} schedulers step the optimizer; the audit read {type(schedulers[0]).__name__}")
    slot = sample_slot(call)
    if slot is None:
        notes.append("the model's input is not a tensor: the audit used a synthesized sample and its default train step")
        return fields, observed, notes
    sample = call.args[0] if slot == 0 else call.kwargs[slot]
    fields["sample"] = sample
    observed["sample"] = f"the batch of the first step, shape {tuple(sample.shape)}"
    loss = call.loss
    targets, source = (loss.targets, f"the targets given to {loss.function.__name__}") if loss is not None else (None, "")
    if targets is None and slot != 0:
        targets, source = call.kwargs.get("labels"), "the model's labels= argument"
    if isinstance(targets, torch.Tensor) and targets.ndim and _batch(targets) == _batch(sample):
        fields["targets"] = targets
        observed["targets"] = source
    own_loss = loss is None and call.own_loss is not None
    if own_loss:
        notes.append("the model computed its own loss (its output's `loss`): the replayed step uses it")
    elif loss is None:
        notes.append("no torch.nn.functional loss seen after the model call: the replayed step uses cross-entropy")
    elif loss.output_index is None:
        notes.append(f"{loss.function.__name__} took a tensor derived from the model's output: the replayed step uses cross-entropy")
    fields["train_step"] = _replay_step(call, slot, own_loss)
    return fields, observed, notes


def _replay_step(call: ModelCall, slot: int | str, own_loss: bool) -> Any:
    """``train_step(model, sample, targets, optimizer)`` that repeats the observed step on the audit's copies."""
    module = _callable_model(call.module)
    loss = call.loss if call.loss is not None and call.loss.output_index is not None else None

    def replayed_step(model: nn.Module, sample: torch.Tensor, targets: torch.Tensor, optimizer: Any) -> None:
        call.set_modes()
        if optimizer is not None:
            optimizer.zero_grad()
        result = _call(module, call, slot, sample, targets)
        outputs = [t for _, t in named_outputs(result)]
        if own_loss:
            value = result["loss"] if isinstance(result, dict) else result.loss
        elif loss is not None:
            value = loss.function(outputs[loss.output_index], targets, *loss.rest, **loss.kwargs)  # type: ignore[index]
        else:
            value = F.cross_entropy(outputs[0], targets)
        if not value.requires_grad:  # nothing trainable: head-frozen / frozen-grad say why
            return
        (value if value.ndim == 0 else value.sum()).backward()
        if optimizer is not None:
            optimizer.step()

    return replayed_step


def inference_fields(call: ModelCall) -> tuple[dict[str, Any], dict[str, str]]:
    """``model``, ``sample`` and a ``predict`` that calls the model as the validation pass did:
    the same training flags, grad mode and inference mode."""
    module = _callable_model(call.module)

    slot = sample_slot(call)
    assert slot is not None  # the watcher audits only calls with a tensor input

    def replayed_predict(model: nn.Module, sample: torch.Tensor) -> Any:
        call.set_modes()
        if call.inference_mode:
            with torch.inference_mode():
                return _call(module, call, slot, sample)
        with torch.set_grad_enabled(call.grad_enabled):
            return _call(module, call, slot, sample)

    sample = call.args[0] if slot == 0 else call.kwargs[slot]
    fields = {"model": call.module, "sample": sample, "predict": replayed_predict}
    modes = "inference mode" if call.inference_mode else ("grad enabled" if call.grad_enabled else "no_grad")
    training = sum(call.training)
    observed = {
        "sample": f"the first validation batch, shape {tuple(sample.shape)}",
        "predict": f"the validation call replayed: {training} of {len(call.training)} modules in training mode, {modes}",
    }
    return fields, observed
