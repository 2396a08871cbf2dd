"""Snapshot and restore of everything an audit could touch of the user's objects.

Covered: parameter values (in place, identity kept), ``requires_grad`` flags, ``.grad`` tensors
(identity and values), buffers, every module's training flag, optimizer state and param groups,
scheduler state, the grad mode, and the torch (CPU and CUDA), Python and NumPy RNG states.
"""

from __future__ import annotations

import copy
import random
import sys
from dataclasses import dataclass
from typing import Any, overload

import torch
from torch import nn

from tlaudit.evaluation import TrainingFlags

__all__ = ["Snapshot", "ParamState", "BufferState"]

_MISSING = object()


@dataclass(frozen=True)
class ParamState:
    """A parameter as it was: a copy of its value, its flag, its ``.grad`` tensor and a copy of that."""

    param: nn.Parameter
    value: torch.Tensor
    requires_grad: bool
    grad: torch.Tensor | None
    grad_value: torch.Tensor | None


@dataclass(frozen=True)
class BufferState:
    """A buffer slot of a module as it was: the tensor object there and a copy of its value."""

    module: nn.Module
    name: str
    buffer: torch.Tensor | None
    value: torch.Tensor | None


COPIES = ("auto", "device", "host")
"""Where the snapshot keeps its copies: ``"device"`` beside the tensors (fastest restore), ``"host"``
in CPU memory (no device memory), ``"auto"`` on the device unless that would leave less than the
copies' size free on it (then the host)."""


def copies_on_host(choice: str, device: torch.device, copy_bytes: int, free_bytes: int | None) -> bool:
    """Whether the copies go to host memory for ``choice`` (see :data:`COPIES`)."""
    if choice not in COPIES:
        raise ValueError(f"invalid snapshot: {choice!r} (snapshot); expected one of {', '.join(map(repr, COPIES))}")
    if device.type == "cpu" or choice == "device":
        return False
    if choice == "host":
        return True
    return free_bytes is not None and free_bytes < 2 * copy_bytes


class Snapshot:
    """Taken at construction; :meth:`restore` puts everything back (and can be called many times).

    ``copies`` says where the copies are kept (:data:`COPIES`); restoring copies them back in place.
    """

    def __init__(self, model: nn.Module, optimizer: Any = None, scheduler: Any = None, *, copies: str = "auto") -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        tensors = [*model.parameters(), *model.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        size = sum(t.numel() * t.element_size() for t in tensors)
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" and copies == "auto" else None
        self.on_host = copies_on_host(copies, device, size, free)
        keep = _to_host if self.on_host else _clone
        with torch.no_grad():
            self.params = [ParamState(p, keep(p), p.requires_grad, p.grad, keep(p.grad)) for p in model.parameters()]
            self.buffers = [
                BufferState(module, name, buf, keep(buf)) for module in model.modules() for name, buf in module._buffers.items()
            ]
        self.modes = TrainingFlags.of(model)
        self.grad_enabled = torch.is_grad_enabled()
        self.rng = _rng_state()
        self.optimizer_state = _optimizer_state(optimizer) if optimizer is not None else None
        self.scheduler_state = _scheduler_state(scheduler) if scheduler is not None else None

    def restore(self) -> None:
        with torch.no_grad():
            for s in self.params:
                p = s.param
                if p.shape == s.value.shape:
                    p.copy_(s.value)
                else:
                    p.data = s.value.to(p.device, copy=True)
                if p.requires_grad != s.requires_grad:
                    p.requires_grad_(s.requires_grad)
                if s.grad is not None and s.grad_value is not None:
                    s.grad.copy_(s.grad_value)
                p.grad = s.grad
            for b in self.buffers:
                if b.buffer is not None and b.value is not None:
                    b.buffer.copy_(b.value)
                b.module._buffers[b.name] = b.buffer
        self.modes.restore()
        torch.set_grad_enabled(self.grad_enabled)
        _set_rng_state(self.rng)
        if self.optimizer_state is not None:
            _restore_optimizer(self.optimizer, self.optimizer_state)
        if self.scheduler_state is not None:
            _restore_scheduler(self.scheduler, self.scheduler_state)


@overload
def _clone(t: torch.Tensor) -> torch.Tensor: ...
@overload
def _clone(t: torch.Tensor | None) -> torch.Tensor | None: ...
def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


@overload
def _to_host(t: torch.Tensor) -> torch.Tensor: ...
@overload
def _to_host(t: torch.Tensor | None) -> torch.Tensor | None: ...
def _to_host(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to("cpu", copy=True)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        sys.modules["numpy"].random.set_state(state["numpy"])


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    state = {}
    for param, entry in optimizer.state.items():
        state[param] = {
            key: (value, value.detach().clone()) if isinstance(value, torch.Tensor) else (value, copy.deepcopy(value))
            for key, value in entry.items()
        }
    groups = [(group, {key: (value, _group_value_copy(key, value)) for key, value in group.items()}) for group in optimizer.param_groups]
    return {
        "state": state,
        "groups": groups,
        "n_groups": len(optimizer.param_groups),
        "opt_called": getattr(optimizer, "_opt_called", _MISSING),
    }


def _group_value_copy(key: str, value: Any) -> Any:
    """A param-group value as it is now: tensors by value, the ``params`` list by identity, others deep-copied."""
    if key == "params":
        return list(value)
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def _restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    for param in list(optimizer.state):
        if param not in saved["state"]:
            del optimizer.state[param]
    with torch.no_grad():
        for param, entry in saved["state"].items():
            restored = {}
            for key, (original, value) in entry.items():
                if isinstance(original, torch.Tensor):
                    if original.shape == value.shape:
                        original.copy_(value)
                    restored[key] = original
                else:
                    restored[key] = copy.deepcopy(value)
            optimizer.state[param] = restored
    del optimizer.param_groups[saved["n_groups"] :]
    for group, values in saved["groups"]:
        restored = {}
        with torch.no_grad():
            for key, (original, value) in values.items():
                if isinstance(original, torch.Tensor) and original.shape == value.shape:
                    original.copy_(value)  # an LR held in a tensor: schedulers fill it in place
                    restored[key] = original
                else:
                    restored[key] = _group_value_copy(key, value)
        group.clear()
        group.update(restored)
    optimizer.param_groups[:] = [group for group, _ in saved["groups"]]
    if saved["opt_called"] is _MISSING:
        if "_opt_called" in vars(optimizer):
            delattr(optimizer, "_opt_called")  # torch's private flag on the instance, not in its stubs
    else:
        setattr(optimizer, "_opt_called", saved["opt_called"])  # noqa: B010 - as above, not in the stubs


def _scheduler_state(scheduler: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scheduler's state: its values as they are (lists copied shallowly, keeping tensors) and a deep copy."""
    state = scheduler.state_dict()
    kept = {key: (list(value) if isinstance(value, list) else value) for key, value in state.items()}
    return kept, copy.deepcopy(state)


def _restore_scheduler(scheduler: Any, saved: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """``load_state_dict`` of the saved copy, with the scheduler's own tensors (``base_lrs`` of a tensor LR) refilled in place."""
    kept, values = saved
    scheduler.load_state_dict({key: _refill(kept.get(key, _MISSING), value) for key, value in copy.deepcopy(values).items()})


def _refill(original: Any, value: Any) -> Any:
    """``value`` with each tensor that stands where ``original`` had one replaced by that tensor, refilled."""
    if isinstance(original, dict) and isinstance(value, dict):  # SequentialLR and ChainedScheduler nest their parts
        return {key: _refill(original.get(key, _MISSING), v) for key, v in value.items()}
    if isinstance(original, torch.Tensor) and isinstance(value, torch.Tensor):
        if original.shape == value.shape and original.dtype == value.dtype:
            with torch.no_grad():
                original.copy_(value)
            return original
        return value
    if (
        isinstance(original, (list, tuple))
        and not hasattr(original, "_fields")  # a namedtuple is rebuilt from its fields, not an iterable
        and type(original) is type(value)
        and len(original) == len(value)
    ):
        return type(value)(_refill(o, v) for o, v in zip(original, value))
    return value
