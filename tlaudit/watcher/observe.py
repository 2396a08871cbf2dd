"""What a watched run does, seen through PyTorch's public hooks: model calls, losses, optimizer steps.

* Model calls: a global forward pre-hook and forward hook (``register_module_forward_pre_hook`` /
  ``register_module_forward_hook``) record each *outermost* call of a module that has parameters:
  the module, its inputs, every submodule's training flag, the grad and inference modes, and
  whether a backward pass reached its output (one tensor hook on that output).
* Losses: between a model call and the next optimizer step a :class:`~torch.overrides.TorchFunctionMode`
  records the first call of a ``torch.nn.functional`` loss (``nn.CrossEntropyLoss`` and friends call
  them too): the function, which model output it was given, the targets and the keyword arguments.
* Steps: a global optimizer step pre-hook (``register_optimizer_step_pre_hook``) hands each step
  to the watcher before it executes.

Nothing on the user's objects is patched; :meth:`Observer.close` removes every hook and leaves the
function mode if it is still entered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.overrides import TorchFunctionMode

from tlaudit.auditing.rules.outputs import named_outputs

__all__ = ["LOSS_FUNCTIONS", "LossCall", "ModelCall", "Observer"]

LOSS_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    getattr(F, name)
    for name in (
        "cross_entropy",
        "nll_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "huber_loss",
        "kl_div",
        "soft_margin_loss",
        "multilabel_soft_margin_loss",
        "multi_margin_loss",
        "multilabel_margin_loss",
        "poisson_nll_loss",
        "gaussian_nll_loss",
    )
    if hasattr(F, name)
)
"""The ``torch.nn.functional`` losses whose first call after a model call is taken as the run's loss."""


@dataclass(eq=False)
class LossCall:
    """A loss function called on a model output: ``function(output[index], targets, *rest, **kwargs)``."""

    function: Callable[..., Any]
    output_index: int | None
    """Which of the model's output tensors (in ``named_outputs`` order) the loss took; None: a derived tensor."""
    targets: Any
    rest: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(eq=False)
class ModelCall:
    """One outermost call of a module with parameters, as the run made it."""

    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    training: list[bool]
    """``module.training`` of every module of ``module.modules()``, in that order."""
    grad_enabled: bool
    inference_mode: bool
    outputs: list[torch.Tensor] = field(default_factory=list)
    backward: bool = False
    """A backward pass reached one of its outputs."""

    @property
    def validation(self) -> bool:
        """The evidence says this call was inference: grad mode off, inference mode, or every module
        in eval mode. A call with gradients on and a module training is a training call, even when no
        backward reached it (a frozen part called on its own)."""
        return self.inference_mode or not self.grad_enabled or not any(self.training)

    loss: LossCall | None = None
    more_losses: list[LossCall] = field(default_factory=list)
    """Losses on the call's other outputs (Inception's ``aux_logits`` weighted into the loss): the
    replayed step adds them, so the gradients reach what the run's did."""
    own_loss: torch.Tensor | None = None
    """The ``loss`` the model returned itself (a Hugging Face ``ModelOutput``, a dict with ``"loss"``)."""

    def set_modes(self) -> None:
        """Put every submodule's training flag back to what it was during this call."""
        for module, flag in zip(self.module.modules(), self.training):
            module.training = flag


_KEPT_CALLS = 6
"""Calls kept between two steps: the first three (a validation pass starts there) and the last three
(the training call, or the parts of a model called one after the other, come last before the step),
so a long validation pass holds no more than six batches."""


class _LossMode(TorchFunctionMode):
    """Records the loss functions called on the last model call's outputs (the first on each output)."""

    def __init__(self, observer: Observer) -> None:
        super().__init__()
        self.observer = observer

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        original = getattr(func, "__wrapped__", func)  # the label check's wrapper (tlaudit.watcher.labels)
        if original in LOSS_FUNCTIONS and not self.observer.paused:
            self.observer.record_loss(original, args, kwargs)
        return func(*args, **kwargs)


def _remove(handle: Any) -> None:
    handle.remove()
    # RemovableHandle.remove() leaves the with_kwargs flag of a global forward hook behind
    getattr(module_hooks, "_global_forward_hooks_with_kwargs", {}).pop(handle.id, None)


class Observer:
    """Installs the hooks; ``on_step(optimizer)`` is called before every optimizer step of the run."""

    def __init__(self, on_step: Callable[[torch.optim.Optimizer], None], on_raise: Callable[[], None] | None = None) -> None:
        self.on_step = on_step
        self.on_raise = on_raise
        """Called when an outermost model call raises, while the frames that called it still run."""
        self.calls: list[ModelCall] = []
        self.paused = False
        self._depth = 0
        self._handles: list[Any] = []
        self._mode: _LossMode | None = None
        self.closing = False
        self.counting = False
        self.entered: tuple[nn.Module, tuple[Any, ...]] | None = None
        self.on_new_prediction: Callable[[ModelCall], None] | None = None
        """While counting only: called at the first no-grad call, with a module in training mode, of a
        module no recorded call held (an EMA model validated without ``eval()``)."""
        self.known: set[int] = set()
        """Ids of the modules of the audited models, and of every module the light hook has seen."""
        self.followed: dict[int, int] = {}
        """Calls since the last step of each module handed to ``on_new_prediction``, by id."""

    def open(self) -> None:
        self._post_handle = module_hooks.register_module_forward_hook(self._post_forward, with_kwargs=True, always_call=True)
        self._step_handle = register_optimizer_step_pre_hook(self._pre_step)
        self._handles = [module_hooks.register_module_forward_pre_hook(self._pre_forward), self._post_handle, self._step_handle]
        self.closing = False

    def close(self, *, in_step: bool = False) -> None:
        """Remove every hook and leave the loss mode; safe to call more than once.

        ``in_step``: called from the optimizer pre-hook while torch iterates over the global step
        pre-hooks, where removing one would break that iteration. The observer then stops observing
        at once, and the step hook and the forward pre-hook are removed at the next module call (or
        by a later ``close()``).
        """
        self.leave_loss_mode()
        self.calls = []
        self.closing = True
        # keep the forward pre-hook (it removes what is left at the next module call) and the step hook
        keep = [h for h in self._handles if h is not self._post_handle] if in_step else []
        for handle in self._handles:
            if handle not in keep:
                _remove(handle)
        self._handles = keep

    def resume(self) -> None:
        """Observe model calls and losses again after :meth:`count_only` (a new optimizer, or the
        trainable parameters or param groups changed: the next step is audited with its calls)."""
        if not self.counting:
            return
        self.counting = False
        self._depth = 0
        for handle in [h for h in self._handles if h is not self._step_handle]:  # the light pre-hook
            _remove(handle)
        self._handles = [h for h in self._handles if h is self._step_handle]
        self._post_handle = module_hooks.register_module_forward_hook(self._post_forward, with_kwargs=True, always_call=True)
        self._handles = [module_hooks.register_module_forward_pre_hook(self._pre_forward), self._post_handle, *self._handles]

    def count_only(self) -> None:
        """Stop observing model calls and losses; the step hook stays and only hands on the steps, and
        a light pre-hook notes the first prediction of a module no recorded call held."""
        self.leave_loss_mode()
        self.calls = []
        self.counting = True
        for handle in self._handles:
            if handle is not self._step_handle:
                _remove(handle)
        self._handles = [h for h in self._handles if h is self._step_handle]
        if self.on_new_prediction is not None:
            self._handles.append(module_hooks.register_module_forward_pre_hook(self._light_pre_forward))

    def _light_pre_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """A training call costs a grad-mode read; a no-grad call of a known module, a set lookup."""
        if self.closing:
            self.close()
            return
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return
        key = id(module)
        if key in self.followed:
            self.followed[key] += 1
            return
        if key in self.known or self.paused or torch.compiler.is_compiling():
            return
        self.known.update(id(m) for m in module.modules())
        if isinstance(module, nn.modules.loss._Loss) or next(iter(module.parameters()), None) is None:
            return
        training = [m.training for m in module.modules()]
        if not any(training) or self.on_new_prediction is None:
            return  # an eval-mode prediction: its modes are right
        self.followed[key] = 0
        call = ModelCall(
            module=module,
            args=tuple(args),
            kwargs={},
            training=training,
            grad_enabled=torch.is_grad_enabled(),
            inference_mode=torch.is_inference_mode_enabled(),
        )
        self.on_new_prediction(call)

    # -- model calls ---------------------------------------------------------------------------

    def _pre_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self.closing:
            self.close()
            return
        if self.paused or torch.compiler.is_compiling() or isinstance(module, nn.modules.loss._Loss):
            return
        if not self._depth and next(iter(module.parameters()), None) is not None:
            self.entered = (module, tuple(args))  # the outermost call under way (a crash inside it leaves no call)
        self._depth += 1

    def _post_forward(self, module: nn.Module, args: tuple[Any, ...], *rest: Any) -> None:
        # (module, args, kwargs, output); torch calls it with (module, args, output) when forward raised
        kwargs, output = rest if len(rest) == 2 else ({}, None)
        if self.closing or self.paused or torch.compiler.is_compiling() or isinstance(module, nn.modules.loss._Loss):
            return
        self._depth = max(self._depth - 1, 0)
        if len(rest) == 1 and not self._depth and self.on_raise is not None:
            self.on_raise()  # the forward raised; the run's loop (its DataLoader iterator) is still live
        if self._depth or output is None:
            return
        if next(iter(module.parameters()), None) is None:  # a transform or a metric, not a model
            return
        call = ModelCall(
            module=module,
            args=tuple(args),
            kwargs=dict(kwargs),
            training=[m.training for m in module.modules()],
            grad_enabled=torch.is_grad_enabled(),
            inference_mode=torch.is_inference_mode_enabled(),
            outputs=[t for _, t in named_outputs(output)],
        )
        own = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        call.own_loss = own if isinstance(own, torch.Tensor) else None
        for tensor in call.outputs:
            if tensor.requires_grad:
                tensor.register_hook(lambda grad, call=call: self._mark_backward(call))
                break
        self.calls.append(call)
        if len(self.calls) > _KEPT_CALLS:  # a long validation pass: keep its first calls and the latest ones
            del self.calls[_KEPT_CALLS // 2]
        self.enter_loss_mode()

    @staticmethod
    def _mark_backward(call: ModelCall) -> None:
        call.backward = True

    # -- losses --------------------------------------------------------------------------------

    def enter_loss_mode(self) -> None:
        if self._mode is None:
            self._mode = _LossMode(self)
            self._mode.__enter__()

    def leave_loss_mode(self) -> None:
        """Leave the loss mode if it is the innermost function mode (it is, unless the run entered one since)."""
        mode = self._mode
        if mode is not None and torch.overrides._get_current_function_mode() is mode:
            mode.__exit__(None, None, None)
            self._mode = None

    def record_loss(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        call = self.calls[-1] if self.calls else None
        if call is None or self._depth:  # a loss inside a model is not the run's
            return
        kwargs = dict(kwargs)
        # F.binary_cross_entropy_with_logits(input=..., target=...) passes both as keywords
        output = args[0] if args else kwargs.pop("input", None)
        targets = args[1] if len(args) > 1 else kwargs.pop("target", None)
        if output is None:
            return
        index = next((i for i, t in enumerate(call.outputs) if t is output), None)
        loss = LossCall(func, index, targets, tuple(args[2:]), kwargs)
        if call.loss is None:
            call.loss = loss
        elif index is not None and call.loss.output_index is not None and len(call.more_losses) < 3:
            taken = {call.loss.output_index, *(extra.output_index for extra in call.more_losses)}
            if index not in taken:  # a loss on another output of the same call: an auxiliary head's
                call.more_losses.append(loss)

    # -- steps ---------------------------------------------------------------------------------

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.paused or self.closing:
            return
        self.leave_loss_mode()
        self.on_step(optimizer)
