"""Later predictions: a model's inference is audited again when a later call runs in other modes.

The watcher audits a model's inference at its first validation pass. A program often predicts again
later, in its own code (PyTorch's tutorial calls ``visualize_model`` after ``train_model`` returns),
and a prediction that forgot ``model.eval()`` there is as wrong as one in the loop. So after a
model's inference audit, one forward pre-hook on that model (the module the audited call was of;
removed when the watch closes, nothing else on it is touched) looks at each later call:

* a call is **inference** only on evidence, as at the first audit: grad mode off, inference mode,
  or every module in eval mode (:attr:`~tlaudit.watcher.observe.ModelCall.validation`); a call with
  gradients on and the model training returns at once (one attribute read: the training steps cost
  nothing);
* its **modes** (every module's training flag, grad mode, inference mode) are compared with those of
  the inference calls audited so far; the first call in modes not seen yet is audited, before it runs;
  the same modes again cost a list of flags (validation batches only);
* a call made **within a training step** (after a training forward of that model since the last
  optimizer step: pseudo-labels or a detached second view computed without gradients) is part of the
  step, not a prediction;
* a call in new modes with a module **in training mode** is decided at the next optimizer step, not
  before it runs, since one before the step's training forward may be part of that step
  (pseudo-labels computed first, from some epoch on): no training forward followed it, it is
  audited then; one followed, it is audited at the step after unless it comes again before that
  step's training forward (then it is part of the step). At the watch's end, one no training
  forward followed is audited, the other left alone (unsure). Calls in eval or inference mode are
  audited before they run;
* a call that **recalibrates BatchNorm statistics** (a BatchNorm layer in training mode with
  ``momentum=None``, the cumulative average ``torch.optim.swa_utils.update_bn`` sets) is not a
  prediction and is left alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tlaudit.watcher.calls import within_step
from tlaudit.watcher.observe import ModelCall

__all__ = ["Modes", "ModesWatch", "describe_modes"]

Modes = tuple[tuple[bool, ...], bool, bool]
"""``(training flag of every module of model.modules(), grad enabled, inference mode)``."""


def describe_modes(modes: Modes) -> str:
    """``"68 of 68 modules in training mode, no_grad"``."""
    flags, grad, inference = modes
    mode = "inference mode" if inference else ("grad enabled" if grad else "no_grad")
    return f"{sum(flags)} of {len(flags)} modules in training mode, {mode}"


def _recalibrating(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.momentum is None for m in module.modules())


class ModesWatch:
    """The pre-hooks on audited models; ``on_new(call, before)`` audits a call in new modes (``before``:
    the modes audited so far); ``paused()`` is true while the watcher's own audits call the model."""

    def __init__(self, on_new: Callable[[ModelCall, list[Modes]], None], paused: Callable[[], bool]) -> None:
        self.on_new = on_new
        self.paused = paused
        self._handles: dict[int, Any] = {}
        self._seen: dict[int, list[Modes]] = {}
        self._stepping: set[int] = set()
        """Ids of the watched models with a training forward since the last optimizer step."""
        self._pending: dict[tuple[int, Modes], tuple[ModelCall, list[Modes], bool]] = {}
        """Training-mode candidates of this step: the call, its model's audited modes, and whether a
        training forward of the model followed it."""
        self._suspects: dict[tuple[int, Modes], tuple[ModelCall, list[Modes]]] = {}
        """Candidates of the last step that a training forward followed: part of the step if they recur."""

    def also_seen(self, module: nn.Module, modes: Modes) -> None:
        """Calls of ``module`` in ``modes`` are part of its training step: never a later prediction."""
        seen = self._seen.setdefault(id(module), [])
        if modes not in seen:
            seen.append(modes)

    def step(self) -> None:
        """An optimizer step ran: settle this step's training-mode candidates (see the module doc);
        the next calls belong to the next step."""
        pending, suspects = self._pending, self._suspects
        self._pending, self._suspects = {}, {}
        self._stepping.clear()
        for key, (call, seen) in suspects.items():
            again = pending.get(key)
            if again is not None and again[2]:  # came again before the training forward: part of the step
                self.also_seen(call.module, key[1])
                del pending[key]
            else:
                self._consider(call, seen)
        for key, (call, seen, followed) in pending.items():
            if followed:
                self._suspects[key] = (call, seen)
            else:
                self._consider(call, seen)

    def flush(self) -> None:
        """The watch ends: a candidate no training forward followed is audited; a suspect is left alone."""
        pending, self._pending, self._suspects = self._pending, {}, {}
        for call, seen, followed in pending.values():
            if not followed:
                self._consider(call, seen)

    def add(self, call: ModelCall) -> None:
        """``call`` was audited as inference: watch its model's later calls for other modes."""
        module = call.module
        seen = self._seen.setdefault(id(module), [])
        modes = (tuple(call.training), call.grad_enabled, call.inference_mode)
        if modes not in seen:
            seen.append(modes)
        if id(module) not in self._handles:
            hook = functools.partial(self._pre_forward, seen)
            self._handles[id(module)] = module.register_forward_pre_hook(hook, with_kwargs=True)

    def close(self) -> None:
        """Remove every hook; safe to call more than once."""
        while self._handles:
            _, handle = self._handles.popitem()
            handle.remove()
        self._seen.clear()

    def seen_later(self, window: list[ModelCall], start: int) -> None:
        """Calls the observer recorded after an audited inference call (``window[start:]``; the window
        held both): each of an inference-audited model, inference on evidence, in modes not audited
        yet, and not within a training step, is audited."""
        for call in window[start:]:
            seen = self._seen.get(id(call.module))
            if seen is not None and call.validation and not within_step(call, window):
                self._consider(call, seen)

    def _pre_forward(self, seen: list[Modes], module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.paused():
            return None
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        if grad and not inference and module.training:  # a training call
            self._training_forward(module)
            return None
        if torch.compiler.is_compiling():
            return None
        flags = [m.training for m in module.modules()]
        if grad and not inference and any(flags):  # gradients on, a part training: a training call
            self._training_forward(module)
            return None
        if id(module) in self._stepping:  # after this step's training forward: part of the step
            return None
        call = ModelCall(module=module, args=tuple(args), kwargs=dict(kwargs), training=flags, grad_enabled=grad, inference_mode=inference)
        if any(flags) and not inference:  # may be part of this step: decided at the step (module doc)
            key = (id(module), (tuple(flags), grad, inference))
            if key[1] not in seen and key not in self._pending and not _recalibrating(module):
                self._pending[key] = (call, seen, False)
            return None
        self._consider(call, seen)
        return None

    def _training_forward(self, module: nn.Module) -> None:
        self._stepping.add(id(module))
        for key, (call, seen, followed) in self._pending.items():
            if not followed and call.module is module:
                self._pending[key] = (call, seen, True)

    def _consider(self, call: ModelCall, seen: list[Modes]) -> None:
        modes = (tuple(call.training), call.grad_enabled, call.inference_mode)
        if modes in seen or _recalibrating(call.module):
            return
        before = list(seen)
        seen.append(modes)
        self.on_new(call, before)
