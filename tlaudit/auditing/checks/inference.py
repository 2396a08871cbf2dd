"""Checks on inference: eval mode, determinism, no autograd."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tlaudit._text import count, examples
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence
from tlaudit.auditing.report import Finding, Severity
from tlaudit.auditing.rules.outputs import named_outputs

_MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)
_MODE_DEPENDENT_BUILTINS = (
    *_MODE_SENSITIVE,
    nn.RNNBase,
    nn.MultiheadAttention,
    nn.Transformer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)
"""torch's own modules whose ``forward`` depends on ``self.training``; its other modules (Linear, Conv,
LayerNorm, activations, containers) compute the same in both modes."""


def _mode_free(module: nn.Module | None) -> bool:
    """A torch module whose output does not depend on its training mode (a user's class may read it)."""
    return (
        module is not None and type(module).__module__.startswith("torch.nn.modules.") and not isinstance(module, _MODE_DEPENDENT_BUILTINS)
    )


def _inert_dropout(module: nn.Module | None) -> bool:
    """A dropout layer with ``p == 0``: in training mode it zeroes nothing and scales by 1."""
    return isinstance(module, nn.modules.dropout._DropoutNd) and float(module.p) == 0.0


@register(
    "eval-mode", "error", "a module is in training mode while predict runs", needs=("predict",), phase="inference", points_to="predict"
)
def eval_mode(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Modules called in training mode during ``predict``: an error where dropout or BatchNorm layers
    are affected, or where ``predict`` raised with the model in training mode (torchvision's detection
    models raise "targets should be passed"), a warning where only other modules are (they matter if
    they read ``self.training``). Dropout with ``p=0`` (the default of Hugging Face ViT configs,
    ``hidden_dropout_prob=0.0``) is not affected: in training mode it zeroes nothing.

    Why:
    In training mode dropout zeroes activations and BatchNorm normalizes with the batch's own
    statistics (and updates the running ones): predictions are noisy, depend on the batch, and
    the model changes while it predicts.

    Why it is silent:
    Predictions come out with the right shape and plausible values; they are just noisier and depend on
    which other images share the batch, and BatchNorm's running statistics change with every call.
    Accuracy drops a few points and varies from run to run.


    Evidence:
    Error: dropout layers with ``p > 0`` or BatchNorm layers ran in training mode during ``predict``,
    or ``predict`` raised with the model in training mode. Warning: only other modules were in
    training mode, some of them not torch's own mode-free layers (they matter if they read
    ``self.training``). Info: only dropout with ``p=0`` and torch layers that compute the same in
    both modes (Linear, Conv, LayerNorm, activations, containers) were in training mode: the output
    is unchanged. Skip: no ``predict``, or it raised before any module ran.
    Example:
    ``def predict(model, x): with torch.no_grad(): return model(x)`` without ``model.eval()``.

    Fix:
    ``with tlaudit.inference(model): model(x)``, or ``model.eval()`` before predicting.

    References:
    - ``torch.nn.Module.eval``, https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval
    - PyTorch tutorial "Saving and Loading Models" (call ``model.eval()`` before inference), https://pytorch.org/tutorials/beginner/saving_loading_models.html
    - ``torch.nn.Dropout`` (zeroes elements during training only), https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html
    """
    trace = ctx.predict_trace()
    if trace.error is not None and not trace.training_modules:
        trace.require_complete()
    if not trace.training_modules:
        return
    modules = dict(ctx.inner.named_modules())
    inert = [n for n in trace.training_modules if _inert_dropout(modules.get(n))]
    sensitive = [n for n in trace.training_modules if isinstance(modules.get(n), _MODE_SENSITIVE) and n not in inert]
    dropout = [n for n in sensitive if isinstance(modules[n], nn.modules.dropout._DropoutNd)]
    norms = [n for n in sensitive if n not in dropout]
    top = [n for n in trace.training_modules if "." not in n and n]
    subject = "" if "" in trace.training_modules else (top[0] if top else trace.training_modules[0])
    where = f"`{type(ctx.inner).__name__}`" if not subject else f"`{subject}`"
    detail = []
    if dropout:
        detail.append(f"{count(len(dropout), 'dropout layer')} active ({examples(dropout)})")
    if norms:
        detail.append(f"{count(len(norms), 'BatchNorm layer')} using batch statistics ({examples(norms)})")
    if detail:
        text, severity = "; ".join(detail), None
    elif trace.error is not None:  # the effect is the crash: torchvision's detection models refuse it
        text, severity = f"predict raised there ({trace.error})", None
    else:
        zero = f" ({count(len(inert), 'dropout layer')} with p=0, which change nothing)" if inert else ""
        others = [n for n in trace.training_modules if n and n not in inert and not _mode_free(modules.get(n))]
        if not others and "" in trace.training_modules and not _mode_free(ctx.inner):
            others = [type(ctx.inner).__name__]
        if others:
            text = (
                f"{count(len(trace.training_modules), 'module')} in training mode; no dropout or BatchNorm is affected{zero}, "
                f"but modules that read self.training are ({examples(others)})"
            )
            severity = Severity.WARNING
        else:  # only torch modules whose training mode changes nothing: no effect on the output
            text = f"{count(len(trace.training_modules), 'module')} in training mode{zero}; none of them computes differently there"
            severity = Severity.INFO
    yield check.finding(
        f"{where} ran in training mode during predict: {text}",
        subject=subject,
        hint="call model.eval() in predict, or use `with tlaudit.inference(model):`",
        severity=severity,
    )


_TOLERANCE = {torch.float16: (1e-2, 1e-3), torch.bfloat16: (2e-2, 1e-2)}
"""Half-precision outputs (autocast) differ between identical calls by rounding: compare them by their precision."""


def _outputs_equal(a: Any, b: Any) -> bool:
    left, right = named_outputs(a), named_outputs(b)
    if len(left) != len(right):
        return False
    for (_, x), (_, y) in zip(left, right):
        if x.shape != y.shape:
            return False
        rtol, atol = _TOLERANCE.get(x.dtype, (1e-5, 1e-6))
        if not torch.equal(x, y) and not torch.allclose(x.float(), y.float(), rtol=rtol, atol=atol, equal_nan=True):
            return False
    return True


@register(
    "eval-nondeterministic",
    "error",
    "two predict calls on the same input disagree",
    needs=("predict",),
    phase="inference",
    points_to="predict",
)
def eval_nondeterministic(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Calls ``predict`` twice on the same input and compares the outputs (to 1e-5 relative).

    Why:
    Inference should be a function of its input. Randomness that ``model.eval()`` does not turn
    off (``F.dropout(x, p, training=True)``, random augmentation inside ``forward``, sampling)
    makes every prediction and every metric noisy.

    Why it is silent:
    Each prediction is plausible on its own; only repeating it shows the difference, and metrics
    computed once look merely a little worse than they should.


    Evidence:
    Error: two ``predict`` calls on the same input gave different outputs (beyond float
    tolerance, half precision by its own). Skip: no ``predict``, or it raised.
    Example:
    ``x = F.dropout(x, 0.5)`` in a custom ``forward``: ``training`` defaults to True for the
    functional form.

    Fix:
    Pass ``training=self.training`` to functional dropout, and move augmentation out of ``forward``.

    References:
    - ``torch.nn.functional.dropout`` (``training=True`` by default), https://pytorch.org/docs/stable/generated/torch.nn.functional.dropout.html
    - PyTorch notes "Reproducibility", https://pytorch.org/docs/stable/notes/randomness.html
    """
    trace = ctx.predict_trace().require_complete()
    if not _outputs_equal(*trace.outputs):
        yield check.finding(
            "two predict calls on the same sample returned different outputs",
            subject="predict",
            hint="look for randomness that model.eval() does not switch off, e.g. F.dropout(x, p) without training=self.training",
        )


@register("grad-inference", "warning", "predict runs with gradients enabled", needs=("predict",), phase="inference", points_to="predict")
def grad_inference(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Whether ``predict`` calls the model, or any of its parts (``model.encoder(x)`` then
    ``model.decoder(...)``, ``model.backbone`` then ``model.head``), with autograd enabled
    (neither ``torch.no_grad()`` nor ``torch.inference_mode()``); the finding names the parts.

    Why:
    Autograd keeps every activation alive for a backward pass that never comes: inference uses
    several times the memory and runs slower.

    Why it is silent:
    The outputs are identical with or without autograd; only memory use and speed differ, and the
    first sign is an out-of-memory error at a larger batch size.


    Evidence:
    Warning: ``predict`` ran the model or its parts with autograd on (memory, not correctness).
    Skip: no ``predict``, or it raised.
    Example:
    ``def predict(model, x): model.eval(); return model(x)``.

    Fix:
    ``with tlaudit.inference(model): ...`` or ``with torch.inference_mode(): ...``.

    References:
    - ``torch.no_grad``, https://pytorch.org/docs/stable/generated/torch.no_grad.html
    - ``torch.inference_mode``, https://pytorch.org/docs/stable/generated/torch.autograd.grad_mode.inference_mode.html
    - PyTorch notes "Autograd mechanics: Locally disabling gradient computation", https://pytorch.org/docs/stable/notes/autograd.html#locally-disabling-gradient-computation
    """
    trace = ctx.predict_trace().require_complete()
    if not trace.grad_enabled:
        return
    hint = "wrap inference in torch.inference_mode() or `with tlaudit.inference(model):`"
    if trace.grad_modules == [""]:
        yield check.finding("predict runs the model with gradients enabled", subject="predict", hint=hint)
        return
    parts = trace.grad_modules
    yield check.finding(
        f"predict calls {examples(parts)} with gradients enabled (parts of the model, called directly)",
        subject=parts[0],
        hint=hint,
    )
