"""Adjustments a watched run makes to a report before it decides whether to stop the run.

* **The tool's own replay failed.** A watched audit replays a step the run has just taken (its
  forward, loss and backward ran on this very batch before the optimizer step hook fired). When
  the replay raises, the failure is the audit's, never the program's: the ``user-code-error``
  finding becomes a skip with the reason, and the traced checks say why they were skipped.
* **Left out by the framework's design.** Parameters that a framework makes trainable and leaves out
  of the optimizer on purpose (Lightning's ``BaseFinetuning(train_bn=False)`` does so for BatchNorm
  at each unfreeze) receive gradients and are never updated: an ``optimizer-missing`` finding whose
  parameters are all of that kind is no error; the report says what is left out and why it may matter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
from torch import nn

from tlaudit.auditing.findings import Skipped
from tlaudit.auditing.report import Report, Severity

__all__ = ["bn_left_out", "finetuners_without_bn", "replay_failures_as_skips", "undecided_before_a_step", "without_by_design"]

_USER_CODE = "user-code-error"


def replay_failures_as_skips(report: Report) -> Report:
    """``report`` with a failed replay of the run's step read as the audit's own failure (a skip)."""
    failed = [f for f in report.findings if f.check == _USER_CODE and f.subject == "train_step"]
    if not failed:
        return report
    error = failed[0].message.removeprefix("TransferSetup.train_step raised ")
    skipped = [
        Skipped(
            s.check,
            s.reason.replace("the train step raised", "the audit's replay of the run's step raised").replace(
                f"; see `{_USER_CODE}`", "; the run's own step ran, so this is the audit's failure, not the program's"
            ),
        )
        for s in report.skipped
    ]
    skipped.append(Skipped(_USER_CODE, f"the audit's replay of the run's step raised {error}; the run's own step ran"))
    return dataclasses.replace(
        report,
        findings=tuple(f for f in report.findings if f not in failed),
        checks_run=tuple(
            c for c in report.checks_run if c != _USER_CODE or any(f.check == _USER_CODE for f in report.findings if f not in failed)
        ),
        skipped=tuple(skipped),
    )


def without_by_design(report: Report, left_out: int, total_missing: int, why: str) -> Report:
    """``report`` without its ``optimizer-missing`` findings when every trainable parameter in no
    optimizer group (``total_missing``) is one the framework leaves out by design (``left_out``), and
    with a note that says so (``why``)."""
    if not left_out:
        return report
    note = f"{left_out} trainable parameters are in no optimizer group by design: {why}"
    findings: Iterable = report.findings
    if left_out == total_missing:
        findings = [f for f in report.findings if f.check != "optimizer-missing"]
    return dataclasses.replace(report, findings=tuple(findings), notes=(*report.notes, note))


def undecided_before_a_step(report: Report) -> Report:
    """``report`` (a callback's audit at the start of the fit) with its ``optimizer-missing`` errors as
    warnings: a parameter left at ``requires_grad=True`` that the step never reaches (a backbone run
    under ``no_grad`` and left out of the optimizer on purpose, as lightly's linear classifier does)
    is frozen in effect, and no step has run to tell; the train audit at the first step decides."""
    missing = [f for f in report.findings if f.check == "optimizer-missing" and f.severity is Severity.ERROR]
    if not missing:
        return report
    findings = tuple(
        dataclasses.replace(
            f, severity=Severity.WARNING, message=f"{f.message}; no step observed yet: an error if the first step gives them a gradient"
        )
        if f in missing
        else f
        for f in report.findings
    )
    return dataclasses.replace(report, findings=findings)


_TRAIN_BN_FALSE = (
    "BaseFinetuning(train_bn=False) makes BatchNorm parameters trainable when it unfreezes a module and "
    "leaves them out of the optimizer on purpose: they receive gradients but never change (and their "
    "running statistics are frozen too); use train_bn=True to train them"
)


def finetuners_without_bn(objects: Iterable[object]) -> list[object]:
    """The Lightning ``BaseFinetuning`` callbacks among ``objects`` that keep BatchNorm out (``train_bn=False``)."""
    import sys

    module = sys.modules.get("lightning.pytorch.callbacks.finetuning") or sys.modules.get("pytorch_lightning.callbacks.finetuning")
    base = getattr(module, "BaseFinetuning", None)
    if not isinstance(base, type):
        return []
    return [o for o in objects if issubclass(type(o), base) and getattr(o, "train_bn", True) is False]


def bn_left_out(model: nn.Module, optimizers: Iterable[torch.optim.Optimizer], finetuners: list[object]) -> tuple[int, int, str]:
    """``(left out by design, all trainable in no optimizer group, why)`` for ``model``: BatchNorm
    parameters a ``BaseFinetuning(train_bn=False)`` leaves out count as by design."""
    held = {id(p) for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]}
    missing = [p for p in model.parameters() if p.requires_grad and id(p) not in held]
    if not finetuners or not missing:
        return 0, len(missing), ""
    bn = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters(recurse=False)}
    return sum(id(p) in bn for p in missing), len(missing), _TRAIN_BN_FALSE
