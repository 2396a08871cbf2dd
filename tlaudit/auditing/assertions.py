"""Assertions about a transfer setup, behind the pytest plugin's ``tlaudit`` fixture.

The plugin (``pytest_tlaudit``) imports this module lazily, the first time a test uses one of its
fixture methods, so a suite that never asks for an audit never imports torch. Each assertion applies
the same rule as its check (``tlaudit.auditing.rules.outputs.wrong_width`` for ``head-size``,
``tlaudit.normalization.compare_normalization`` for ``normalization``,
``tlaudit.auditing.rules.schedule.groups_above`` for ``lr-threshold``); only the wording differs. The functions here do
not depend on pytest: each ``assert_*`` raises ``AssertionError`` with a message naming the offending
module, parameter, optimizer group or value, and returns None when the assertion holds; unittest
users can call them directly.

Argument mistakes (a pattern that names no module, a model that is not an ``nn.Module``) raise the
library's usual errors (:class:`~tlaudit.PatternError`, ``TypeError``, ``ValueError``), not
``AssertionError``: they are bugs in the test, not findings about the setup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from tlaudit._names import PatternError, unwrap
from tlaudit._text import count as _count
from tlaudit._text import examples as _examples
from tlaudit._text import fmt as _fmt
from tlaudit.auditing.checks import Phase, checks_of
from tlaudit.auditing.engine import audit
from tlaudit.auditing.report import AuditFailed, Report
from tlaudit.auditing.rules.normalization import compare_normalization
from tlaudit.auditing.rules.outputs import named_outputs, wrong_width
from tlaudit.auditing.rules.probing import UnreadableNormalization, read_normalizations
from tlaudit.auditing.rules.schedule import groups_above
from tlaudit.auditing.setup import TransferSetup
from tlaudit.evaluation import inference
from tlaudit.freezing import select_params
from tlaudit.normalization import expected_normalization
from tlaudit.options import is_positive_number
from tlaudit.surgery import resolve_heads

__all__ = [
    "assert_eval_inference",
    "assert_frozen",
    "assert_head",
    "assert_lr_below",
    "assert_normalization",
    "assert_trainable",
    "eval_inference_report",
]


# -- helpers -------------------------------------------------------------------------------------


def _check_model(model: object, where: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__} (model)")
    return unwrap(model)


def _by_top_module(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split(".")[0], []).append(name)
    return list(groups.items())


def _select_params(inner: nn.Module, patterns: Sequence[str], field: str) -> list[tuple[str, nn.Parameter]]:
    """The parameters under the patterns (all with none); a pattern naming nothing raises PatternError."""
    __tracebackhide__ = True
    try:
        return select_params(inner, patterns, field=field)
    except PatternError as err:  # raised from here, so the test's traceback ends at the test's own line
        raise PatternError(str(err)) from None


def _flag_message(where: str, offenders: list[str], problem: str, fix: str) -> str:
    verb = "is" if len(offenders) == 1 else "are"
    lines = [f"{where}: {_count(len(offenders), 'parameter')} {verb} {problem}:"]
    for module, members in _by_top_module(offenders):
        lines.append(f"  `{module}`: {_count(len(members), 'parameter')} ({_examples(members)})")
    modules = ", ".join(repr(m) for m, _ in _by_top_module(offenders))
    lines.append(f"hint: {fix.format(modules=modules)}")
    return "\n".join(lines)


# -- freezing ------------------------------------------------------------------------------------


def assert_frozen(model: nn.Module, *patterns: str) -> None:
    """Every parameter under ``patterns`` (the whole model with none) has ``requires_grad=False``.

    Patterns follow the library's rules (dot boundary, globs, wrapper prefixes ignored). A module
    with no parameters (a :class:`~tlaudit.FrozenBatchNorm`, a pooling layer) is frozen.

    Raises:
        AssertionError: naming each trainable parameter, grouped by top-level module.
        PatternError: a pattern names no module or parameter; the message lists the closest names.
    """
    __tracebackhide__ = True
    inner = _check_model(model, "assert_frozen")
    selected = _select_params(inner, patterns, "assert_frozen patterns")
    trainable = [name for name, p in selected if p.requires_grad]
    if trainable:
        raise AssertionError(
            _flag_message(
                "tlaudit.assert_frozen",
                trainable,
                "trainable (requires_grad=True), expected frozen",
                "tlaudit.freeze(model, {modules})",
            )
        )


def assert_trainable(model: nn.Module, *patterns: str) -> None:
    """Every parameter under ``patterns`` (the whole model with none) has ``requires_grad=True``.

    Raises:
        AssertionError: naming each frozen parameter, grouped by top-level module; also when the
            patterns select no parameter at all (nothing there can train).
        PatternError: a pattern names no module or parameter; the message lists the closest names.
    """
    __tracebackhide__ = True
    inner = _check_model(model, "assert_trainable")
    selected = _select_params(inner, patterns, "assert_trainable patterns")
    if not selected:
        what = ", ".join(f"`{p}`" for p in patterns) if patterns else f"`{type(inner).__name__}`"
        raise AssertionError(f"tlaudit.assert_trainable: {what} has no parameters, so nothing there can train")
    frozen = [name for name, p in selected if not p.requires_grad]
    if frozen:
        raise AssertionError(
            _flag_message(
                "tlaudit.assert_trainable",
                frozen,
                "frozen (requires_grad=False), expected trainable",
                "tlaudit.unfreeze(model, {modules})",
            )
        )


# -- the head ------------------------------------------------------------------------------------


def _out_size(module: nn.Module) -> int | None:
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    value = getattr(module, "out_features", None)
    return value if isinstance(value, int) else None


def assert_head(
    model: nn.Module,
    num_classes: int,
    sample: torch.Tensor | None = None,
    *,
    head: str | Sequence[str] | None = None,
) -> None:
    """The head(s) have ``num_classes`` outputs; with a ``sample``, so does every output of a forward pass.

    The heads come from :func:`~tlaudit.find_heads` (auxiliary heads included) unless ``head`` names
    them. The forward pass runs in eval mode under ``torch.no_grad()``; every module's training flag
    is restored afterwards.

    Raises:
        AssertionError: naming each head layer or output with the wrong size, or when the forward
            pass on the sample raises.
        HeadNotFoundError: no head found (or ``head`` names no module).
    """
    __tracebackhide__ = True
    inner = _check_model(model, "assert_head")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"assert_head: num_classes must be a positive int: {num_classes!r} (num_classes)")
    if sample is not None and not isinstance(sample, torch.Tensor):
        raise TypeError(f"assert_head: sample must be a torch.Tensor, got {type(sample).__name__} (sample)")
    problems = []
    for name in resolve_heads(model, head):
        layer = inner.get_submodule(name)
        size = _out_size(layer)
        if size is None:
            problems.append(f"head `{name}` is {type(layer).__name__}, which has no out_features to check")
        elif size != num_classes:
            problems.append(f"head `{name}` has {size} outputs, expected {num_classes} (num_classes)")
    if sample is not None:
        with inference(model, inference_mode=False):
            try:
                output = model(sample)
            except Exception as err:
                raise AssertionError(
                    f"tlaudit.assert_head: the forward pass on a sample of shape {tuple(sample.shape)} raised {type(err).__name__}: {err}"
                ) from err
        outputs = named_outputs(output)
        if not outputs:
            problems.append(f"the model's output holds no tensor ({type(output).__name__})")
        for out_name, shape in wrong_width(outputs, num_classes):
            problems.append(f"output `{out_name}` has shape {shape}, expected {num_classes} columns (num_classes)")
    if problems:
        lines = "\n  ".join(problems)
        raise AssertionError(
            f"tlaudit.assert_head:\n  {lines}\nhint: tlaudit.replace_head(model, {num_classes}) (auxiliary heads included)"
        )


# -- inference -----------------------------------------------------------------------------------


def eval_inference_report(predict: Callable[..., Any], model: nn.Module, sample: torch.Tensor) -> Report:
    """The audit behind :func:`assert_eval_inference`: the inference checks only (``Phase.INFERENCE``)."""
    if not callable(predict):
        raise TypeError(f"assert_eval_inference: predict must be callable, got {type(predict).__name__} (predict)")
    return audit(TransferSetup(model=model, sample=sample, predict=predict), select=[c.id for c in checks_of(Phase.INFERENCE)])


def raise_for_eval_inference(report: Report) -> None:
    """Raise :class:`~tlaudit.AuditFailed` when ``report`` has a warning or an error."""
    __tracebackhide__ = True
    if report.at_or_above("warning"):
        raise AuditFailed(
            report, "tlaudit.assert_eval_inference: predict is not eval-mode, gradient-free, deterministic inference\n\n" + report.to_text()
        )


def assert_eval_inference(predict: Callable[..., Any], model: nn.Module, sample: torch.Tensor) -> None:
    """``predict(model, sample)`` runs the model in eval mode, without gradients, and deterministically.

    Runs the inference checks (``eval-mode``, ``eval-nondeterministic``, ``grad-inference``) and fails on
    warnings too (``grad-inference`` is a warning).

    Raises:
        AuditFailed: an ``AssertionError`` whose text is the readable report.
        SetupError: ``predict`` raised, or the model cannot take the sample.
    """
    __tracebackhide__ = True
    raise_for_eval_inference(eval_inference_report(predict, model, sample))


# -- normalization -------------------------------------------------------------------------------


def assert_normalization(transform: Any, weights: Any) -> None:
    """The ``transform`` normalizes once, with the mean/std that ``weights`` were trained with.

    ``weights``: a torchvision weights enum member or name, a timm model or pretrained config, or
    ``{"mean": ..., "std": ...}`` (see :func:`~tlaudit.expected_normalization`).

    A pipeline with a step that cannot be read (a ``Lambda``, a function, a custom class) is measured
    on constant images, as the ``normalization`` check does (:func:`~tlaudit.auditing.rules.probing.read_normalizations`).

    Raises:
        AssertionError: no normalization, two of them, or a different mean/std (all values named),
            or a pipeline that can be neither read nor measured (with the reason).
        ValueError, TypeError: ``weights`` cannot be read.
    """
    __tracebackhide__ = True
    expected = expected_normalization(weights)
    size = max(256, expected.resize_size or 0, expected.crop_size or 0)
    try:
        found = read_normalizations(transform, size=size)
    except UnreadableNormalization as err:
        raise AssertionError(
            f"tlaudit.assert_normalization: cannot verify the normalization: {err}\n"
            "hint: normalize with torchvision's Normalize, which is read step by step"
        ) from err
    mismatch = compare_normalization(found, expected)
    if mismatch is None:
        return
    measured = [n for n in mismatch.found if n.measured]
    how = f" ({measured[0].source})" if measured else ""
    want = f"the weights ({expected.source}) expect mean {_fmt(expected.mean)}, std {_fmt(expected.std)}"
    fix = f"hint: Normalize(mean={_fmt(expected.mean)}, std={_fmt(expected.std)}), or use weights.transforms()"
    if mismatch.kind == "missing":
        raise AssertionError(f"tlaudit.assert_normalization: the transform applies no normalization{how}; {want}\n{fix}")
    if mismatch.kind == "double":
        steps = "; ".join(f"mean {_fmt(n.mean)}, std {_fmt(n.std)}" for n in mismatch.found)
        raise AssertionError(
            f"tlaudit.assert_normalization: the transform normalizes {len(mismatch.found)} times (double normalization): "
            f"{steps}\nhint: keep a single Normalize step"
        )
    actual = mismatch.found[0]
    raise AssertionError(
        f"tlaudit.assert_normalization: the transform normalizes with mean {_fmt(actual.mean)}, std {_fmt(actual.std)}{how}; {want}\n{fix}"
    )


# -- learning rates ------------------------------------------------------------------------------


def _excluded_ids(exclude: Any, model: nn.Module | None) -> set[int]:
    if exclude is None:
        return set()
    items = [exclude] if isinstance(exclude, (str, nn.Module, torch.Tensor)) else list(exclude)
    ids: set[int] = set()
    patterns = []
    for item in items:
        if isinstance(item, str):
            patterns.append(item)
        elif isinstance(item, nn.Module):
            ids.update(id(p) for p in item.parameters())
        elif isinstance(item, torch.Tensor):
            ids.add(id(item))
        else:
            raise TypeError(
                f"assert_lr_below: exclude takes module-name patterns, modules or parameters, got {type(item).__name__}: {item!r} (exclude)"
            )
    if patterns:
        if model is None:
            raise TypeError(
                f"assert_lr_below: module-name patterns need model= to resolve them: {patterns!r} (exclude); "
                "pass model=, or pass the modules or parameters themselves"
            )
        ids.update(id(p) for _, p in _select_params(unwrap(model), patterns, "assert_lr_below exclude"))
    return ids


def assert_lr_below(
    optimizer: torch.optim.Optimizer,
    lr_max: float,
    *,
    exclude: str | nn.Module | torch.Tensor | Iterable[str | nn.Module | torch.Tensor] | None = None,
    model: nn.Module | None = None,
    scheduler: Any = None,
) -> None:
    """Every optimizer group's LR is at most ``lr_max``, except groups holding only excluded parameters.

    ``exclude`` names what may train faster (typically the new head): module-name patterns (which
    need ``model=`` to resolve), modules, or parameters, alone or in a list. With ``scheduler``, the
    peak LR the schedule reaches (warm-up, one-cycle) is checked too, simulated on copies: neither
    the optimizer nor the scheduler is stepped. With ``model``, messages name the parameters.

    Raises:
        AssertionError: naming each offending group (index and ``name``), its LR and parameters.
        PatternError: an ``exclude`` pattern names nothing in ``model``.
    """
    __tracebackhide__ = True
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"assert_lr_below: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__} (optimizer)")
    if not is_positive_number(lr_max):
        raise ValueError(f"assert_lr_below: lr_max must be a positive number: {lr_max!r} (lr_max)")
    if model is not None:
        _check_model(model, "assert_lr_below")
    excluded = _excluded_ids(exclude, model)
    names = {id(p): n for n, p in unwrap(model).named_parameters()} if model is not None else {}
    problems = []
    for excess in groups_above(optimizer, lr_max, scheduler=scheduler, counted=lambda p: id(p) not in excluded):
        label = f"group {excess.index}" + (f" (`{excess.name}`)" if excess.name else "")
        known = [names[id(p)] for p in excess.params if id(p) in names]
        held = f"{_count(len(excess.params), 'parameter')}" + (f": {_examples(known)}" if known else "")
        if excess.now:
            problems.append(f"{label} has lr {excess.lr:g} > lr_max {lr_max:g} ({held})")
        else:
            problems.append(f"{label} reaches lr {excess.peak:g} > lr_max {lr_max:g} at scheduler step {excess.peak_step} ({held})")
    if problems:
        lines = "\n  ".join(problems)
        raise AssertionError(
            f"tlaudit.assert_lr_below:\n  {lines}\nhint: a lower LR for pretrained layers than for the head: "
            "tlaudit.param_groups(model, lr, head_lr=...), and exclude= the head"
        )
