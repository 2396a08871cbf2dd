"""``tlaudit.watch()``: audit a real training run as it runs, without writing a setup.

The watcher observes the run through PyTorch's public global hooks (see :mod:`tlaudit.watcher.observe`;
the torchvision weights a builder loads: :mod:`tlaudit.watcher.weights`):

* at the **first optimizer step**, before it executes, it audits the model, the real batch and
  targets, the loss, the optimizer and its schedulers, and the dataset's transform
  (:mod:`tlaudit.watcher.build` says how each is found), then lets the step run untouched: the
  audit restores everything it touched first;
* after the **first validation pass** (model calls that no backward pass reached, decided at the
  next step or when the watch ends) it audits inference: eval mode, gradients, determinism;
* then it removes every hook: the rest of the run costs nothing.

What no hook can see is what the user means: ``watch(strategy="feature_extraction")`` turns a freeze
loop that silently froze nothing into an error. ``fail_on`` decides whether a finding stops the run
(:class:`~tlaudit.AuditFailed` raised before the step) or is only reported (``fail_on=None``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import torch
from torch import nn

from tlaudit.auditing.report import AuditFailed, Report
from tlaudit.errors import SetupError
from tlaudit.watcher.build import dataset_fields, find_datasets, find_loaders, inference_fields, sample_slot, train_fields
from tlaudit.watcher.calls import modes_of, precedes_training_forward, training_call, validation_call
from tlaudit.watcher.facts import hf_weights
from tlaudit.watcher.labels import LabelWatch
from tlaudit.watcher.live import one_pass
from tlaudit.watcher.observe import ModelCall, Observer
from tlaudit.watcher.predictions import Modes, ModesWatch, describe_modes
from tlaudit.watcher.session import AuditSession
from tlaudit.watcher.tracebacks import hide_watcher_frames
from tlaudit.watcher.weights import WeightsObserver
from tlaudit.watcher.whole_run import (
    Fingerprint,
    by_design,
    changed_since_audit,
    declared_classes,
    diagnose_crash,
    fingerprint,
    report_labels,
)

__all__ = ["RunStopped", "Watch", "watch"]

F = TypeVar("F", bound=Callable[..., Any])

_ACTIVE: list[Watch] = []


class RunStopped(BaseException):
    """Raised inside the run to end it (``max_steps`` reached, or ``stop_after_audit`` and the audits
    done). A ``BaseException`` so that the run's own ``except Exception`` does not swallow it; the
    ``with watch(...)`` block that raised it suppresses it."""


class Watch:
    """The context manager (and decorator) :func:`watch` returns. ``reports`` holds the audits' reports
    by stage (``"train"``, ``"inference"``); ``steps`` counts the run's optimizer steps while watched."""

    def __init__(
        self,
        session: AuditSession,
        *,
        max_steps: int | None = None,
        stop_after_audit: bool = False,
    ) -> None:
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"invalid max_steps: {max_steps!r} (watch); expected a positive integer")
        self.session = session
        self.max_steps = max_steps
        self.stop_after_audit = stop_after_audit
        self.steps = 0
        self.stopped = False
        self._observer: Observer | None = None
        self._weights = WeightsObserver()
        self._pending_notes: list[str] = []
        self._trained: set[int] = set()
        self._held: set[int] = set()  # ids of the parameters the optimizers seen stepping hold
        self._deferred: tuple[ModelCall, list[ModelCall]] | None = None
        self._unreplayable: str | None = None
        self.say_missing_inference = True
        """At the end, say so when the run trained and no inference was audited (callbacks say it their way)."""
        self._in_step: set[tuple[int, Modes]] = set()
        """(module id, modes) of calls that recur before each step's training forward: part of the step."""
        """The ids of the modules train-audited: a later call of one that no backward reaches is inference."""
        self._done: set[str] = set()
        """The audits done (or with no selected check): ``"train"``, ``"inference"``."""
        self._labels = LabelWatch(declared_classes)
        self.raised_classes: tuple[int, str] | None = None
        """The dataset's class count when a model call first raised (read then: a crash unwinds the loop)."""
        self._raise_seen = False
        self._known: dict[int, tuple[nn.Module, Fingerprint]] = {}
        """Each audited optimizer's model and fingerprint: a change is audited at the step it shows."""
        self._inference_stage = "inference"
        self._next_inference: str | None = None
        self._inference_of: nn.Module | None = None
        """The new model whose first validation pass is awaited: other models' calls are not it (a
        distillation teacher called in eval mode while the student trains)."""
        self._next_inference_of: nn.Module | None = None
        self._others: list[list[Any]] = []
        """``[call, boundaries passed]`` of predictions of modules no recorded call held, seen while
        counting only: one that is not called again in the step after is audited (an EMA model
        validated without ``eval()``); one that is, is part of training (a target network)."""
        self._model: nn.Module | None = None
        self._sample: torch.Tensor | None = None
        self._modes = ModesWatch(self._audit_later, lambda: self._observer is None or self._observer.paused)
        """A later prediction in other modes than the audited inference is audited too (before it runs)."""

    @property
    def reports(self) -> dict[str, Report]:
        return self.session.reports

    @property
    def failed(self) -> bool:
        """An audit reached ``fail_on``."""
        return self.session.failed

    # -- context manager and decorator ---------------------------------------------------------

    def __enter__(self) -> Watch:
        if _ACTIVE:
            raise RuntimeError("tlaudit.watch() is already watching this process; nest no second watch inside it")
        _ACTIVE.append(self)
        self._observer = Observer(self._on_step, self._on_raise)
        self._observer.on_new_prediction = self._note_prediction
        self._observer.open()
        self._weights.open()
        self._labels.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        observer = self._observer
        try:
            if isinstance(error, Exception) and not isinstance(error, (AuditFailed, SetupError)):
                diagnose_crash(self, error)
            if error is not None and not isinstance(error, (RunStopped, AuditFailed, SetupError)):
                hide_watcher_frames(error)  # the traceback the user sees is the unwatched program's
            if observer is not None and kind is None and "inference" not in self._done:
                validation = validation_call(self._of_awaited(observer.calls), self._trained, self._held, window=observer.calls)
                if validation is not None and "train" in self._done:
                    observer.paused = True
                    self._audit_inference(validation, observer.calls)
            if kind in (None, RunStopped):
                self._modes.flush()  # a later prediction no training forward followed is audited now
                if self._others:  # no optimizer step follows them: no part of a training step
                    self._settle_others(at_end=True)
            if kind in (None, RunStopped) and self.say_missing_inference:
                try:
                    self._say_missing_inference()
                except Exception:  # a courtesy line: it never breaks the run it reports on
                    pass
        finally:
            self._close()
        return kind is RunStopped

    def _say_missing_inference(self) -> None:
        """Where the run trained but its inference was never audited, say why (silence would read as clean)."""
        if "train" not in self.session.reports or "inference" in self.session.reports or not self.session.checks("inference"):
            return
        why = self._unreplayable or "no inference call (grad mode off, inference mode, or the model in eval mode) was seen while watched"
        stream = self.session.stream or sys.stderr
        stream.write(f"tlaudit watch: no inference audited: {why}; eval-mode, eval-nondeterministic and grad-inference did not run\n")
        stream.flush()

    def __call__(self, func: F) -> F:
        """Use as a decorator: every call of ``func`` is watched afresh."""

        @functools.wraps(func)
        def watched(*args: Any, **kwargs: Any) -> Any:
            fresh = Watch(self.session.fresh(), max_steps=self.max_steps, stop_after_audit=self.stop_after_audit)
            with fresh:
                return func(*args, **kwargs)

        return watched  # type: ignore[return-value]

    def _close(self, *, in_step: bool = False) -> None:
        self._weights.close()
        self._modes.close()
        if not in_step:
            self._labels.close()
        if self._observer is not None:
            self._observer.close(in_step=in_step)
            if not in_step:
                self._observer = None
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    # -- the step ------------------------------------------------------------------------------

    def _on_raise(self) -> None:
        """A model call raised (a loss computed inside it, say): read the class count of the dataset
        being iterated now, once, while its iterator is live; the crash diagnosis needs it later."""
        if self._raise_seen:
            return
        self._raise_seen = True
        try:
            with one_pass():
                self.raised_classes = declared_classes()
        except Exception:  # a courtesy for the diagnosis: the program's own exception is what counts
            self.raised_classes = None

    def _on_step(self, optimizer: torch.optim.Optimizer) -> None:
        observer = self._observer
        assert observer is not None  # the hook only exists while observing
        pending, observer.calls = observer.calls, []
        self.steps += 1
        self._modes.step()
        over = self.max_steps is not None and self.steps > self.max_steps
        if self._labels.problems and "labels" not in self._done:
            self._done.add("labels")
            report_labels(self, stop=True)  # targets past the head that did not raise (a GPU asserts later)
        if observer.counting:
            if over:
                self._stop()
            if self._others:
                self._settle_others()
            changed_since_audit(self, optimizer)
            return
        if self._known:  # after the first train audit: a new optimizer, or a change, is audited at this step
            changed_since_audit(self, optimizer)
        self._held.update(id(p) for group in optimizer.param_groups for p in group["params"])
        observer.paused = True
        try:
            with one_pass():  # the audits below find the run's loaders, schedulers and modules: one pass
                self._audit_step(pending, optimizer)
        except BaseException:
            self._close()
            raise
        finally:
            observer.paused = False
        if over:
            self._stop()
        if {"train", "inference"} <= self._done:
            if self.stop_after_audit:
                self._stop()
            # only the step hook stays: it ends the run at max_steps and watches for a new optimizer or a
            # change of the trainable parameters and param groups (a fingerprint, microseconds a step)
            observer.count_only()

    def _audit_step(self, pending: list[ModelCall], optimizer: torch.optim.Optimizer) -> None:
        """The train audit (and a validation pass before it), or the inference audit, at this step."""
        observer = self._observer
        assert observer is not None
        pending = self._resolve_deferred(pending)
        if "train" not in self._done:
            trained = training_call(pending, optimizer, self._held)
            if trained is not None:
                before = pending[: pending.index(trained)] if trained in pending else pending
                validation = validation_call(self._of_awaited(before), self._trained, self._held, window=pending)
                self._audit_train(trained, optimizer)
                if validation is not None and "inference" not in self._done:
                    self._inference_or_defer(validation, before, pending)
            else:
                self._pending_notes.append(
                    f"no model call before optimizer step {self.steps} reached backward (a closure-based step?); "
                    "the audit waited for the next step"
                )
                observer.calls = [c for c in pending if c.validation][:3]  # keep the validation pass seen
        elif "inference" not in self._done:
            validation = validation_call(self._of_awaited(pending), self._trained, self._held, window=pending)
            if validation is not None:
                self._inference_or_defer(validation, pending, pending)

    def _inference_or_defer(self, call: ModelCall, window: list[ModelCall], step: list[ModelCall]) -> None:
        """Audit the validation ``call``, unless it ran in training mode before a training forward of
        its model in the same step: then it may be part of that step (pseudo-labels computed first).
        Whether it is shows at the next step: the same call again before the training forward is."""
        if any(call.training) and precedes_training_forward(call, step):
            self._deferred = (call, list(window))
            return
        self._audit_inference(call, window)

    def _resolve_deferred(self, pending: list[ModelCall]) -> list[ModelCall]:
        """Settle a deferred validation call (see :meth:`_inference_or_defer`) with this step's calls,
        and leave out the calls in modes known to be part of a model's training step."""
        if self._deferred is not None:
            call, window = self._deferred
            self._deferred = None
            modes = modes_of(call)
            if any(c.module is call.module and modes_of(c) == modes and precedes_training_forward(c, pending) for c in pending):
                self._in_step.add((id(call.module), modes))
                self._modes.also_seen(call.module, modes)
            else:
                self._audit_inference(call, window)
        if not self._in_step:
            return pending
        return [c for c in pending if (id(c.module), modes_of(c)) not in self._in_step]

    def _stop(self) -> None:
        self.stopped = True
        self._close()
        raise RunStopped(f"tlaudit: run stopped after {self.steps - 1} optimizer steps")

    def _audit_train(self, call: ModelCall, optimizer: torch.optim.Optimizer) -> None:
        fields, observed, notes = train_fields(call, optimizer)
        loaders = find_loaders()
        more, seen, more_notes = dataset_fields(find_datasets(loaders), loaders)
        fields.update(more)
        observed.update(seen)
        loaded, where, weight_notes = self._weights.fields(call.module)
        fields.update(loaded)
        observed.update(where)
        if "weights" not in fields:
            expected = self._weights.timm_model(call.module) or hf_weights(call.module)
            if expected is not None:
                fields["weights"], observed["weights"] = expected
        parts = getattr(call, "parts", None)
        if parts:
            observed["model"] = f"{type(call.module).__name__}, the module holding the parts the loop called ({', '.join(parts)})"
        notes = [*self._pending_notes, *notes, *more_notes, *weight_notes]
        self._trained.add(id(call.module))
        self._model = call.module
        if self._observer is not None:
            self._observer.known.update(id(m) for m in call.module.modules())
        sample = fields.get("sample")
        self._sample = sample if isinstance(sample, torch.Tensor) else self._sample
        self._known[id(optimizer)] = (call.module, fingerprint(optimizer, call.module))
        stage = "train" if "train" not in self.session.reports else f"train (step {self.steps})"
        self.session.audit(stage, fields, observed, notes, adjust=by_design(call.module, optimizer))
        self._done.add("train")
        if not self.session.checks("inference"):
            self._done.add("inference")

    def _audit_inference(self, call: ModelCall, window: list[ModelCall] = ()) -> None:  # type: ignore[assignment]
        """Audit the validation ``call``; then the calls of ``window`` after it that predict in other modes."""
        if sample_slot(call) is None:
            first = call.args[0] if call.args else None
            kind = type(first).__name__ if first is not None else "keywords only"
            self._unreplayable = (
                f"the validation call of {type(call.module).__name__} takes no tensor batch the audit can replay "
                f"(its input: {kind}; a detection model's list of images, say)"
            )
            return
        fields, observed = inference_fields(call)
        self.session.audit(self._inference_stage, fields, observed)
        if self._observer is not None:
            self._observer.known.update(id(m) for m in call.module.modules())
        self._modes.add(call)
        self._done.add("inference")
        self._inference_of = None
        if call in window:
            self._modes.seen_later(window, window.index(call) + 1)
        if self._next_inference is not None:  # a new model trains since: its first validation pass is next
            self._inference_stage, self._next_inference = self._next_inference, None
            self._inference_of, self._next_inference_of = self._next_inference_of, None
            self._done.discard("inference")

    def _note_prediction(self, call: ModelCall) -> None:
        self._others.append([call, 0])

    def _settle_others(self, *, at_end: bool = False) -> None:
        """Decide the predictions noted while counting only (see ``_others``) at this step boundary."""
        observer = self._observer
        assert observer is not None
        pending, self._others = self._others, []
        for entry in pending:
            call, passed = entry
            key = id(call.module)
            again, observer.followed[key] = observer.followed.get(key, 0), 0
            if at_end:
                observer.followed.pop(key, None)
                if not passed:  # no optimizer step followed it: no part of a training step
                    self._audit_other(call, f"at the watch's end, after optimizer step {self.steps}")
                continue  # a step followed it and the next never came: no evidence either way
            if not passed:  # the interval it was seen in ends: the next one decides
                entry[1] = 1
                self._others.append(entry)
                continue
            observer.followed.pop(key, None)
            if not again:  # not called again in the step after: the prediction it looked like
                self._audit_other(call, f"before optimizer step {self.steps}")
            # else called again in the step after: part of training (a target network), not a prediction

    def _audit_other(self, call: ModelCall, when: str) -> None:
        if sample_slot(call) is None:
            return
        fields, observed = inference_fields(call)
        stage = f"inference (another model: {type(call.module).__name__}, {when})"
        note = (
            f"{type(call.module).__name__} is held by no optimizer the run steps and was not called again in the step "
            "after its prediction (an EMA model's validation, say): audited as the prediction it was"
        )
        self._audit_paused(stage, fields, observed, note)

    def _audit_paused(self, stage: str, fields: dict[str, Any], observed: dict[str, str], note: str) -> None:
        """One inference audit of a later call, the observer paused; a stop closes the watch first."""
        observer = self._observer
        assert observer is not None
        observer.paused = True
        try:
            self.session.audit(stage, fields, observed, [note])
        except BaseException:
            self._close()
            raise
        finally:
            observer.paused = False

    def _of_awaited(self, calls: list[ModelCall]) -> list[ModelCall]:
        """``calls`` of the model whose first validation pass is awaited (or of its parts), when one is."""
        target = self._inference_of
        if target is None:
            return calls
        parts = {id(m) for m in target.modules()}
        return [c for c in calls if id(c.module) in parts]

    def _audit_later(self, call: ModelCall, before: list[Modes]) -> None:
        """A call of an inference-audited model in modes not audited yet: audit it before it runs."""
        observer = self._observer
        if observer is None or sample_slot(call) is None:
            return
        modes = (tuple(call.training), call.grad_enabled, call.inference_mode)
        audited = "; ".join(describe_modes(m) for m in before)
        stage = f"inference (later, step {self.steps}: {describe_modes(modes)})"
        note = f"a later prediction of {type(call.module).__name__} ran in other modes than the audited inference ({audited}): audited before it ran"
        fields, observed = inference_fields(call)
        observed["sample"] = f"the batch of that call, shape {tuple(fields['sample'].shape)}"
        self._audit_paused(stage, fields, observed, note)


def watch(*, max_steps: int | None = None, stop_after_audit: bool = False, **options: Any) -> Watch:
    """Watch the training run inside the ``with`` block (or the decorated function) and audit it.

    Args:
        max_steps: end the run (:class:`RunStopped`, suppressed by the ``with``) after this many steps.
        stop_after_audit: end the run as soon as both audits are done.
        **options: the keywords every watched run takes, documented once on
            :class:`~tlaudit.watcher.session.AuditSession`: the intent (``strategy``, ``frozen``,
            ``num_classes``, ``weights``, ``head``, ``lr_max``: what you mean, which wins over what the
            watcher infers), ``fail_on`` (``"error"``, ``"warning"``, or None to report and go on),
            ``select``, ``ignore``, ``output``, ``format`` and ``stream``.

    Raises:
        SetupError: a bad intent value (here) or one that does not fit the model (at the first step).
        ValueError: an unknown check ID, a bad ``fail_on``, ``format`` or ``max_steps``.

    Example:
        >>> import torch, torchvision, tlaudit
        >>> model = tlaudit.replace_head(torchvision.models.resnet18(), 4)
        >>> optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.01)
        >>> import io
        >>> with tlaudit.watch(strategy="feature_extraction", fail_on=None, stream=io.StringIO()) as w:
        ...     loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 3]))
        ...     loss.backward()
        ...     optimizer.step()
        >>> sorted({f.check for f in w.reports["train"].findings})
        ['frozen-bn-train', 'frozen-grad', 'optimizer-missing']
    """
    return Watch(AuditSession(**options), max_steps=max_steps, stop_after_audit=stop_after_audit)
