"""Optimizer wrappers: a scheduler bound to accelerate's ``AcceleratedOptimizer``, Lightning's
``LightningOptimizer`` or a DeepSpeed-style wrapper steps the torch optimizer the wrapper holds in
``.optimizer``. The rule is by shape; no framework is imported.

Shared by ``TransferSetup`` (a scheduler must step the setup's optimizer), the audit's schedule
reading and the run-time watcher.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["bound_to", "raw_optimizer", "rebound"]


def bound_to(holder: Any, optimizer: Any) -> bool:
    """``holder.optimizer`` is ``optimizer``, or wraps it through ``.optimizer`` attributes.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> class Wrapper:
        ...     def __init__(self, optimizer):
        ...         self.optimizer = optimizer
        >>> scheduler = torch.optim.lr_scheduler.StepLR(opt, 1)
        >>> bound_to(scheduler, opt), bound_to(type("S", (), {"optimizer": Wrapper(opt)})(), opt)
        (True, True)
    """
    current, seen = getattr(holder, "optimizer", None), set()
    while current is not None and id(current) not in seen:
        if current is optimizer:
            return True
        seen.add(id(current))
        current = getattr(current, "optimizer", None)
    return False


def raw_optimizer(optimizer: Any) -> Any:
    """The innermost torch optimizer a wrapper holds through ``.optimizer`` attributes (``optimizer``
    itself when it wraps none)."""
    current, seen = optimizer, {id(optimizer)}
    inner = getattr(current, "optimizer", None)
    while isinstance(inner, torch.optim.Optimizer) and id(inner) not in seen:
        current, seen = inner, seen | {id(inner)}
        inner = getattr(current, "optimizer", None)
    return current


def rebound(scheduler: Any, optimizer: Any) -> Any:
    """``scheduler`` as seen from ``optimizer``: itself when bound to it, else (bound to a wrapper of
    it) a shallow copy whose ``optimizer`` is the wrapped one; the run's scheduler is not touched."""
    if getattr(scheduler, "optimizer", None) is optimizer or not bound_to(scheduler, optimizer):
        return scheduler
    view = copy.copy(scheduler)
    view.optimizer = optimizer
    return view
