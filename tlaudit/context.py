"""What checks read: the resolved setup, and the traces of one train step and two predict calls.

The traces run lazily, at most once per audit, and put the user's objects back afterwards.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlaudit._names import match_names, pattern_matches, unwrap
from tlaudit._state import Snapshot
from tlaudit.normalization import Normalization, expected_normalization, find_normalizations
from tlaudit.setup import SetupError, Strategy, TransferSetup
from tlaudit.surgery import HeadNotFoundError, resolve_heads

__all__ = ["AuditContext", "Skip", "TrainTrace", "PredictTrace", "BN_TYPES", "AUX_LOSS_WEIGHT", "default_train_step", "named_outputs"]

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)
AUX_LOSS_WEIGHT = 0.4
DEFAULT_CROP = 224


class Skip(Exception):
    """Raised by a check that cannot run on this setup; the message is the reason."""


@dataclass
class TrainTrace:
    """What one train step did."""

    grad_received: set[int] = field(default_factory=set)
    bn_calls: dict[str, list[tuple[bool, bool]]] = field(default_factory=dict)
    outputs: Any = None
    changed: set[int] = field(default_factory=set)


@dataclass
class PredictTrace:
    """What two ``predict`` calls did."""

    training_modules: list[str] = field(default_factory=list)
    grad_enabled: bool = False
    outputs: tuple[Any, Any] = (None, None)


def default_train_step(model: nn.Module, sample: torch.Tensor, targets: torch.Tensor, optimizer: Any) -> None:
    """``model.train()``, ``zero_grad``, cross-entropy over every output (aux weighted 0.4), backward, step.

    A loss that requires no gradient (everything frozen) ends the step after the forward pass.
    """
    model.train()
    if optimizer is not None:
        optimizer.zero_grad()
    outputs = model(sample)
    loss = _loss(outputs, targets)
    if not loss.requires_grad:  # nothing trainable: head-frozen / frozen-grad report why
        return
    loss.backward()
    if optimizer is not None:
        optimizer.step()


def _loss(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    tensors = [t for _, t in named_outputs(outputs)]
    if not tensors:
        raise TypeError(f"model returned no tensor: {type(outputs).__name__}")
    loss = F.cross_entropy(tensors[0], _fit(targets, tensors[0]))
    for aux in tensors[1:]:
        loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(aux, _fit(targets, aux))
    return loss


def _fit(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Labels the output cannot take are made to fit (``label-range`` and ``head-size`` report them).

    Integer labels out of range are wrapped into it; soft/one-hot targets of the wrong width become
    their argmax.
    """
    if logits.ndim < 2:
        return targets
    if targets.is_floating_point():
        if targets.shape == logits.shape:
            return targets
        targets = targets.argmax(dim=-1) if targets.ndim >= 2 else targets.long()
    columns = logits.shape[1]
    bad = (targets != -100) & ((targets < 0) | (targets >= columns))
    if bool(bad.any()):
        return torch.where(bad, targets.remainder(columns), targets)
    return targets


def named_outputs(outputs: Any, prefix: str = "output") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a model's output (tensor, tuple, namedtuple, dict, or an object with ``logits``)."""
    if isinstance(outputs, torch.Tensor):
        return [(prefix, outputs)]
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):
        found = []
        for name in outputs._fields:
            found.extend(named_outputs(getattr(outputs, name), name))
        return found
    if isinstance(outputs, (list, tuple)):
        found = []
        for i, value in enumerate(outputs):
            found.extend(named_outputs(value, f"{prefix}[{i}]"))
        return found
    if isinstance(outputs, dict):
        found = []
        for key, value in outputs.items():
            found.extend(named_outputs(value, str(key)))
        return found
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return [("logits", logits)]
    return []


def _detach(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.detach().clone()
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):
        return type(outputs)(*(_detach(v) for v in outputs))
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_detach(v) for v in outputs)
    if isinstance(outputs, dict):
        return {k: _detach(v) for k, v in outputs.items()}
    return outputs


@contextlib.contextmanager
def _hooks() -> Iterator[list[Any]]:
    handles: list[Any] = []
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


class AuditContext:
    """The setup as the checks see it. Properties are computed once; traces run on first use."""

    def __init__(self, setup: TransferSetup, snapshot: Snapshot) -> None:
        self.setup = setup
        self.snapshot = snapshot
        self.model = setup.model
        self.inner = unwrap(setup.model)
        self.notes: list[str] = []
        self.params: list[tuple[str, nn.Parameter]] = list(self.inner.named_parameters())
        self.requires_grad: dict[int, bool] = {id(p): p.requires_grad for _, p in self.params}
        self._train_trace: TrainTrace | None = None
        self._predict_trace: PredictTrace | None = None

    def validate(self) -> None:
        """Resolve the fields that can be wrong in ways only the model tells, raising SetupError early."""
        _ = self.expected, self.frozen_patterns
        if self.setup.head is not None:
            _ = self.heads

    # -- what the setup says -------------------------------------------------------------------

    @cached_property
    def heads(self) -> list[str]:
        try:
            return resolve_heads(self.model, self.setup.head, field_name="TransferSetup.head")
        except HeadNotFoundError as err:
            if self.setup.head is not None:
                raise SetupError(str(err), field="head") from err
            raise Skip("no classification head found; pass TransferSetup(head='<module name>')") from err

    def is_head(self, name: str) -> bool:
        return any(pattern_matches(h, name) for h in self.heads)

    @cached_property
    def head_ids(self) -> set[int]:
        return {id(p) for name, p in self.params if self.is_head(name)}

    @cached_property
    def frozen_patterns(self) -> tuple[str, ...]:
        patterns = tuple(self.setup.frozen or ())
        if patterns:
            names = [n for n, _ in self.inner.named_modules() if n] + [n for n, _ in self.params]
            try:
                match_names(names, patterns, field="TransferSetup.frozen")
            except ValueError as err:
                raise SetupError(str(err), field="frozen") from err
        return patterns

    @property
    def meant_frozen_source(self) -> str:
        if self.setup.strategy is Strategy.FEATURE_EXTRACTION:
            return "strategy='feature_extraction'"
        if self.frozen_patterns:
            return "TransferSetup.frozen"
        return "requires_grad=False"

    def module_meant_frozen(self, name: str) -> bool | None:
        """Whether the module is in the part meant frozen; None where only flags say so."""
        if self.setup.strategy is Strategy.FEATURE_EXTRACTION and not self.is_head(name):
            return True
        if self.frozen_patterns:
            return any(pattern_matches(p, name) for p in self.frozen_patterns)
        if self.setup.strategy is Strategy.FEATURE_EXTRACTION:
            return False
        return None

    @cached_property
    def meant_frozen(self) -> dict[int, str]:
        """``id(param) -> name`` of every parameter meant to be frozen."""
        out: dict[int, str] = {}
        fe = self.setup.strategy is Strategy.FEATURE_EXTRACTION
        for name, p in self.params:
            if fe and not self.is_head(name):
                out[id(p)] = name
            elif self.frozen_patterns and any(pattern_matches(pat, name) for pat in self.frozen_patterns):
                out[id(p)] = name
            elif not fe and not self.frozen_patterns and not self.requires_grad[id(p)]:
                out[id(p)] = name
        return out

    @cached_property
    def optimizer_ids(self) -> dict[int, int]:
        """``id(param) -> group index`` for every parameter the optimizer holds."""
        out: dict[int, int] = {}
        if self.setup.optimizer is not None:
            for index, group in enumerate(self.setup.optimizer.param_groups):
                for p in group["params"]:
                    out.setdefault(id(p), index)
        return out

    @cached_property
    def expected(self) -> Normalization | None:
        if self.setup.weights is None:
            return None
        try:
            return expected_normalization(self.setup.weights)
        except (TypeError, ValueError) as err:
            raise SetupError(f"TransferSetup.weights: {err}", field="weights") from err

    @cached_property
    def found_normalizations(self) -> list[Normalization]:
        return find_normalizations(self.setup.transform)

    # -- sample and targets --------------------------------------------------------------------

    @cached_property
    def sample(self) -> torch.Tensor:
        if self.setup.sample is not None:
            return self.setup.sample
        ref = next(iter(self.inner.parameters()), None)
        device = ref.device if ref is not None else torch.device("cpu")
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
        shape = self._synthetic_shape()
        gen = torch.Generator().manual_seed(0)
        self.notes.append(
            f"no sample given: synthesized a standard-normal batch of shape {tuple(shape)}; pass sample= for input checks"
        )
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)

    def _synthetic_shape(self) -> tuple[int, ...]:
        crop = DEFAULT_CROP
        if self.setup.weights is not None and self.expected is not None and self.expected.crop_size:
            crop = self.expected.crop_size
        for module in self.inner.modules():
            if isinstance(module, nn.Conv2d):
                return (2, module.in_channels, crop, crop)
            if isinstance(module, nn.Conv1d):
                return (2, module.in_channels, crop)
            if isinstance(module, nn.Conv3d):
                return (2, module.in_channels, 16, crop, crop)
            if isinstance(module, nn.Linear):
                return (2, module.in_features)
        return (2, 3, crop, crop)

    @property
    def sample_given(self) -> bool:
        return self.setup.sample is not None

    @cached_property
    def targets(self) -> torch.Tensor:
        if self.setup.targets is not None:
            return self.setup.targets
        n = self.sample.shape[0] if self.sample.ndim else 1
        gen = torch.Generator().manual_seed(0)
        classes = self.setup.num_classes or 1
        self.notes.append(f"no targets given: synthesized {n} labels in [0, {classes})")
        return torch.randint(classes, (n,), generator=gen).to(self.sample.device)

    @cached_property
    def lr_max(self) -> float:
        if self.setup.lr_max is not None:
            return float(self.setup.lr_max)
        return 1e-2 if isinstance(self.setup.optimizer, torch.optim.SGD) else 1e-3

    # -- traces --------------------------------------------------------------------------------

    def train_trace(self) -> TrainTrace:
        if self._train_trace is None:
            self._train_trace = self._run_train_step()
        return self._train_trace

    def predict_trace(self) -> PredictTrace:
        if self._predict_trace is None:
            self._predict_trace = self._run_predict()
        return self._predict_trace

    def _run_train_step(self) -> TrainTrace:
        trace = TrainTrace()
        sample, targets = self.sample.clone(), self.targets.clone()
        user_step = self.setup.train_step
        step = user_step or default_train_step
        with _hooks() as handles:
            for name, module in self.inner.named_modules():
                if isinstance(module, BN_TYPES):
                    calls = trace.bn_calls.setdefault(name, [])

                    def record(mod: nn.Module, args: Any, calls: list[tuple[bool, bool]] = calls) -> None:
                        calls.append((mod.training, mod.running_mean is None))

                    handles.append(module.register_forward_pre_hook(record))
            for _, p in self.params:
                if p.requires_grad:
                    handles.append(p.register_hook(lambda grad, pid=id(p): trace.grad_received.add(pid)))

            def keep_output(mod: nn.Module, args: Any, output: Any) -> None:
                if trace.outputs is None:
                    trace.outputs = _detach(output)

            handles.append(self.inner.register_forward_hook(keep_output))
            try:
                with torch.enable_grad():
                    step(self.model, sample, targets, self.setup.optimizer)
            except Exception as err:
                self.snapshot.restore()
                if user_step is not None:
                    raise SetupError(
                        f"TransferSetup.train_step raised {type(err).__name__}: {err}", field="train_step"
                    ) from err
                field_name = "sample" if trace.outputs is None else "targets"
                what = (
                    f"the model cannot take the sample of shape {tuple(sample.shape)}"
                    if field_name == "sample"
                    else f"cross-entropy on the model's output and targets of shape {tuple(targets.shape)} failed"
                )
                raise SetupError(f"TransferSetup.{field_name}: {what}: {type(err).__name__}: {err}", field=field_name) from err
        with torch.no_grad():
            for p, before, _, grad_before, grad_value in self.snapshot.params:
                if p.shape != before.shape or not torch.equal(p, before):
                    trace.changed.add(id(p))
                # a requires_grad=False leaf can only get a gradient if the step switched the flag on
                if not self.requires_grad.get(id(p), True) and p.requires_grad and p.grad is not None:
                    if grad_before is None or p.grad is not grad_before or not torch.equal(p.grad, grad_value):
                        trace.grad_received.add(id(p))
        self.snapshot.restore()
        return trace

    def _run_predict(self) -> PredictTrace:
        predict = self.setup.predict
        if predict is None:
            raise Skip("no predict given")
        trace = PredictTrace()
        training: dict[str, None] = {}
        grad_flags: list[bool] = []
        with _hooks() as handles:
            for name, module in self.inner.named_modules():

                def record(mod: nn.Module, args: Any, name: str = name) -> None:
                    if mod.training:
                        training.setdefault(name, None)

                handles.append(module.register_forward_pre_hook(record))

            def grad_mode(mod: nn.Module, args: Any) -> None:
                grad_flags.append(torch.is_grad_enabled() and not torch.is_inference_mode_enabled())

            handles.append(self.inner.register_forward_pre_hook(grad_mode))
            outputs = []
            try:
                for _ in range(2):
                    outputs.append(_detach(predict(self.model, self.sample.clone())))
            except Exception as err:
                self.snapshot.restore()
                raise SetupError(f"TransferSetup.predict raised {type(err).__name__}: {err}", field="predict") from err
        self.snapshot.restore()
        trace.training_modules = list(training)
        trace.grad_enabled = any(grad_flags)
        trace.outputs = (outputs[0], outputs[1])
        return trace
