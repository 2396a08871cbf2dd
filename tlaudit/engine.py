"""The audit engine: run the selected checks over a setup, restore everything, return a Report."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tlaudit._state import Snapshot
from tlaudit.checks import Check, select_checks
from tlaudit.context import AuditContext, Skip
from tlaudit.report import Finding, Report, Severity
from tlaudit.setup import SetupError, TransferSetup

__all__ = ["audit"]

_NEEDS = {
    "optimizer": lambda s: s.optimizer is not None,
    "predict": lambda s: s.predict is not None,
    "num_classes": lambda s: s.num_classes is not None,
    "weights": lambda s: s.weights is not None,
    "transform": lambda s: s.transform is not None,
    "sample": lambda s: s.sample is not None,
    "targets": lambda s: s.targets is not None,
    "train_step": lambda s: s.train_step is not None,
    "load_result": lambda s: s.load_result is not None,
}


def _missing(check: Check, setup: TransferSetup) -> str | None:
    for need in check.needs:
        options = need.split("|")
        if not any(_NEEDS[o](setup) for o in options):
            return "no " + " or ".join(f"`{o}`" for o in options) + " given"
    return None


def audit(
    setup: TransferSetup,
    select: Iterable[str] | str | None = None,
    ignore: Iterable[str] | str | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run the checks over ``setup`` and return a :class:`~tlaudit.report.Report`.

    ``select`` and ``ignore`` are check IDs (lists, or comma-separated strings). A check that lacks
    an input is reported as skipped with the reason; a check that crashes becomes an error finding
    of its own and the others still run. ``progress`` is called with the ID of every selected check
    (skipped ones included) before it runs.

    Everything the user owns is restored before this returns or raises: parameters, buffers,
    ``requires_grad``, ``.grad``, training flags, optimizer and scheduler state, and RNG states.

    Raises:
        SetupError: the setup cannot be run (a bad field, a model that cannot take the sample,
            a ``train_step`` or ``predict`` that raised); the message names the field.

    Example:
        >>> import torch, torchvision, tlaudit
        >>> model = tlaudit.replace_head(torchvision.models.resnet18(), 10)
        >>> _ = tlaudit.freeze_backbone(model)
        >>> report = tlaudit.audit(tlaudit.TransferSetup(model=model, num_classes=10, strategy="feature_extraction",
        ...     optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)))
        >>> sorted({f.check for f in report.findings})
        ['frozen-bn-train', 'optimizer-frozen']
    """
    if not isinstance(setup, TransferSetup):
        raise SetupError(f"audit() needs a TransferSetup, got {type(setup).__name__} (setup)", field="setup")
    checks = select_checks(select, ignore)
    started = time.perf_counter()
    snapshot = Snapshot(setup.model, setup.optimizer, setup.scheduler)
    ctx = AuditContext(setup, snapshot)
    ctx.validate()
    findings: list[Finding] = []
    run: list[str] = []
    skipped: list[tuple[str, str]] = []
    try:
        for check in checks:
            if progress is not None:
                progress(check.id)
            reason = _missing(check, setup)
            if reason is not None:
                skipped.append((check.id, reason))
                continue
            try:
                found = list(check.func(ctx))
            except Skip as skip:
                skipped.append((check.id, str(skip)))
                continue
            except SetupError:
                raise
            except Exception as err:  # a check's own bug must not hide the other checks' findings
                found = [
                    Finding(
                        check.id,
                        Severity.ERROR,
                        f"check crashed: {type(err).__name__}: {err}",
                        hint="this is a bug in the check; the other checks still ran",
                    )
                ]
            run.append(check.id)
            findings.extend(found)
    finally:
        snapshot.restore()
    return Report(
        findings=tuple(findings),
        checks_run=tuple(run),
        skipped=tuple(skipped),
        notes=tuple(ctx.notes),
        model=type(ctx.inner).__name__,
        seconds=time.perf_counter() - started,
    )
