"""Checks on the gradients of the train step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tlaudit.auditing.checks._grouping import grouped_findings
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence
from tlaudit.auditing.report import Finding, Severity


@register(
    "trainable-no-grad", "warning", "a trainable parameter receives no gradient in the train step", phase="train", points_to="subject"
)
def trainable_no_grad(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Parameters with ``requires_grad=True`` (and not meant frozen) that receive no gradient in
    the train step.

    Why:
    Trainable but unused parameters point at a wiring mistake: a head that is replaced but not
    called, a branch detached by ``.detach()`` or ``torch.no_grad()`` inside ``forward``, or an
    auxiliary head whose output the loss ignores. With DDP they also break ``find_unused_parameters=False``.

    Why it is silent:
    Parameters that receive no gradient keep ``.grad`` None and the optimizer skips them; nothing
    raises (outside DDP), and the layer the user meant to train keeps its random initialization.


    Evidence:
    Warning: a trainable parameter got no gradient in a completed step while an optimizer group
    holds it (or no optimizer is given). Info: no gradient and in no optimizer group: frozen in
    effect, with the gradient memory ``requires_grad=True`` still costs. Skip: the step raised, or the
    audit's default step does not fit the model.
    Example:
    ``self.new_head = nn.Linear(...)`` added as an attribute while ``forward`` still calls ``self.fc``.

    Fix:
    Use the parameters in the loss, or freeze them if they are not meant to train.

    References:
    - ``torch.nn.parallel.DistributedDataParallel`` (``find_unused_parameters``), https://pytorch.org/docs/stable/generated/torch.nn.parallel.DistributedDataParallel.html
    - PyTorch notes "Autograd mechanics: Locally disabling gradient computation", https://pytorch.org/docs/stable/notes/autograd.html#locally-disabling-gradient-computation
    """
    trace = ctx.train_trace().require_complete()
    unused = [(name, p) for name, p in ctx.params if ctx.requires_grad[id(p)] and id(p) not in trace.grad_received]
    in_effect = [(n, p) for n, p in unused if frozen_in_effect(ctx, p)]
    names = [n for n, p in unused if id(p) not in ctx.meant_frozen and not frozen_in_effect(ctx, p)]
    yield from grouped_findings(check, names, "trainable but received no gradient in the train step", "use it in the loss, or freeze it")
    yield from grouped_findings(
        check,
        [n for n, _ in in_effect],
        f"frozen in effect: no gradient reaches them in the step and no optimizer group holds them; with "
        f"requires_grad=True they still cost {megabytes(p for _, p in in_effect)} of gradient buffers under DDP "
        "and autograd tracking outside no_grad",
        "make it explicit: requires_grad_(False) on them (tlaudit.freeze(model, '<module>'))",
        severity=Severity.INFO,
    )


def frozen_in_effect(ctx: Evidence, param: Any) -> bool:
    """No gradient reached ``param`` in the traced step and no optimizer group holds it: it cannot
    change, whatever its ``requires_grad`` says (a backbone run under ``torch.no_grad()`` and left
    out of the optimizer, as linear-evaluation scripts do). Needs an optimizer to tell."""
    observed = ctx.observed_gradients()
    return ctx.setup.optimizer is not None and observed is not None and id(param) not in observed and id(param) not in ctx.optimizer_ids


def megabytes(params: Any) -> str:
    total = sum(p.numel() * p.element_size() for p in params)
    return f"{total / 2**20:.1f} MB"
