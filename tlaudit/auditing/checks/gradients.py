"""Checks on the gradients of the train step."""
from __future__ import annotations

from collections.abc import Iterator

from tlaudit.auditing.checks._grouping import grouped_findings
from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence
from tlaudit.auditing.report import Finding


@register("trainable-no-grad", "warning", "a trainable parameter receives no gradient in the train step", phase="train", points_to="subject")
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

    Example:
    ``self.new_head = nn.Linear(...)`` added as an attribute while ``forward`` still calls ``self.fc``.

    Fix:
    Use the parameters in the loss, or freeze them if they are not meant to train.

    References:
    - ``torch.nn.parallel.DistributedDataParallel`` (``find_unused_parameters``), https://pytorch.org/docs/stable/generated/torch.nn.parallel.DistributedDataParallel.html
    - PyTorch notes "Autograd mechanics: Locally disabling gradient computation", https://pytorch.org/docs/stable/notes/autograd.html#locally-disabling-gradient-computation
    """
    trace = ctx.train_trace().require_complete()
    names = [
        name
        for name, p in ctx.params
        if ctx.requires_grad[id(p)] and id(p) not in ctx.meant_frozen and id(p) not in trace.grad_received
    ]
    yield from grouped_findings(
        check, names, "trainable but received no gradient in the train step", "use it in the loss, or freeze it"
    )

