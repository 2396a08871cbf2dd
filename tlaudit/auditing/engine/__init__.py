"""The audit engine: run the selected checks over a setup, restore everything, return a Report.

``resolve`` turns the setup into the evidence the checks read, ``inputs`` gives the sample, targets
and default train step, ``tracing`` runs and observes the train step and ``predict``, and
``snapshot`` puts the user's objects back. The public entry is :func:`tlaudit.audit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tlaudit.auditing.checks import Check, Phase, select_checks
from tlaudit.auditing.engine.resolve import AuditContext
from tlaudit.auditing.engine.snapshot import Snapshot
from tlaudit.auditing.evidence import Skip
from tlaudit.auditing.report import Finding, Report, Severity, Skipped
from tlaudit.auditing.setup import SetupError, TransferSetup
from tlaudit.auditing.suppressions import apply_suppressions

__all__ = ["audit"]


def _missing(check: Check, setup: TransferSetup) -> str | None:
    """Why ``check`` cannot run on ``setup`` (a field it needs is None), or None."""
    for need in check.needs:
        options = need.split("|")
        if all(getattr(setup, option) is None for option in options):
            return "no " + " or ".join(f"`{o}`" for o in options) + " given"
    return None


def audit(
    setup: TransferSetup,
    select: Iterable[str | Check] | str | None = None,
    ignore: Iterable[str | Check] | str | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    snapshot: str = "auto",
) -> Report:
    """Run the checks over ``setup`` and return a :class:`~tlaudit.auditing.report.Report`.

    ``select`` and ``ignore`` are check IDs (lists, or comma-separated strings). A check that lacks
    an input is reported as skipped with the reason; a check that crashes becomes an error finding
    of its own and the others still run. ``progress`` is called with the ID of every selected check
    (skipped ones included) before it runs. ``snapshot`` says where the copies that restore the
    model are kept: ``"auto"`` (on the model's device unless it is short of memory, then in host
    memory), ``"device"`` or ``"host"``.

    Everything the user owns is restored before this returns or raises: parameters, buffers,
    ``requires_grad``, ``.grad``, training flags, optimizer and scheduler state, and RNG states.

    Findings of the checks in ``setup.ignore`` are not dropped: the report lists them under
    ``suppressed`` with the reason, and they do not count toward ``ok`` or ``fail_on``.

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
    try:
        saved = Snapshot(setup.model, setup.optimizer, setup.scheduler, copies=snapshot)
    except ValueError as err:
        raise SetupError(str(err), field="snapshot") from err
    ctx = AuditContext(setup, saved)
    ctx.static_only = bool(checks) and all(check.phase is Phase.STATIC for check in checks)
    findings: list[Finding] = []
    run: list[str] = []
    skipped: list[Skipped] = []
    try:
        for check in checks:
            if progress is not None:
                progress(check.id)
            reason = _missing(check, setup)
            if reason is not None:
                skipped.append(Skipped(check.id, reason))
                continue
            try:
                found = check.run(ctx)
            except Skip as skip:
                skipped.append(Skipped(check.id, str(skip)))
                continue
            except SetupError:
                raise
            except Exception as err:  # a check's own bug must not hide the other checks' findings
                found = [
                    check.finding(
                        f"check crashed: {type(err).__name__}: {err}",
                        hint="this is a bug in the check; the other checks still ran",
                        severity=Severity.ERROR,
                    )
                ]
            run.append(check.id)
            findings.extend(found)
    finally:
        saved.restore()
    active, suppressed = apply_suppressions(findings, setup.ignore)
    return Report(
        findings=active,
        suppressed=suppressed,
        checks_run=tuple(run),
        skipped=tuple(skipped),
        notes=tuple(ctx.notes),
        model=type(ctx.inner).__name__,
        seconds=time.perf_counter() - started,
        order=tuple(check.id for check in checks),
    )
