"""Train and eval modes: run inference the right way and put every module's mode back afterwards."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["inference"]


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
    modules = list(model.modules())
    flags = [m.training for m in modules]
    grad_context = torch.inference_mode() if inference_mode else torch.no_grad()
    try:
        model.eval()
        with grad_context:
            yield model
    finally:
        for module, flag in zip(modules, flags):
            module.training = flag
