"""Checks on running the user's own code: a train step or predict that raises."""

from __future__ import annotations

from collections.abc import Iterator

from tlaudit.auditing.checks._registry import Check, register
from tlaudit.auditing.evidence import Evidence, Skip
from tlaudit.auditing.report import Finding
from tlaudit.auditing.rules.labels import label_problem
from tlaudit.auditing.rules.outputs import head_widths


def _explanation(ctx: Evidence) -> str:
    """The finding that most likely explains a crash: labels out of range, or a head of the wrong size."""
    n = ctx.setup.num_classes
    if n is None:
        return ""
    if ctx.setup.targets is not None and label_problem(ctx.targets, n) is not None:
        return "; likely cause: the targets do not fit num_classes (see `label-range`)"
    try:
        widths = head_widths(ctx.inner, ctx.heads)
    except Skip:
        return ""
    if any(size is not None and size != n for _, size in widths):
        return "; likely cause: the head does not have num_classes outputs (see `head-size`)"
    return ""


@register("user-code-error", "error", "the setup's own train_step or predict raised", phase="train", points_to="setup")
def user_code_error(check: Check, ctx: Evidence) -> Iterator[Finding]:
    """What:
    Runs the setup's ``train_step`` and ``predict`` (as the other checks do) and reports an
    exception either raises, with its type and message. The checks that need the whole step are
    skipped with a pointer here; the others (labels, head sizes, optimizer coverage, LR
    ceilings, normalization, input range, weights loaded) still run and often name the cause,
    which the hint points at.

    Why:
    Real label bugs show up as a crash ("Target 5 is out of bounds", a device-side assert on GPU),
    not as a wrong number; the traceback names a line of the loss, not the labels that caused it.

    Why it is silent:
    It is not silent, it is misleading: the exception names a line of the loss function, and on
    GPU a label out of range is an asynchronous "device-side assert triggered" reported at some
    later, unrelated call.


    Evidence:
    Error: the user's own ``train_step`` or ``predict`` raised (their code, their traceback). Not
    reported here: the audit's own default step failing on a synthesized sample or labels, which
    skips the traced checks with the reason instead (no ``SetupError`` for a field the user did not
    set). Skip: neither ``train_step`` nor ``predict`` given.
    Example:
    ``ImageFolder`` labels 1..N with ``num_classes=N``: ``F.cross_entropy`` raises
    ``IndexError: Target N is out of bounds``.

    Fix:
    Fix the cause the other findings name (labels, head size); else run the step alone with the
    same batch and read the traceback (``tlaudit audit --debug`` shows the audit's own).

    References:
    - ``torch.nn.CrossEntropyLoss`` (target values in ``[0, C)``, ``ignore_index``), https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html
    - PyTorch "CUDA semantics", asynchronous execution (errors reported at a later call), https://pytorch.org/docs/stable/notes/cuda.html#asynchronous-execution
    """
    if ctx.setup.train_step is None and ctx.setup.predict is None:
        raise Skip("no `train_step` or `predict` given: the audit's own default step is not user code")
    cause = _explanation(ctx)
    if ctx.setup.train_step is not None:
        error = ctx.train_trace().error
        if error is not None:
            yield check.finding(f"TransferSetup.train_step raised {error}", subject="train_step", hint="fix the exception" + cause)
    if ctx.setup.predict is not None:
        error = ctx.predict_trace().error
        if error is not None:
            yield check.finding(f"TransferSetup.predict raised {error}", subject="predict", hint="fix the exception" + cause)
