"""The whole run, not its first step: what the watcher does after its first audits.

* **A fingerprint at each optimizer step**: the number of parameters in each param group and the
  number of trainable parameters of the audited model (microseconds). When it changes (layers
  unfrozen, ``add_param_group``), or a **new optimizer** steps (a rebuilt optimizer, a second model),
  the static checks run at once, before that step executes (an unfrozen layer in no group, an LR
  too high for pretrained layers), and the next step is traced again with its calls.
* **A crash before or between steps**: targets outside the head seen by the label check
  (:mod:`tlaudit.watcher.labels`), or the targets of the call under way (a model that computes its
  own loss), are audited against the class count (the dataset's, else the head's width); the
  diagnosis is written beside the program's traceback, and the exception goes on unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tlaudit.auditing.report import Report
from tlaudit.watcher.build import dataset_fields, find_datasets, find_loaders
from tlaudit.watcher.facts import class_count, find_schedulers, hf_weights, rebound
from tlaudit.watcher.live import instances, one_pass
from tlaudit.watcher.verdicts import bn_left_out, finetuners_without_bn, without_by_design

if TYPE_CHECKING:
    from tlaudit.watcher import Watch

__all__ = ["Fingerprint", "by_design", "changed_since_audit", "diagnose_crash", "fingerprint", "report_labels"]

Fingerprint = tuple[tuple[int, ...], int]


def fingerprint(optimizer: torch.optim.Optimizer, model: nn.Module) -> Fingerprint:
    """``(parameters per param group, trainable parameters of the model)``."""
    return tuple(len(g["params"]) for g in optimizer.param_groups), sum(1 for p in model.parameters() if p.requires_grad)


def by_design(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[Report], Report]:
    """The report adjustment for parameters a live framework callback leaves out of the optimizer on purpose."""
    finetuners = finetuners_without_bn(instances(object)) if "lightning.pytorch" in sys.modules else []
    left = bn_left_out(model, [optimizer], finetuners)
    return lambda report: without_by_design(report, *left)


def _owner(optimizer: torch.optim.Optimizer) -> nn.Module | None:
    """The model of ``optimizer``: the largest live module that holds every one of its parameters (an
    optimizer of the head alone still belongs to the whole model, whose other parameters it may miss)."""
    wanted = {id(p) for g in optimizer.param_groups for p in g["params"]}
    best: tuple[int, nn.Module] | None = None
    for obj in instances(nn.Module):
        ids = {id(p) for p in obj.parameters()}
        if wanted <= ids and (best is None or len(ids) > best[0]):
            best = (len(ids), obj)
    return best[1] if best is not None else None


def changed_since_audit(watch: Watch, optimizer: torch.optim.Optimizer) -> None:
    """At a step after the audits: audit again if this optimizer is new or its fingerprint changed."""
    entry = watch._known.get(id(optimizer))
    if entry is not None and fingerprint(optimizer, entry[0]) == entry[1]:
        return  # the step of every run after its audits: two counts
    with one_pass():
        _audit_change(watch, optimizer, entry)


def _audit_change(watch: Watch, optimizer: torch.optim.Optimizer, entry: tuple[nn.Module, Fingerprint] | None) -> None:
    if entry is None:
        model = _owner(optimizer)
        if model is None:
            return
        why = "a new optimizer steps"
    else:
        model, before = entry
        if fingerprint(optimizer, model) == before:
            return
        why = "the trainable parameters or param groups changed"
    watch._known[id(optimizer)] = (model, fingerprint(optimizer, model))
    stage = f"train (step {watch.steps}: {why})"
    fields: dict[str, Any] = {"model": model, "optimizer": optimizer}
    observed = {"model": f"{type(model).__name__}, the module holding the optimizer's parameters", "optimizer": type(optimizer).__name__}
    schedulers = find_schedulers(optimizer)
    if schedulers:
        fields["scheduler"] = rebound(schedulers[0], optimizer)
        observed["scheduler"] = type(schedulers[0]).__name__
    loaders = find_loaders()
    more, seen, notes = dataset_fields(find_datasets(loaders), loaders)
    fields.update(more)
    observed.update(seen)
    loaded, where, _ = watch._weights.fields(model)
    fields.update(loaded)
    observed.update(where)
    if "weights" not in fields:
        expected = watch._weights.timm_model(model) or hf_weights(model)
        if expected is not None:
            fields["weights"], observed["weights"] = expected
    notes = [*notes, f"{why} at optimizer step {watch.steps}: the checks that need no step ran before it; the next step is traced"]
    observer = watch._observer
    assert observer is not None
    observer.paused = True
    try:
        watch.session.audit(stage, fields, observed, notes, only=watch.session.checks("static"), adjust=by_design(model, optimizer))
    except BaseException:
        watch._close()
        raise
    finally:
        observer.paused = False
    watch._done.discard("train")
    if entry is None:  # a new model: its first validation pass too (after a pending one of the model before)
        label = f"inference (after step {watch.steps})"
        if "inference" in watch._done:
            watch._done.discard("inference")
            watch._inference_stage = label
            watch._inference_of = model
        else:
            watch._next_inference = label
            watch._next_inference_of = model
    observer.resume()


def declared_classes() -> tuple[int, str] | None:
    """The class count of the dataset being iterated (the first), and where it was read."""
    datasets = find_datasets()
    counted = class_count(datasets[0]) if datasets else None
    return (counted[0], f"{type(datasets[0]).__name__}.{counted[1]}") if counted is not None else None


def _targets_and_model(watch: Watch) -> tuple[Any, nn.Module | None, int | None, str]:
    problems = watch._labels.problems
    observer = watch._observer
    entered = observer.entered if observer is not None else None
    model = entered[0] if entered is not None else watch._model
    if problems:
        problem = problems[0]
        return problem.targets, model, problem.classes, f"the targets given to {problem.function}"
    if entered is not None and len(entered[1]) > 1:
        first, second = entered[1][0], entered[1][1]
        if (
            isinstance(first, torch.Tensor)
            and isinstance(second, torch.Tensor)
            and second.ndim
            and first.ndim
            and not second.is_floating_point()
            and second.shape[0] == first.shape[0]
        ):
            return second, model, None, f"the targets given to {type(entered[0]).__name__} (a loss computed inside)"
    return None, model, None, ""


def _label_audit(watch: Watch, stage: str, note: str, *, stop: bool) -> None:
    targets, model, width, source = _targets_and_model(watch)
    if targets is None or model is None:
        return
    problems = watch._labels.problems
    if problems and problems[0].declared is not None:
        counted: tuple[int, str] | None = problems[0].declared
    else:  # read when the model call raised, else now (a crash has unwound the loop: maybe nothing is left)
        counted = watch.raised_classes or declared_classes()
    num_classes = counted[0] if counted is not None else width
    if num_classes is None:
        return
    where = f"{num_classes}, {counted[1]}" if counted is not None else f"{num_classes}, the width of the loss input"
    observed = {"model": type(model).__name__, "targets": source, "num_classes": where}
    entered = watch._observer.entered if watch._observer is not None else None
    sample = entered[1][0] if entered is not None and entered[1] and isinstance(entered[1][0], torch.Tensor) else None
    if sample is None or not sample.ndim or sample.shape[0] != targets.shape[0]:
        # a stand-in (only the targets are read): shaped as the run's batches where one was seen; else a
        # model called with keywords only (input_ids=, labels=) or a list of images, at the first step
        like = watch._sample
        shape, dtype = ((*like.shape[1:],), like.dtype) if like is not None else ((1,), torch.float32)
        sample = torch.zeros((targets.shape[0], *shape), dtype=dtype)
    notes = [note]
    checks = ["label-range"]
    if counted is not None and width is not None and width != counted[0]:
        # the targets passed the head and the dataset declares another class count: the head is the
        # wrong size (a class list that is not the dataset's), not the labels
        notes.append(f"the loss input has {width} classes and the dataset {counted[0]}: the head does not fit the data")
        checks.append("head-size")
    watch.session.audit(
        stage,
        {"model": model, "sample": sample, "targets": targets, "num_classes": num_classes},
        observed,
        notes,
        only=checks,
        stop=stop,
    )


def diagnose_crash(watch: Watch, error: BaseException) -> None:
    """Audit the targets the run was computing a loss with when it raised; never hides the exception."""
    observer = watch._observer
    if observer is not None:
        observer.paused = True
    try:
        with one_pass():
            _label_audit(watch, "crash", f"the run raised {type(error).__name__}: {str(error)[:200]}", stop=False)
    except Exception:  # the diagnosis is a courtesy: the program's own exception is what counts
        pass


def report_labels(watch: Watch, *, stop: bool) -> None:
    """Targets past the head that did not raise (a GPU reports them later, asynchronously): audit them now."""
    observer = watch._observer
    assert observer is not None
    observer.paused = True
    try:
        _label_audit(watch, f"labels (step {watch.steps})", "a loss call was given targets outside the head", stop=stop)
    except BaseException:
        watch._close()
        raise
    finally:
        observer.paused = False
