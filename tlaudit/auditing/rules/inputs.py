"""What a model takes as input, read from the model: a Hugging Face config's image size, token ids
below its vocabulary; and a sample that is a tensor or a dict of tensors (a tokenizer's output),
the dict passed as keywords.

Shared by the audit's synthesized sample and default step, its checks, and the run-time watcher.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["Sample", "batch_size", "call_model", "clone_sample", "config_image_shape", "describe_sample", "token_inputs"]

Sample = torch.Tensor | Mapping[str, torch.Tensor]
"""A batch as the model takes it: a tensor (``model(x)``) or named tensors (``model(**batch)``)."""

TOKENS = 16
"""Length of synthesized token sequences (shorter where ``max_position_embeddings`` is)."""


def config_image_shape(model: nn.Module) -> tuple[int, int, int] | None:
    """``(channels, height, width)`` a Hugging Face vision model's config declares (``num_channels``,
    ``image_size``), or None where it declares no image size."""
    config = getattr(model, "config", None)
    size = getattr(config, "image_size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        height, width = size, size
    elif isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        height, width = size
    else:
        return None
    channels = getattr(config, "num_channels", 3)
    return (int(channels) if isinstance(channels, int) else 3, int(height), int(width))


def _forward_names(model: nn.Module) -> list[str]:
    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return []


def token_inputs(model: nn.Module) -> tuple[int, int, list[str]] | None:
    """``(vocab, length, keywords)`` for a model that takes token ids, else None.

    A model takes token ids when its ``forward`` has an ``input_ids`` parameter (Hugging Face text
    models; ``keywords`` are then ``input_ids`` and, where ``forward`` takes it, ``attention_mask``)
    or its first layer is an ``nn.Embedding`` (``keywords`` empty: ids passed positionally). The
    vocabulary is ``config.vocab_size``, else the first Embedding's ``num_embeddings``; the length is
    ``min(16, config.max_position_embeddings)``.
    """
    names = _forward_names(model)
    first = next((m for m in model.modules() if next(m.parameters(recurse=False), None) is not None), None)
    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if "input_ids" in names:
        keywords = ["input_ids"] + (["attention_mask"] if "attention_mask" in names else [])
    elif isinstance(first, nn.Embedding):
        keywords = []
    else:
        return None
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 1:
        vocab = embedding.num_embeddings if embedding is not None else None
    if vocab is None:
        return None
    positions = getattr(config, "max_position_embeddings", None)
    length = min(TOKENS, positions) if isinstance(positions, int) and positions > 0 else TOKENS
    return vocab, length, keywords


def batch_size(sample: Sample) -> int:
    """Items in the batch: dimension 0 of the tensor, or of the dict's first tensor (1 for a scalar)."""
    tensor = next(iter(sample.values())) if isinstance(sample, Mapping) else sample
    return int(tensor.shape[0]) if tensor.ndim else 1


def clone_sample(sample: Sample) -> Sample:
    """A copy the model may change in place without touching the user's batch."""
    if isinstance(sample, Mapping):
        return {key: value.clone() for key, value in sample.items()}
    return sample.clone()


def call_model(model: nn.Module, sample: Sample) -> Any:
    """``model(**sample)`` for named tensors, ``model(sample)`` for a tensor."""
    return model(**sample) if isinstance(sample, Mapping) else model(sample)


def describe_sample(sample: Sample) -> str:
    """``shape (2, 3, 32, 32)`` / ``input_ids (2, 16), attention_mask (2, 16)`` for messages."""
    if isinstance(sample, Mapping):
        return ", ".join(f"{key} {tuple(value.shape)}" for key, value in sample.items())
    return f"shape {tuple(sample.shape)}"
