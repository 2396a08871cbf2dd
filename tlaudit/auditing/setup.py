"""``TransferSetup``: what a user tells the audit about their transfer-learning setup, and loading one."""

from __future__ import annotations

import enum
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlaudit.errors import SetupError
from tlaudit.options import declared_check_ids, is_positive_number, unknown_check_message

__all__ = ["Strategy", "TransferSetup", "SetupError", "load_setup", "load_object", "split_spec"]


class Strategy(str, enum.Enum):
    """``feature_extraction``: everything but the head is meant frozen. ``fine_tuning``: some or all layers train."""

    FEATURE_EXTRACTION = "feature_extraction"
    FINE_TUNING = "fine_tuning"

    @classmethod
    def parse(cls, value: object) -> Strategy:
        """The member ``value`` is or names; a :class:`SetupError` naming ``TransferSetup.strategy`` otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise SetupError(
                f"TransferSetup.strategy: expected 'feature_extraction', 'fine_tuning' or None, got {value!r}",
                field="strategy",
            ) from None


@dataclass
class TransferSetup:
    """A transfer-learning setup to audit. Only ``model`` is required.

    Args:
        model: the ``nn.Module`` (DataParallel / DDP / ``torch.compile`` wrappers are looked through).
        num_classes: classes of the new task.
        sample: an input batch as the model receives it: a tensor (``model(sample)``) or a dict of
            tensors such as a tokenizer's output (``model(**sample)``). Synthesized when missing (batch
            2): token ids below ``config.vocab_size`` (or the first ``nn.Embedding``'s size) with an
            attention mask for a model that takes ``input_ids``; else standard-normal values at a
            Hugging Face config's ``image_size``, the weights' crop size or 224. ``targets``: its labels.
        optimizer, scheduler: the user's own objects; never stepped by the audit.
        weights: a torchvision weights enum member or name, a timm pretrained_cfg, or ``{"mean", "std"}``.
        transform: the input pipeline, compared against ``weights``.
        strategy: ``"feature_extraction"``, ``"fine_tuning"`` or None.
        frozen: module-name patterns meant frozen. With neither ``strategy`` nor ``frozen``, the
            parameters with ``requires_grad=False`` now are the ones meant frozen.
        head: the head module name(s) when auto-detection should not guess.
        lr_caution: LR above which pretrained parameters get a warning (lr_max makes an error);
            default ``lr_max / 3`` (1e-2 for SGD with the default ``lr_max``).
        lr_max: LR ceiling for pretrained (non-head) parameters; default 1e-3 for adaptive optimizers
            (Adam family, RMSprop, Adagrad, ...) and 0.05 for SGD.
        train_step: ``train_step(model, sample, targets, optimizer)``; default: ``model.train()``,
            ``zero_grad``, cross-entropy over every output (auxiliary ones weighted 0.4), backward, ``step``.
        predict: ``predict(model, sample)``, the user's inference function.
        load_result: what ``load_state_dict(...)`` returned when the pretrained weights were loaded.
        ignore: checks whose findings are suppressed, each with the reason, e.g.
            ``{"frozen-bn-train": "AdaBN: BatchNorm statistics adapt to the target domain on purpose"}``.
            The checks still run; their findings are reported as suppressed with the reason and do
            not fail the audit. Aliases are stored under the check's ID.
    """

    model: nn.Module
    num_classes: int | None = None
    sample: torch.Tensor | Mapping[str, torch.Tensor] | None = None
    targets: torch.Tensor | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    weights: Any = None
    transform: Any = None
    strategy: Strategy | str | None = None
    frozen: Sequence[str] | str | None = None
    head: Sequence[str] | str | None = None
    lr_max: float | None = None
    lr_caution: float | None = None
    train_step: Callable[..., Any] | None = None
    predict: Callable[..., Any] | None = None
    load_result: Any = None
    ignore: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        def bad(field: str, problem: str) -> SetupError:
            return SetupError(f"TransferSetup.{field}: {problem}", field=field)

        if not isinstance(self.model, nn.Module):
            raise bad("model", f"expected a torch.nn.Module, got {type(self.model).__name__}")
        if next(iter(self.model.parameters()), None) is None:
            raise bad("model", f"has no parameters, so there is nothing to train or audit: {type(self.model).__name__}")
        if self.num_classes is not None and (
            isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1
        ):
            raise bad("num_classes", f"expected a positive int, got {self.num_classes!r}")
        if self.sample is not None and not isinstance(self.sample, torch.Tensor):
            self.sample = _named_tensors(self.sample, bad)
        if self.targets is not None and not isinstance(self.targets, torch.Tensor):
            raise bad("targets", f"expected a torch.Tensor, got {type(self.targets).__name__}")
        if self.targets is not None and self.sample is None:
            raise bad("targets", "given without a sample")
        if self.sample is not None:
            _check_sample(self.sample, bad)
        if self.targets is not None:
            _check_targets(self.targets, self.sample, bad)
        if self.optimizer is not None and not isinstance(self.optimizer, torch.optim.Optimizer):
            raise bad("optimizer", f"expected a torch.optim.Optimizer, got {type(self.optimizer).__name__}")
        if self.scheduler is not None:
            _check_scheduler(self.scheduler, bad)
            if self.optimizer is None:
                raise bad("scheduler", "given without an optimizer")
            if not _steps(self.scheduler, self.optimizer):
                raise bad("scheduler", "steps a different optimizer than TransferSetup.optimizer")
        if self.strategy is not None:
            self.strategy = Strategy.parse(self.strategy)
        for name in ("frozen", "head"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, (value,))
            elif value is not None:
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                    raise bad(name, f"expected a module name or a list of them, got {value!r}")
                setattr(self, name, tuple(value))
        if self.lr_max is not None and not is_positive_number(self.lr_max):
            raise bad("lr_max", f"expected a positive number, got {self.lr_max!r}")
        if self.lr_caution is not None and not is_positive_number(self.lr_caution):
            raise bad("lr_caution", f"expected a positive number, got {self.lr_caution!r}")
        if self.lr_caution is not None and self.lr_max is not None and self.lr_caution > self.lr_max:
            raise bad("lr_caution", f"above lr_max {self.lr_max:g}: {self.lr_caution:g}; the caution level warns before the ceiling")
        for name in ("train_step", "predict"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise bad(name, f"expected a callable, got {type(value).__name__}")
        if self.weights is not None:
            from tlaudit.normalization import expected_normalization

            try:
                expected_normalization(self.weights)
            except (TypeError, ValueError) as err:
                raise bad("weights", str(err)) from err
        if self.transform is not None and not _is_pipeline(self.transform):
            raise bad("transform", f"expected a callable input pipeline (or a list of transforms), got {type(self.transform).__name__}")
        if self.ignore is not None:
            if not isinstance(self.ignore, Mapping):
                raise bad("ignore", f"expected a dict of check ID to reason, got {type(self.ignore).__name__}")
            known = declared_check_ids()
            ignore: dict[str, str] = {}
            for check_id, reason in self.ignore.items():
                if not isinstance(check_id, str) or check_id not in known:
                    raise bad("ignore", unknown_check_message(str(check_id), known, "ignore"))
                if not isinstance(reason, str) or not reason.strip():
                    raise bad(
                        "ignore",
                        f"a suppression needs a reason: {check_id!r}: {reason!r} (ignore); "
                        f'write {{"{check_id}": "why this finding is expected"}}',
                    )
                ignore[known[check_id]] = reason.strip()
            self.ignore = ignore
        self._resolve_names()

    def _resolve_names(self) -> None:
        """``head`` and ``frozen`` must name modules of the model; the message lists the closest names."""
        from tlaudit._names import match_names, unwrap
        from tlaudit.surgery import HeadNotFoundError, resolve_heads

        if self.head is not None:
            try:
                resolve_heads(self.model, self.head, field_name="TransferSetup.head")
            except (HeadNotFoundError, TypeError) as err:
                raise SetupError(str(err), field="head") from err
        if self.frozen:
            inner = unwrap(self.model)
            names = [n for n, _ in inner.named_modules() if n] + [n for n, _ in inner.named_parameters()]
            try:
                match_names(names, self.frozen, field="TransferSetup.frozen")
            except (ValueError, TypeError) as err:
                raise SetupError(str(err), field="frozen") from err

    def replace(self, **changes: Any) -> TransferSetup:
        """A copy with some fields changed (the model and other objects are shared, not copied)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return TransferSetup(**values)

    def with_overrides(self, **overrides: Any) -> TransferSetup:
        """A copy with what a caller overrides: the one rule for the CLI's options, the pytest plugin's
        options and markers, and the intent given to :func:`tlaudit.watch` and the callbacks.

        A value of None overrides nothing. Any field can be overridden; two have a rule of their own:

        * ``lr_max`` below the setup's own ``lr_caution`` lowers the caution level to it (unless
          ``lr_caution`` is overridden too), since the warning level cannot be above the ceiling;
        * ``ignore`` is merged with the setup's own suppressions; the override's reason wins.

        Raises:
            SetupError: an override is not a valid value of its field (the message names the field).

        Example:
            >>> import torch
            >>> setup = TransferSetup(model=torch.nn.Linear(2, 2), lr_max=1e-2, lr_caution=5e-3)
            >>> s = setup.with_overrides(lr_max=1e-3, strategy=None)
            >>> s.lr_max, s.lr_caution
            (0.001, 0.001)
        """
        changes = {name: value for name, value in overrides.items() if value is not None}
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise SetupError(f"unknown TransferSetup field: {unknown[0]!r} (overrides)", field=unknown[0])
        if "lr_max" in changes and "lr_caution" not in changes and self.lr_caution is not None:
            changes["lr_caution"] = min(self.lr_caution, changes["lr_max"])
        if "ignore" in changes:
            changes["ignore"] = {**(self.ignore or {}), **changes["ignore"]}
        return self.replace(**changes) if changes else self


def _is_pipeline(transform: Any) -> bool:
    """Callable, a list of transforms, or a loader that normalizes on the device (timm's PrefetchLoader)."""
    if isinstance(transform, (list, tuple)):
        return all(_is_pipeline(t) for t in transform)
    if callable(transform):
        return True
    from tlaudit.normalization import find_normalizations

    return bool(find_normalizations(transform))


def _named_tensors(sample: Any, bad: Callable[[str, str], SetupError]) -> dict[str, torch.Tensor]:
    """A dict of tensors (a tokenizer's ``BatchEncoding`` included) of one batch size, as a plain dict."""
    if not isinstance(sample, Mapping):
        raise bad("sample", f"expected a torch.Tensor or a dict of them (e.g. a tokenizer's output), got {type(sample).__name__}")
    if not sample:
        raise bad("sample", "an empty dict: expected the model's inputs by name, e.g. {'input_ids': ..., 'attention_mask': ...}")
    named = dict(sample)
    for key, value in named.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise bad("sample", f"expected a dict of str to torch.Tensor, got {key!r}: {type(value).__name__}")
        if value.ndim == 0:
            raise bad("sample", f"{key!r} is a scalar: expected a batch with at least one item")
    sizes = {key: value.shape[0] for key, value in named.items()}
    if len(set(sizes.values())) > 1:
        raise bad("sample", f"the tensors hold batches of different sizes: {sizes}")
    return named


def _check_sample(sample: torch.Tensor | dict[str, torch.Tensor], bad: Callable[[str, str], SetupError]) -> None:
    for key, tensor in sample.items() if isinstance(sample, dict) else [("", sample)]:
        where = f"{key!r} " if key else ""
        if tensor.ndim == 0 or tensor.shape[0] == 0:
            raise bad("sample", f"expected a batch with at least one item, got {where}shape {tuple(tensor.shape)}")
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor.detach())
            if not bool(finite.any()):
                raise bad(
                    "sample",
                    f"every value {'of ' + where if where else ''}is NaN or infinite, so nothing can run: shape {tuple(tensor.shape)}",
                )


def _check_targets(targets: torch.Tensor, sample: Any, bad: Callable[[str, str], SetupError]) -> None:
    from tlaudit.auditing.rules.inputs import batch_size, describe_sample

    if targets.ndim == 0:
        raise bad("targets", f"expected one target per sample, got a scalar {targets.item()!r}")
    if sample is not None and targets.shape[0] != batch_size(sample):
        raise bad(
            "targets",
            f"{targets.shape[0]} targets (shape {tuple(targets.shape)}) for a sample batch of {batch_size(sample)} "
            f"({describe_sample(sample)})",
        )
    if targets.is_floating_point() and not bool(torch.isfinite(targets.detach()).all()):
        raise bad("targets", f"holds NaN or infinite values: shape {tuple(targets.shape)}")


def _steps(scheduler: Any, optimizer: torch.optim.Optimizer) -> bool:
    """The scheduler steps ``optimizer``: bound to it, or either side an optimizer wrapper (accelerate's
    ``AcceleratedOptimizer``, Lightning's ``LightningOptimizer``) of the same torch optimizer."""
    from tlaudit.auditing.rules.wrappers import bound_to, raw_optimizer

    if not hasattr(scheduler, "optimizer"):
        return True
    return (
        bound_to(scheduler, optimizer)
        or bound_to(scheduler, raw_optimizer(optimizer))
        or raw_optimizer(scheduler.optimizer) is raw_optimizer(optimizer)
    )


def _check_scheduler(scheduler: Any, bad: Callable[[str, str], SetupError]) -> None:
    """torch's schedulers, or any object shaped like one: ``step``, ``state_dict`` and an ``optimizer``."""
    lr_scheduler = torch.optim.lr_scheduler
    if isinstance(scheduler, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)):
        return
    if isinstance(scheduler, torch.optim.Optimizer):
        raise bad("scheduler", f"got an optimizer ({type(scheduler).__name__}); pass it as optimizer= and its scheduler here")
    shaped = all(callable(getattr(scheduler, a, None)) for a in ("step", "state_dict", "load_state_dict"))
    if not shaped or not isinstance(getattr(scheduler, "optimizer", None), torch.optim.Optimizer):
        raise bad(
            "scheduler",
            f"expected an LR scheduler (torch.optim.lr_scheduler, or one with step(), state_dict() and an "
            f".optimizer), got {type(scheduler).__name__}",
        )


def _load_module_from_file(path: Path) -> Any:
    name = f"_tlaudit_setup_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SetupError(f"cannot import setup file: {path} (setup)", field="setup")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise SetupError(f"importing {path} raised {type(err).__name__}: {err} (setup)", field="setup") from err
    return module


def split_spec(spec: str | Path, default: str = "setup") -> tuple[str, str]:
    """``file.py:function`` / ``module:function`` / ``file.py`` -> ``(target, function)``."""
    text = str(spec)
    if ":" in text and not Path(text).exists():
        target, func = text.rsplit(":", 1)
        return target, func or default
    return text, default


def load_object(spec: str | Path, *, default: str = "setup", field: str = "setup") -> tuple[Any, str]:
    """Call the function ``spec`` names and return ``(result, "where:function()")``.

    ``spec`` is ``path/to/file.py`` (its ``default`` function), ``file.py:function`` or
    ``module:function``. Problems raise :class:`SetupError` naming the file and function, with
    ``(field)`` at the end of the message.
    """
    target, func_name = split_spec(spec, default)
    if target.endswith(".py") or Path(target).exists():
        path = Path(target)
        if not path.is_file():
            raise SetupError(f"file not found: {path} ({field})", field="setup")
        module = _load_module_from_file(path)
        where = str(path)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as err:
            raise SetupError(f"cannot import module {target!r}: {type(err).__name__}: {err} ({field})", field="setup") from err
        where = target
    factory = getattr(module, func_name, None)
    if factory is None or not callable(factory):
        raise SetupError(
            f"no function {func_name}() in {where} ({field}); define `def {func_name}() -> TransferSetup`",
            field="setup",
        )
    try:
        return factory(), f"{where}:{func_name}()"
    except SetupError:
        raise
    except Exception as err:
        raise SetupError(f"{where}:{func_name}() raised {type(err).__name__}: {err} ({field})", field="setup") from err


def load_setup(spec: str | Path) -> TransferSetup:
    """Load a TransferSetup from ``path/to/file.py`` (its ``setup()``), ``file.py:function`` or ``module:function``.

    Raises:
        SetupError: the file or module is missing, has no such function, the function raised, or
            it returned something other than a TransferSetup. The message names the file and function.
    """
    result, where = load_object(spec)
    if not isinstance(result, TransferSetup):
        raise SetupError(f"{where} returned {type(result).__name__}, not a TransferSetup (setup)", field="setup")
    return result
