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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.dataloader import _BaseDataLoaderIter

from tlaudit._names import unwrap
from tlaudit.auditing.rules.outputs import named_outputs
from tlaudit.watcher.facts import class_count, find_schedulers, prefetch_loaders, processor_statistics, rebound
from tlaudit.watcher.live import instances
from tlaudit.watcher.observe import ModelCall

__all__ = ["find_loaders", "find_datasets", "dataset_fields", "sample_slot", "train_fields", "inference_fields"]


def _callable_model(model: nn.Module) -> nn.Module:
    """The module to replay: a ``torch.compile`` wrapper's original module (no recompilation for
    the audit's hooks); other wrappers as they are."""
    inner = unwrap(model)
    return inner if type(model).__name__ == "OptimizedModule" else model


def find_loaders() -> list[Any]:
    """The DataLoaders whose iterators have yielded a batch (the ones the loop is iterating), else the only live one."""
    active = [o for o in instances(_BaseDataLoaderIter) if getattr(o, "_num_yielded", 0) > 0]
    loaders = instances(DataLoader)
    datasets = {id(it._dataset) for it in active}
    iterated = [loader for loader in loaders if id(loader.dataset) in datasets]
    return iterated or (loaders if len(loaders) == 1 else [])


def find_datasets(loaders: list[Any] | None = None) -> list[Dataset[Any]]:
    """The datasets of the DataLoader iterators that have yielded a batch, else of the only live
    DataLoader (``loaders``: what :func:`find_loaders` returned, if called already)."""
    return list({id(loader.dataset): loader.dataset for loader in (find_loaders() if loaders is None else loaders)}.values())


def dataset_fields(datasets: list[Dataset[Any]], loaders: list[Any] | None = None) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """``transform`` (the dataset's, an image processor's statistics, or a timm ``PrefetchLoader`` that
    normalizes on the device) and ``num_classes`` of the dataset being iterated, with provenance and notes."""
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
    stats = processor_statistics(transform) if transform is not None and hasattr(transform, "image_mean") else None
    if stats is not None:  # an image processor used as the transform: the statistics it applies
        from torchvision import transforms

        fields["transform"] = transforms.Normalize(stats["mean"], stats["std"])
        observed["transform"] = f"{where}.transform, {type(transform).__name__}'s image_mean/image_std"
    elif transform is not None:
        fields["transform"] = transform
        observed["transform"] = f"{where}.transform"
    prefetchers = prefetch_loaders(loaders or [])
    if prefetchers:  # timm normalizes on the device: the loader is the transform that normalizes
        fields["transform"] = prefetchers[0]
        observed["transform"] = f"{type(prefetchers[0]).__name__} over the DataLoader of {where}"
    counted = class_count(dataset)
    if counted is not None:
        fields["num_classes"] = counted[0]
        observed["num_classes"] = f"{counted[0]}, {where}.{counted[1]}"
    return fields, observed, notes


def _batch(sample: Any) -> int | None:
    return sample.shape[0] if isinstance(sample, torch.Tensor) and sample.ndim else None


_LABEL_NAMES = frozenset({"labels", "label", "targets", "target", "y"})


def _input_names(module: nn.Module) -> list[str]:
    """The model's input names in order: its ``main_input_name`` (Hugging Face models declare it),
    then the parameters of its ``forward`` signature."""
    import inspect

    names: list[str] = []
    main = getattr(module, "main_input_name", None)
    if isinstance(main, str):
        names.append(main)
    try:
        names.extend(n for n in inspect.signature(module.forward).parameters if n not in names)
    except (TypeError, ValueError):
        pass
    return names


def sample_slot(call: ModelCall) -> int | str | None:
    """Where the model's input batch is: ``0`` (the first argument), a keyword the model's signature
    names (``pixel_values``, ``input_ids``), or None. A 0-d tensor (``num_items_in_batch``) or the
    labels are never the input."""
    if call.args:
        return 0 if isinstance(call.args[0], torch.Tensor) and call.args[0].ndim else None

    def batch_like(name: str) -> bool:
        value = call.kwargs.get(name)
        return isinstance(value, torch.Tensor) and value.ndim > 0 and name not in _LABEL_NAMES

    for name in _input_names(_callable_model(call.module)):
        if batch_like(name):
            return name
    return next((k for k in call.kwargs if batch_like(k)), None)


def _target_slot(call: ModelCall, slot: int | str) -> int | str | None:
    """Where a model that computes its own loss takes the targets: ``labels=``, or a second positional
    integer tensor of the input's batch size (timm's ``ClassificationTask(input, target)``)."""
    if slot != 0 and isinstance(call.kwargs.get("labels"), torch.Tensor):
        return "labels"
    if slot == 0 and len(call.args) > 1:
        second = call.args[1]
        if isinstance(second, torch.Tensor) and second.ndim and not second.is_floating_point() and _batch(second) == _batch(call.args[0]):
            return 1
    return None


def _detached(value: Any) -> Any:
    """A tensor argument cut from the run's graph (the replay must never backward into the run's own)."""
    return value.detach() if isinstance(value, torch.Tensor) else value


def _call(
    module: nn.Module,
    call: ModelCall,
    slot: int | str,
    sample: torch.Tensor,
    targets: torch.Tensor | None = None,
    target_slot: int | str | None = None,
) -> Any:
    """Call ``module`` as the run did, with ``sample`` (and ``targets`` where the model takes them) in place."""
    args = [_detached(a) for a in call.args]
    kwargs = {k: _detached(v) for k, v in call.kwargs.items()}
    if slot == 0:
        args[0] = sample
    else:
        kwargs[str(slot)] = sample
    if targets is not None and target_slot is not None:
        if isinstance(target_slot, int):
            args[target_slot] = targets
        else:
            kwargs[target_slot] = targets
    return module(*args, **kwargs)


def train_fields(
    call: ModelCall,
    optimizer: torch.optim.Optimizer,
    given: Any = None,
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """``model``, ``sample``, ``targets``, ``optimizer``, ``scheduler`` (``given``: the one a framework
    handed over) and the replayed ``train_step``."""
    notes: list[str] = []
    fields: dict[str, Any] = {"model": call.module, "optimizer": optimizer}
    observed = {"model": f"{type(call.module).__name__}, the outermost module called", "optimizer": type(optimizer).__name__}
    schedulers = find_schedulers(optimizer, given)
    if schedulers:
        fields["scheduler"] = rebound(schedulers[0], optimizer)
        observed["scheduler"] = type(schedulers[0]).__name__
        if len(schedulers) > 1:
            notes.append(f"{len(schedulers)} schedulers step the optimizer; the audit read {type(schedulers[0]).__name__}")
    slot = sample_slot(call)
    if slot is None:
        notes.append("the model's input is not a tensor: the audit used a synthesized sample and its default train step")
        return fields, observed, notes
    sample = (call.args[0] if isinstance(slot, int) else call.kwargs[slot]).detach()  # never a way back into the run's graph
    fields["sample"] = sample
    observed["sample"] = f"the batch of the first step, shape {tuple(sample.shape)}"
    loss = call.loss
    targets, source = (loss.targets, f"the targets given to {loss.function.__name__}") if loss is not None else (None, "")
    target_slot = _target_slot(call, slot)
    if targets is None and target_slot is not None:
        targets = call.kwargs[target_slot] if isinstance(target_slot, str) else call.args[target_slot]
        source = (
            "the model's labels= argument" if target_slot == "labels" else f"the model's argument {target_slot} (a loss computed inside)"
        )
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
    fields["train_step"] = _replay_step(call, slot, own_loss, target_slot)
    return fields, observed, notes


def _replay_step(call: ModelCall, slot: int | str, own_loss: bool, target_slot: int | str | None = None) -> Any:
    """``train_step(model, sample, targets, optimizer)`` that repeats the observed step on the audit's copies."""
    module = _callable_model(call.module)
    loss = call.loss if call.loss is not None and call.loss.output_index is not None else None

    def replayed_step(model: nn.Module, sample: torch.Tensor, targets: torch.Tensor, optimizer: Any) -> None:
        call.set_modes()
        if optimizer is not None:
            optimizer.zero_grad()
        result = _call(module, call, slot, sample, targets, target_slot)
        outputs = [t for _, t in named_outputs(result)]
        if own_loss:
            value = result["loss"] if isinstance(result, dict) else result.loss
        elif loss is not None:
            value = loss.function(outputs[loss.output_index], targets, *loss.rest, **loss.kwargs)  # type: ignore[index]
            for extra in call.more_losses:  # auxiliary outputs: their terms reach their heads (weights left out)
                if extra.output_index is not None and extra.output_index < len(outputs):
                    aux_targets = targets if extra.targets is loss.targets else extra.targets
                    term = extra.function(outputs[extra.output_index], aux_targets, *extra.rest, **extra.kwargs)
                    value = value + (term if term.ndim == 0 else term.sum())
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

    sample = call.args[0] if isinstance(slot, int) else call.kwargs[slot]
    fields = {"model": call.module, "sample": sample, "predict": replayed_predict}
    modes = "inference mode" if call.inference_mode else ("grad enabled" if call.grad_enabled else "no_grad")
    training = sum(call.training)
    observed = {
        "sample": f"the first validation batch, shape {tuple(sample.shape)}",
        "predict": f"the validation call replayed: {training} of {len(call.training)} modules in training mode, {modes}",
    }
    return fields, observed
