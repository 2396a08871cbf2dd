"""The traced runs: one train step and two ``predict`` calls, observed with hooks and undone afterwards.

Hooks are the fewest that answer the checks' questions: tensor hooks on trainable parameters (which
gradients arrive), forward pre-hooks on BatchNorm layers (their mode in training) and on every
module during ``predict`` (which ran in training mode), and one forward hook on the model (its
output). No full backward hooks: they break in-place operations. Every hook is removed in
``finally``, and the snapshot is restored after each run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tlaudit._names import unwrap
from tlaudit.auditing.checks.execution import user_code_error
from tlaudit.auditing.checks.optimizer import optimizer_state
from tlaudit.auditing.engine.defaults import OptimizerStepFailed, default_train_step
from tlaudit.auditing.engine.snapshot import Snapshot
from tlaudit.auditing.evidence import BatchNormCall, PredictTrace, TrainTrace
from tlaudit.auditing.rules.inputs import Sample, clone_sample, describe_sample
from tlaudit.auditing.rules.outputs import detach_outputs
from tlaudit.auditing.setup import SetupError, TransferSetup
from tlaudit.batchnorm import is_batchnorm

__all__ = ["trace_predict", "trace_train_step"]


@contextlib.contextmanager
def _hooks() -> Iterator[list[Any]]:
    handles: list[Any] = []
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def _outermost(names: list[str]) -> list[str]:
    """The names none of whose ancestors is in the list (``""``, the model itself, is everyone's)."""
    if "" in names:
        return [""]
    chosen = set(names)
    return [n for n in names if not any(n.startswith(a + ".") for a in chosen if a != n)]


def trace_train_step(
    setup: TransferSetup,
    model: nn.Module,
    sample: Sample,
    targets: torch.Tensor,
    snapshot: Snapshot,
    requires_grad: dict[int, bool],
    heads: list[str],
) -> TrainTrace:
    """Run the user's ``train_step`` (or the default one) once on copies of the sample and targets.

    ``model`` is what the step is given: the user's model, or the module inside a DDP or
    ``torch.compile`` wrapper (no collectives, no recompilation). An exception from the user's step
    is recorded in the trace (``error``); one from the default step means the model cannot take
    the sample or the targets, a :class:`SetupError`.
    """
    trace = TrainTrace()
    sample, targets = clone_sample(sample), targets.clone()
    inner = unwrap(model)
    user_step = setup.train_step
    step = user_step or default_train_step
    head_outputs: dict[str, Any] = {}
    with _hooks() as handles:
        for name, module in inner.named_modules():
            if is_batchnorm(module):
                calls = trace.bn_calls.setdefault(name, [])

                def record(mod: nn.Module, args: Any, calls: list[BatchNormCall] = calls) -> None:
                    calls.append(BatchNormCall(mod.training, mod.running_mean is None))

                handles.append(module.register_forward_pre_hook(record))
            if name in heads:

                def keep_head(mod: nn.Module, args: Any, output: Any, name: str = name) -> None:
                    head_outputs.setdefault(name, detach_outputs(output))

                handles.append(module.register_forward_hook(keep_head))
        for p in inner.parameters():
            if p.requires_grad:
                handles.append(p.register_hook(lambda grad, pid=id(p): trace.grad_received.add(pid)))  # noqa: B008 - binds each parameter's id

        def keep_output(mod: nn.Module, args: Any, output: Any) -> None:
            if trace.outputs is None:
                trace.outputs = detach_outputs(output)

        handles.append(inner.register_forward_hook(keep_output))
        try:
            with torch.enable_grad():
                step(model, sample, targets, setup.optimizer)
        except OptimizerStepFailed as err:  # the default step: forward and backward ran, the optimizer failed
            trace.error, trace.reported_by = str(err), optimizer_state.id
        except Exception as err:
            if user_step is not None:
                trace.error, trace.reported_by = f"{type(err).__name__}: {err}", user_code_error.id
            elif not _given(setup, "sample" if trace.outputs is None else "targets"):
                # the audit's own guess (synthesized sample or labels, default step) does not fit the model
                trace.skip_reason = (
                    f"the audit's default train step does not fit this model ({type(err).__name__}: {err}) on "
                    + ("a synthesized sample" if trace.outputs is None else "synthesized class labels")
                    + "; pass train_step= (and targets=) to audit the step"
                )
            else:
                snapshot.restore()
                field_name = "sample" if trace.outputs is None else "targets"
                what = (
                    f"the model cannot take the sample of {describe_sample(sample)}"
                    if field_name == "sample"
                    else f"cross-entropy on the model's output and targets of shape {tuple(targets.shape)} failed"
                )
                raise SetupError(f"TransferSetup.{field_name}: {what}: {type(err).__name__}: {err}", field=field_name) from err
    trace.head_outputs = head_outputs
    if trace.outputs is None and head_outputs:  # the step called model.forward(x): read the heads instead
        trace.outputs, trace.outputs_from_heads = head_outputs, True
    with torch.no_grad():
        for s in snapshot.params:
            p = s.param
            if p.shape != s.value.shape or not torch.equal(p, s.value.to(p.device)):
                trace.changed.add(id(p))
            # a requires_grad=False leaf can only get a gradient if the step switched the flag on
            if not requires_grad.get(id(p), True) and p.requires_grad and p.grad is not None:
                if s.grad is None or p.grad is not s.grad:
                    trace.grad_received.add(id(p))
                else:
                    assert s.grad_value is not None  # copied from s.grad, which is set
                    if not torch.equal(p.grad, s.grad_value.to(p.grad.device)):
                        trace.grad_received.add(id(p))
    snapshot.restore()
    return trace


def _given(setup: TransferSetup, field_name: str) -> bool:
    """Whether the user set ``field_name`` (a SetupError may only blame a field the user gave)."""
    return getattr(setup, field_name) is not None


def trace_predict(setup: TransferSetup, model: nn.Module, sample: Sample, snapshot: Snapshot) -> PredictTrace:
    """Call the user's ``predict`` (which must be set) twice on copies of the sample, recording modes and grad mode.

    Every module's call records its training flag and the grad mode, so a ``predict`` that calls
    ``model.forward(x)`` or the model's parts directly is observed too. An exception is recorded
    in the trace (``error``).
    """
    predict = setup.predict
    assert predict is not None  # the caller skips a setup without predict
    trace = PredictTrace()
    training: dict[str, None] = {}
    with_grad: dict[str, None] = {}
    inner = unwrap(model)
    with _hooks() as handles:
        for name, module in inner.named_modules():

            def record(mod: nn.Module, args: Any, name: str = name) -> None:
                if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
                    with_grad.setdefault(name, None)
                if mod.training:
                    training.setdefault(name, None)

            handles.append(module.register_forward_pre_hook(record))
        outputs = []
        try:
            for _ in range(2):
                outputs.append(detach_outputs(predict(model, clone_sample(sample))))
        except Exception as err:
            trace.error, trace.reported_by = f"{type(err).__name__}: {err}", user_code_error.id
            outputs = [None, None]
    snapshot.restore()
    trace.training_modules = list(training)
    trace.grad_enabled = bool(with_grad)
    trace.grad_modules = _outermost(list(with_grad))
    trace.outputs = (outputs[0], outputs[1])
    return trace
