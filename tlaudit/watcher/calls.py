"""Which recorded model calls were training and which were inference, and which module was the model.

* A call is **inference** only on evidence: grad mode off, inference mode, or every module in eval
  mode (:attr:`ModelCall.validation`), or a call of a module that trains (a backward reached another
  of its calls) whose own output reached no backward (a validation pass that forgot ``eval()``).
  Never because no backward reached it alone: a frozen feature extractor called on its own, before
  the head, is still training. And not a no-grad call in training mode of a module no optimizer
  holds, made where a backward reached another module's call: a target network computing the
  training targets (MoCo's key encoder, BYOL's target, DINO's or Mean Teacher's teacher, an EMA copy),
  which those methods run in training mode on purpose; nor the same in eval mode (a distillation
  teacher): the trained model's prediction is what the inference audit is about. Nor a call of a module made after a training
  forward of that module in the same step (between its training forward and the optimizer step):
  a second view whose output is detached (the Pi-model's), pseudo-labels computed without gradients.
* **The model** of a window of calls is the module the loop called, or, when the loop called parts of
  a model one after the other (``self.forward`` in a Lightning ``training_step`` calls
  ``self.feature_extractor`` and ``self.fc``; no module hook sees the LightningModule), the smallest
  live module that holds all of them. Its call is composed: the first part's input, the last part's
  outputs and loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tlaudit.watcher.live import instances
from tlaudit.watcher.observe import ModelCall

__all__ = [
    "enclosing_module",
    "model_call",
    "modes_of",
    "precedes_training_forward",
    "training_call",
    "training_forward",
    "validation_call",
    "within_step",
]


def enclosing_module(parts: Sequence[nn.Module]) -> nn.Module | None:
    """The smallest live module whose submodules include every one of ``parts``; None if there is none."""
    wanted = {id(p) for p in parts}
    best: tuple[int, nn.Module] | None = None
    for obj in instances(nn.Module):
        if id(obj) in wanted:
            continue
        ids = {id(m) for m in obj.modules()}
        if wanted <= ids and (best is None or len(ids) < best[0]):
            best = (len(ids), obj)
    return best[1] if best is not None else None


def model_call(calls: Sequence[ModelCall]) -> ModelCall | None:
    """One call of the model for consecutive calls of its parts (see the module doc); the call itself
    when there is one part; None when the parts have no enclosing module."""
    if not calls:
        return None
    parts = list({id(c.module): c.module for c in calls}.values())
    if len(parts) == 1:
        return calls[-1]
    parent = enclosing_module(parts)
    if parent is None:
        return None
    first, last = calls[0], calls[-1]
    flags = {id(m): flag for c in calls for m, flag in zip(c.module.modules(), c.training)}  # as each part ran
    composed = ModelCall(
        module=parent,
        args=first.args,
        kwargs=first.kwargs,
        # the modules no part covers (the parent itself, metrics) take the mode the first part's root had
        training=[flags.get(id(m), first.training[0]) for m in parent.modules()],
        grad_enabled=first.grad_enabled,
        inference_mode=first.inference_mode,
        outputs=last.outputs,
        backward=any(c.backward for c in calls),
        loss=last.loss,
        own_loss=last.own_loss,
    )
    composed.parts = [type(p).__name__ for p in parts]  # type: ignore[attr-defined]
    return composed


def _holds(optimizer: torch.optim.Optimizer, module: nn.Module) -> bool:
    ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return any(id(p) in ids for p in module.parameters())


def trained_modules(calls: Sequence[ModelCall]) -> set[int]:
    """The ids of the modules a backward reached in ``calls``."""
    return {id(c.module) for c in calls if c.backward}


def target_network(call: ModelCall, window: Sequence[ModelCall], held: set[int]) -> bool:
    """A no-grad call of a module none of whose parameters an optimizer holds (``held``: parameter
    ids), in a window where a backward reached another module's call: part of the training
    computation (see the module doc), not a prediction of the trained model. In training mode (a
    momentum encoder, a teacher) or in eval mode (a distillation teacher)."""
    if call.grad_enabled or call.backward:
        return False
    if not any(c.backward and c.module is not call.module for c in window):
        return False
    return not any(id(p) in held for p in call.module.parameters())


def training_forward(call: ModelCall) -> bool:
    """A backward reached the call, or it ran with gradients on and a module training."""
    return call.backward or (call.grad_enabled and not call.inference_mode and any(call.training))


def modes_of(call: ModelCall) -> tuple[tuple[bool, ...], bool, bool]:
    """``(training flag of every module, grad enabled, inference mode)`` of the call."""
    return (tuple(call.training), call.grad_enabled, call.inference_mode)


def precedes_training_forward(call: ModelCall, window: Sequence[ModelCall]) -> bool:
    """A training forward of ``call``'s module comes after ``call`` in ``window`` (one step's calls)."""
    after = False
    for other in window:
        if other is call:
            after = True
        elif after and other.module is call.module and training_forward(other):
            return True
    return False


def within_step(call: ModelCall, window: Sequence[ModelCall]) -> bool:
    """``call`` came after a training forward of its module in ``window`` (one step's calls)."""
    for other in window:
        if other is call:
            return False
        if other.module is call.module and training_forward(other):
            return True
    return False


def is_inference(call: ModelCall, trained: set[int], window: Sequence[ModelCall] = (), held: set[int] | None = None) -> bool:
    """Inference on evidence (see the module doc); ``trained``: ids of modules known to train;
    ``window``: the calls it was recorded among; ``held``: ids of the parameters optimizers hold."""
    if within_step(call, window):
        return False
    if call.validation:
        return held is None or not target_network(call, window, held)
    return not call.backward and id(call.module) in trained


def training_call(pending: Sequence[ModelCall], optimizer: torch.optim.Optimizer, held: set[int] | None = None) -> ModelCall | None:
    """The training call of the model this optimizer steps, among the calls since the last step.

    The training calls are those after the last inference call; a backward must have reached one of
    them (else the step is closure-based and its calls come later). One module: its last call; parts
    of a model: the composed call of the last round of parts.
    """
    trained = trained_modules(pending)
    held = (held or set()) | {id(p) for group in optimizer.param_groups for p in group["params"]}
    training = [c for c in pending if not is_inference(c, trained, pending, held) and not target_network(c, pending, held)]
    if not any(c.backward for c in training):
        return None
    holding = [c for c in training if c.backward and _holds(optimizer, c.module)]
    if len({id(c.module) for c in training}) == 1:
        return (holding or [c for c in training if c.backward])[-1]
    # parts of one model: the last round, from the first part's call to the one the loss took
    last = training[-1]
    start = len(training) - 1
    seen = {id(last.module)}
    while start > 0 and id(training[start - 1].module) not in seen:
        start -= 1
        seen.add(id(training[start].module))
    composed = model_call(training[start:])
    return composed if composed is not None else (holding or training)[-1]


def validation_call(
    calls: Sequence[ModelCall],
    trained: set[int] | None = None,
    held: set[int] | None = None,
    window: Sequence[ModelCall] | None = None,
) -> ModelCall | None:
    """The first validation call of the model: the first inference call, or its parts composed;
    ``trained``: ids of modules known to train (default: those a backward reached in ``calls``);
    ``held``: ids of the parameters the run's optimizers hold (no target-network rule without it);
    ``window``: the step's calls ``calls`` are part of (default: ``calls``)."""
    trained = trained_modules(calls) | (trained or set())
    validation = [c for c in calls if is_inference(c, trained, calls if window is None else window, held)]
    if not validation:
        return None
    first_round = [validation[0]]
    for call in validation[1:]:
        if any(call.module is c.module for c in first_round):
            break
        first_round.append(call)
    return model_call(first_round) or validation[0]
