"""One engine path for watched runs: a ``TransferSetup`` built from what a run showed, audited, reported.

:func:`tlaudit.watch`, ``tlaudit run`` and the Lightning callback all end here. A session holds the
user's intent (the ``TransferSetup`` fields nothing can observe: ``strategy``, ``frozen``,
``num_classes``, ``weights``, ``head``, ``lr_max``), the audit options and where reports go.

Two audits per run:

* the **train audit**, at the first optimizer step, over every check that needs no ``predict``;
* the **inference audit**, after the first validation pass, over the checks that need ``predict``
  (``eval-mode``, ``eval-nondeterministic``, ``grad-inference``).

Each report lists, in its notes, which fields were observed in the run, which were given as intent,
and which were not there to observe. A report at or above ``fail_on`` raises
:class:`~tlaudit.AuditFailed` (before the step, so the run stops); otherwise it is written out and
the run goes on.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from torch import nn

from tlaudit.auditing.engine import audit
from tlaudit.auditing.findings import Severity
from tlaudit.auditing.report import AuditFailed, Report
from tlaudit.auditing.setup import Strategy, TransferSetup
from tlaudit.errors import SetupError
from tlaudit.options import parse_check_ids, parse_fail_on, validate_check_ids
from tlaudit.reports import Format
from tlaudit.watcher.progress import clear_of_progress_bars
from tlaudit.watcher.verdicts import replay_failures_as_skips, undecided_before_a_step

__all__ = ["INTENT_FIELDS", "AuditSession", "Stage"]

INTENT_FIELDS = ("strategy", "frozen", "num_classes", "weights", "head", "lr_max")
"""The ``TransferSetup`` fields a watched run takes as keywords: what the user means, which no hook sees."""


Stage = str
"""``"train"`` (the first optimizer step), ``"inference"`` (the first validation pass), or a label
of the callbacks' other audits (``"static"``: the checks that read the setup without a step, and a
re-audit after an unfreeze, which runs the train checks)."""

_HEADINGS = {
    "train": "train audit at the first optimizer step",
    "inference": "inference audit after the first validation pass",
    "static": "static audit at the start of the fit",
    "crash": "diagnosis of the exception that ended the run (the program's traceback follows)",
}


class AuditSession:
    """The intent, options and output of a watched run, and its audits: the one set of keywords that
    :func:`tlaudit.watch`, ``tlaudit run``, the Lightning and the Hugging Face callbacks take.

    Args:
        strategy, frozen, num_classes, weights, head, lr_max: what the user means (``TransferSetup``
            fields no hook observes, :data:`INTENT_FIELDS`); each wins over what is inferred.
        fail_on: ``"error"`` (default) or ``"warning"``: a finding at or above it raises
            :class:`~tlaudit.AuditFailed` (before the step, so the run stops); None never stops the run
            (the reports are still written).
        select, ignore: check IDs (a list or a comma-separated str), as for :func:`tlaudit.audit`.
        output: a file the reports are appended to; None writes them to ``stream`` (default stderr).
        format: a :class:`~tlaudit.reports.Format` value; ``json`` writes one JSON object per line,
            with its ``stage``.
        stream: where reports go without ``output`` (default ``sys.stderr``).

    Raises:
        SetupError: a bad intent value (its field named); one that does not fit the model raises at
            the first audit.
        ValueError: an unknown check ID, a bad ``fail_on`` or ``format``.
    """

    def __init__(
        self,
        *,
        strategy: str | None = None,
        frozen: Iterable[str] | str | None = None,
        num_classes: int | None = None,
        weights: Any = None,
        head: Iterable[str] | str | None = None,
        lr_max: float | None = None,
        fail_on: str | None = "error",
        select: Iterable[str] | str | None = None,
        ignore: Iterable[str] | str | None = None,
        output: str | Path | None = None,
        format: str = "table",
        stream: TextIO | None = None,
    ) -> None:
        intent = {"strategy": strategy, "frozen": frozen, "num_classes": num_classes, "weights": weights, "head": head, "lr_max": lr_max}
        if strategy is not None:
            intent["strategy"] = Strategy.parse(strategy)  # wrong at once, not at the first step
        if weights is not None and hasattr(weights, "image_mean"):  # a Hugging Face image processor
            from tlaudit.watcher.facts import processor_statistics

            intent["weights"] = processor_statistics(weights) or weights
        self.intent = {k: v for k, v in intent.items() if v is not None}
        self.select = parse_check_ids(select, "select") if select is not None else None
        self.ignore = parse_check_ids(ignore, "ignore") if ignore is not None else None
        validate_check_ids(self.select, self.ignore, "watch")
        self.fail_on = parse_fail_on(fail_on, "fail_on") if fail_on is not None else None
        self.format = Format(format)
        self.output = Path(output) if output is not None else None
        self.stream = stream
        self.reports: dict[Stage, Report] = {}
        self.failed = False
        if self.output is not None:
            self.output.write_text("", encoding="utf-8")

    def fresh(self) -> AuditSession:
        """A new session with the same intent and options, and no reports yet (the output file emptied)."""
        return AuditSession(
            **self.intent,
            fail_on=self.fail_on,
            select=self.select,
            ignore=self.ignore,
            output=self.output,
            format=self.format.value,
            stream=self.stream,
        )

    # -- the audits ----------------------------------------------------------------------------

    def checks(self, stage: Stage) -> list[str]:
        """The selected check IDs of ``stage``: ``inference`` runs the inference checks, ``static`` those
        that read the setup without a step, every other stage all but the inference checks."""
        from tlaudit.auditing.checks import Phase, select_checks

        chosen = select_checks(self.select, self.ignore)
        if stage == "static":
            return [c.id for c in chosen if c.phase is Phase.STATIC]
        return [c.id for c in chosen if (c.phase is Phase.INFERENCE) == stage.startswith("inference")]

    def audit(
        self,
        stage: Stage,
        fields: dict[str, Any],
        observed: dict[str, str],
        notes: Iterable[str] = (),
        *,
        only: Iterable[str] | None = None,
        explain: Callable[[Report], Iterable[str]] | None = None,
        adjust: Callable[[Report], Report] | None = None,
        stop: bool = True,
        also: Iterable[str] = (),
    ) -> Report | None:
        """Audit the setup made of ``fields`` (observed or inferred) and the intent; write the report out.

        ``observed`` maps each field that came from the run to where it came from. ``only`` narrows
        the stage's checks and ``also`` adds selected train checks; ``explain(report)`` adds notes that depend on the findings; ``adjust``
        rewrites the report before the verdict (what a framework leaves out by design). A
        ``train_step`` among the fields is the audit's replay of a step the run took: its failure is a
        skip, not the program's error. ``stop=False`` writes the report and never raises (a diagnosis
        beside the program's own exception). Returns None when no selected check belongs to ``stage``.

        Raises:
            AuditFailed: a finding is at or above ``fail_on`` (the report is written first).
            SetupError: the intent does not fit the model (a ``frozen`` or ``head`` name it lacks).
        """
        selected = set(self.checks("train")) | set(self.checks("static"))
        ids = [c for c in self.checks(stage) if only is None or c in set(only)]
        ids += [c for c in also if c in selected and c not in ids]  # a train check the stage can run with what it has
        if not ids:
            return None
        values = {k: v for k, v in fields.items() if v is not None and k not in self.intent}
        dropped: list[str] = []
        setup = _observed_setup(values, dropped).with_overrides(**self.intent)
        report = audit(setup, ids)
        if "train_step" in values:
            report = replay_failures_as_skips(report)
        if adjust is not None:
            report = adjust(report)
        if stage == "static":  # no step yet: the first train audit decides what only a gradient can tell
            report = undecided_before_a_step(report)
        extra = [*notes, *dropped, *_provenance({**values, **self.intent}, observed, self.intent, stage)]
        if stage in ("train", "static") and self.checks("inference"):  # the first audits, not a later one or a crash's
            extra.append("eval-mode, eval-nondeterministic and grad-inference run after the first validation pass")
        if explain is not None:
            extra.extend(explain(report))
        report = dataclasses.replace(report, notes=(*report.notes, *extra))
        self.reports[stage] = report
        self.emit(stage, report)
        if stop and self.fail_on is not None and report.at_or_above(self.fail_on):
            self.failed = True
            stream = self.stream or sys.stderr
            with clear_of_progress_bars(stream):
                stream.write(f"tlaudit watch: the run is stopped here: a finding at or above fail_on={self.fail_on}\n")
                stream.flush()
            failure = AuditFailed(report, _reason(stage, report, self.fail_on, self.output))
            quiet_when_uncaught(failure)
            raise failure
        return report

    # -- output --------------------------------------------------------------------------------

    def emit(self, stage: Stage, report: Report) -> None:
        """Write ``report`` to ``output`` (appended) or to the stream, under a heading that names the stage."""
        fail_on = self.fail_on or Severity.ERROR.value
        if self.format is Format.JSON:
            text = json.dumps({"stage": stage, **report.to_dict()})
        else:
            text = f"tlaudit watch: {_heading(stage)}\n{self.format.render(report, fail_on=fail_on)}"
        if self.output is not None:
            with self.output.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        stream = self.stream or sys.stderr
        with clear_of_progress_bars(stream):
            if self.output is None:
                stream.write(text + "\n")
            if self.format is not Format.JSON or self.output is not None:
                stream.write(report.summary() + "\n")
            stream.flush()


def quiet_when_uncaught(failure: AuditFailed) -> None:
    """Should ``failure`` end the program uncaught (a script's ``trainer.train()`` does not catch it),
    Python prints its one-line reason instead of a traceback through the framework's hooks: the
    report was written before it was raised. Any other exception is printed by the hook that was
    in place; the hook is chained once and changes nothing else."""
    previous = sys.excepthook
    if getattr(previous, "_tlaudit_failures", None) is not None:
        previous._tlaudit_failures.add(id(failure))  # type: ignore[attr-defined]
        return
    failures = {id(failure)}

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, AuditFailed) and id(value) in failures:
            sys.stderr.write(f"tlaudit.AuditFailed: {value}\n")
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    hook._tlaudit_failures = failures  # type: ignore[attr-defined]
    sys.excepthook = hook


def _reason(stage: Stage, report: Report, fail_on: str, output: Path | None) -> str:
    """The one line an AuditFailed says (the report itself was written once, before it was raised)."""
    ids = sorted({f.check for f in report.at_or_above(fail_on)})
    where = f"in {output}" if output is not None else "above"
    return f"{_heading(stage)}: {', '.join(ids)} at or above fail_on={fail_on} (the report is {where})"


def _heading(stage: Stage) -> str:
    if stage.startswith("train (step ") and ":" in stage:  # a watched run's re-audit: "train (step 5: why)"
        step, why = stage[len("train (step ") : -1].split(": ", 1)
        return f"static audit at optimizer step {step}, before it runs: {why}"
    if stage.startswith("train (step "):
        return f"train audit at optimizer step {stage[len('train (step ') : -1]}"
    if stage.startswith("inference (later, "):  # "inference (later, step 9: 68 of 68 modules in training mode, no_grad)"
        return f"inference audit of a later prediction in other modes (after optimizer {stage[len('inference (later, ') : -1]})"
    if stage.startswith("inference (another model"):  # "inference (another model: AveragedModel, before step 7)"
        return f"inference audit of {stage[len('inference (') : -1]}"
    if stage.startswith("inference (after"):
        return f"inference audit after the first validation pass of the new model ({stage[len('inference (') : -1]})"
    if stage.startswith("labels (step "):
        return f"label audit at optimizer step {stage[len('labels (step ') : -1]}"
    if stage.startswith("train ("):  # a callback's re-audit: "train (epoch 3)"
        return f"train audit after the param groups or trainable parameters changed {stage[6:]}"
    return _HEADINGS.get(stage, f"{stage} audit")


def _observed_setup(values: dict[str, Any], notes: list[str]) -> TransferSetup:
    """A TransferSetup of what the run showed; an observed field it rejects is left out, with a note
    (what a hook sees is not the user's word; the intent is applied after, and a bad intent raises)."""
    while True:
        try:
            return TransferSetup(**values)
        except SetupError as err:
            if err.field not in values or err.field == "model":
                raise
            values.pop(err.field)
            notes.append(f"the observed `{err.field}` was left out: {err}")


def _provenance(values: dict[str, Any], observed: dict[str, str], intent: dict[str, Any], stage: Stage) -> list[str]:
    """Notes saying which fields were observed (and where), given, or (train audit) not there to observe."""
    seen = [f"{name} ({where})" for name, where in observed.items() if name in values and name not in intent]
    notes = []
    if seen:
        notes.append("observed in the run: " + "; ".join(seen))
    if intent:
        notes.append("given as intent: " + ", ".join(sorted(intent)))
    missing = [n for n in ("optimizer", "scheduler", "transform", "num_classes", "weights", "targets") if n not in values]
    if missing and not stage.startswith("inference"):
        notes.append("not observed: " + ", ".join(missing))
    return notes


def describe_model(model: nn.Module) -> str:
    """``ResNet``, or ``OptimizedModule(ResNet)`` for a wrapper."""
    from tlaudit._names import unwrap

    inner = unwrap(model)
    return type(model).__name__ if inner is model else f"{type(model).__name__}({type(inner).__name__})"
