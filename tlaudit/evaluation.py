"""Train and eval modes: run inference the right way and put every module's mode back afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TrainingFlags", "inference", "training_flags_kept"]


@dataclass(frozen=True)
class TrainingFlags:
    """Every module's ``training`` flag, as it was when taken: the one save-and-restore of modes that
    :func:`inference`, the audit's snapshot, the extractor and the watchers share."""

    modules: tuple[nn.Module, ...]
    flags: tuple[bool, ...]

    @classmethod
    def of(cls, model: nn.Module) -> TrainingFlags:
        modules = tuple(model.modules())
        return cls(modules, tuple(m.training for m in modules))

    def restore(self) -> None:
        """Set each module's flag back (``train()``/``eval()`` are not called: no hook of theirs runs)."""
        for module, flag in zip(self.modules, self.flags):
            module.training = flag


@contextlib.contextmanager
def training_flags_kept(model: nn.Module) -> Iterator[TrainingFlags]:
    """Every module's training flag put back on exit, also after an exception."""
    flags = TrainingFlags.of(model)
    try:
        yield flags
    finally:
        flags.restore()


@contextlib.contextmanager
def inference(model: nn.Module, *, inference_mode: bool = True) -> Iterator[nn.Module]:
    """``model.eval()`` plus ``torch.inference_mode()`` (or ``no_grad`` with ``inference_mode=False``).

    Every module's previous training flag is restored on exit, also after an exception.

    Example:
        >>> import torch, torchvision
        >>> m = torchvision.models.resnet18().train()
        >>> with inference(m):
        ...     y = m(torch.randn(1, 3, 64, 64))
        >>> m.training, y.requires_grad
        (True, False)
    """
    grad_context = torch.inference_mode() if inference_mode else torch.no_grad()
    with training_flags_kept(model):
        model.eval()
        with grad_context:
            yield model
