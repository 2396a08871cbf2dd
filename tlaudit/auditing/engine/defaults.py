"""What the audit feeds the model: the sample and targets (given or synthesized) and the default train step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlaudit.auditing.rules.inputs import Sample, batch_size, call_model, config_image_shape, token_inputs
from tlaudit.auditing.rules.outputs import named_outputs

__all__ = ["AUX_LOSS_WEIGHT", "DEFAULT_CROP", "OptimizerStepFailed", "default_train_step", "synthetic_sample", "synthetic_targets"]

AUX_LOSS_WEIGHT = 0.4
DEFAULT_CROP = 224


def synthetic_shape(model: nn.Module, crop: int) -> tuple[int, ...]:
    """A batch of 2 shaped for the model's first Conv or Linear layer, at ``crop`` pixels."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return (2, module.in_channels, crop, crop)
        if isinstance(module, nn.Conv1d):
            return (2, module.in_channels, crop)
        if isinstance(module, nn.Conv3d):
            return (2, module.in_channels, 16, crop, crop)
        if isinstance(module, nn.Linear):
            return (2, module.in_features)
    return (2, 3, crop, crop)


def synthetic_sample(model: nn.Module, crop: int | None) -> tuple[Sample, str]:
    """A seeded batch of 2 on the model's device and the note that says so: token ids below the
    vocabulary for a model that takes ``input_ids`` or starts with an ``nn.Embedding`` (with an
    attention mask where ``forward`` takes one, as keywords), else standard-normal values shaped for
    a Hugging Face config's image size or the first Conv/Linear layer, in the model's dtype."""
    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    tokens = token_inputs(model)
    if tokens is not None:
        vocab, length, keywords = tokens
        ids = torch.randint(vocab, (2, length), generator=gen).to(device)
        sample: Sample = ids
        if keywords:
            sample = {"input_ids": ids, **({"attention_mask": torch.ones_like(ids)} if "attention_mask" in keywords else {})}
        passed = f" ({', '.join(keywords)}, as keywords)" if keywords else ""
        note = f"no sample given: synthesized token ids of shape (2, {length}) below the vocabulary size {vocab}{passed}; pass sample= for input checks"
        return sample, note
    image = config_image_shape(model)
    shape = (2, *image) if image is not None else synthetic_shape(model, crop or DEFAULT_CROP)
    where = " (the model's config.image_size)" if image is not None else ""
    note = f"no sample given: synthesized a standard-normal batch of shape {tuple(shape)}{where}; pass sample= for input checks"
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype), note


def synthetic_targets(sample: Sample, num_classes: int | None) -> tuple[torch.Tensor, str]:
    """Seeded labels in ``[0, num_classes)``, one per sample, and the note that says so."""
    n = batch_size(sample)
    gen = torch.Generator().manual_seed(0)
    classes = num_classes or 1
    note = f"no targets given: synthesized {n} labels in [0, {classes})"
    device = next(iter(sample.values())).device if isinstance(sample, Mapping) else sample.device
    return torch.randint(classes, (n,), generator=gen).to(device), note


def default_train_step(model: nn.Module, sample: Sample, targets: torch.Tensor, optimizer: Any) -> None:
    """``model.train()``, ``zero_grad``, cross-entropy over every output (aux weighted 0.4), backward, step.

    A loss that requires no gradient (everything frozen) ends the step after the forward pass.
    """
    model.train()
    if optimizer is not None:
        optimizer.zero_grad()
    outputs = call_model(model, sample)
    loss = _loss(outputs, targets)
    if not loss.requires_grad:  # nothing trainable: head-frozen / frozen-grad report why
        return
    loss.backward()
    if optimizer is not None:
        try:
            optimizer.step()
        except Exception as err:  # e.g. state loaded for other shapes: optimizer-state says why
            raise OptimizerStepFailed(f"optimizer.step() raised {type(err).__name__}: {err}") from err


class OptimizerStepFailed(RuntimeError):
    """The default step's ``optimizer.step()`` raised: a problem of the optimizer, not of the sample."""


def _loss(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    tensors = [t for _, t in named_outputs(outputs)]
    if not tensors:
        raise TypeError(f"model returned no tensor: {type(outputs).__name__}")
    loss = F.cross_entropy(tensors[0], _fit(targets, tensors[0]))
    for aux in tensors[1:]:
        loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux, _fit(targets, aux))
    return loss


def _fit(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Labels the output cannot take are made to fit (``label-range`` and ``head-size`` report them).

    Integer labels out of range are wrapped into it; soft/one-hot targets of the wrong width become
    their argmax.
    """
    if logits.ndim < 2:
        return targets
    if targets.is_floating_point():
        if targets.shape == logits.shape:
            return targets
        targets = targets.argmax(dim=-1) if targets.ndim >= 2 else targets.long()
    columns = logits.shape[1]
    bad = (targets != -100) & ((targets < 0) | (targets >= columns))
    if bool(bad.any()):
        return torch.where(bad, targets.remainder(columns), targets)
    return targets
