"""The setup resolved as the checks read it (:class:`~tlaudit.auditing.evidence.Evidence`): heads, intent, optimizer
membership, normalization, inputs, and the traces, each computed once and only when a check asks."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import nn

from tlaudit._names import pattern_matches, strip_wrapper_prefix, traced_module, unwrap
from tlaudit.auditing.engine.defaults import synthetic_sample, synthetic_targets
from tlaudit.auditing.engine.snapshot import Snapshot
from tlaudit.auditing.engine.tracing import trace_predict, trace_train_step
from tlaudit.auditing.evidence import PredictTrace, Skip, TrainTrace
from tlaudit.auditing.rules.inputs import Sample
from tlaudit.auditing.rules.new_layers import new_modules_and_scope
from tlaudit.auditing.rules.outputs import class_score_layers, is_box_regression
from tlaudit.auditing.rules.probing import UnreadableNormalization, read_normalizations
from tlaudit.auditing.rules.schedule import ADAPTIVE_LR_MAX, SGD_LR_CAUTION, SGD_LR_MAX, SchedulePeaks, peak_lrs
from tlaudit.auditing.rules.wrappers import raw_optimizer, rebound
from tlaudit.auditing.setup import Strategy, TransferSetup
from tlaudit.normalization import (
    Normalization,
    deferred_normalization,
    expected_normalization,
    torchvision_weights,
)
from tlaudit.surgery import HeadNotFoundError, resolve_heads

__all__ = ["AuditContext"]


class AuditContext:
    """The setup as the checks see it. Properties are computed once; traces run on first use."""

    def __init__(self, setup: TransferSetup, snapshot: Snapshot) -> None:
        self.setup = setup
        self.snapshot = snapshot
        self.inner = unwrap(setup.model)
        self.notes: list[str] = []
        self.params: list[tuple[str, nn.Parameter]] = list(self.inner.named_parameters())
        self.requires_grad: dict[int, bool] = {id(p): p.requires_grad for _, p in self.params}
        self._train_trace: TrainTrace | None = None
        self._predict_trace: PredictTrace | None = None
        self.static_only = False
        """Set by the engine when every selected check reads the setup without a step (a watched
        run's static audit): then no check may run a train step to look for gradients."""

    # -- what the setup says -------------------------------------------------------------------

    @cached_property
    def heads(self) -> list[str]:
        """The head module names: ``TransferSetup.head`` (resolved when the setup was built), else found."""
        try:
            heads = resolve_heads(self.setup.model, self.setup.head, field_name="TransferSetup.head")
        except HeadNotFoundError as err:
            if self.setup.head is not None or not class_score_layers(self.inner):
                raise Skip("no classification head found; pass TransferSetup(head='<module name>')") from err
            heads = []
        if self.setup.head is None:  # a detection model: its class scores, never its box regression
            scores = [name for name, _ in class_score_layers(self.inner)]
            if scores:
                heads = list(dict.fromkeys([*scores, *(h for h in heads if not is_box_regression(h))]))
        return heads

    def is_head(self, name: str) -> bool:
        return any(pattern_matches(h, name) for h in self.heads)

    @cached_property
    def new_modules(self) -> list[str]:
        """Modules that are not pretrained: the head(s), and what the weights' architecture lacks
        (a multi-layer head, a bottleneck, adapters such as LoRA)."""
        try:
            heads = list(self.heads)
        except Skip:
            heads = []
        found = self._new_and_scope[0] or []
        return list(dict.fromkeys([*heads, *found]))

    @cached_property
    def _new_and_scope(self) -> tuple[list[str] | None, bool]:
        return new_modules_and_scope(self.setup.model, self.setup.weights)

    @property
    def weights_cover_part(self) -> bool:
        """The weights describe only a part of the model (a backbone's): the rest is new."""
        return self._new_and_scope[1]

    def is_new(self, name: str) -> bool:
        return any(pattern_matches(m, name) for m in self.new_modules)

    @cached_property
    def head_ids(self) -> set[int]:
        """Parameters that are not pretrained: of the head(s) and of the other new modules."""
        return {id(p) for name, p in self.params if self.is_new(name)}

    @cached_property
    def frozen_patterns(self) -> tuple[str, ...]:
        """``TransferSetup.frozen`` without wrapper prefixes: ``module.layer1`` on a DDP model means ``layer1``
        (the patterns were matched against the model when the setup was built)."""
        return tuple(strip_wrapper_prefix(p) for p in self.setup.frozen or ())

    @property
    def meant_frozen_source(self) -> str:
        if self.setup.strategy is Strategy.FEATURE_EXTRACTION:
            return "strategy='feature_extraction'"
        if self.frozen_patterns:
            return "TransferSetup.frozen"
        return "requires_grad=False"

    def module_meant_frozen(self, name: str) -> bool | None:
        """Whether the module is in the part meant frozen; None where only flags say so."""
        if self.setup.strategy is Strategy.FEATURE_EXTRACTION and not self.is_head(name) and not self.is_new(name):
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
        if fe:
            _ = self.heads  # feature extraction freezes all but the head: without one, Skip says so
        for name, p in self.params:
            if (
                fe
                and not self.is_new(name)
                or self.frozen_patterns
                and any(pattern_matches(pat, name) for pat in self.frozen_patterns)
                or not fe
                and not self.frozen_patterns
                and not self.requires_grad[id(p)]
            ):
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
        """What ``TransferSetup.weights`` expect (readable: the setup checked it when it was built)."""
        return expected_normalization(self.setup.weights) if self.setup.weights is not None else None

    @cached_property
    def weights_classes(self) -> int | None:
        """How many classes the declared weights were trained on (torchvision ``meta["categories"]``,
        timm ``num_classes``), or None where that cannot be told."""
        weights = self.setup.weights
        if isinstance(weights, str):
            weights = torchvision_weights(weights)
        meta = getattr(weights, "meta", None)
        categories = meta.get("categories") if isinstance(meta, dict) else None
        if isinstance(categories, (list, tuple)) and categories:
            return len(categories)
        classes = weights.get("num_classes") if isinstance(weights, dict) else getattr(weights, "num_classes", None)
        return classes if isinstance(classes, int) and not isinstance(classes, bool) and classes > 0 else None

    @cached_property
    def found_normalizations(self) -> list[Normalization]:
        """Read from the transform's steps, or measured on constant images as large as the weights'
        resize (at least 256 pixels) where a step is opaque; Skip where neither can tell."""
        expected = self.expected
        deferred = deferred_normalization(self.setup.transform)
        if deferred is not None:
            raise Skip(
                f"the transform leaves normalization to {deferred} on the device; pass that loader as transform= to compare its mean/std"
            )
        size = max(256, expected.resize_size or 0, expected.crop_size or 0) if expected is not None else 256
        try:
            return read_normalizations(self.setup.transform, size=size)
        except UnreadableNormalization as err:
            raise Skip(str(err)) from err

    @cached_property
    def lr_max(self) -> float:
        if self.setup.lr_max is not None:
            return float(self.setup.lr_max)
        return SGD_LR_MAX if isinstance(self.setup.optimizer, torch.optim.SGD) else ADAPTIVE_LR_MAX

    @cached_property
    def schedule_peaks(self) -> SchedulePeaks:
        """Each optimizer group's peak LR over the scheduler's run, read once for every check."""
        optimizer = self.setup.optimizer
        assert optimizer is not None  # read only by checks that have an optimizer
        raw = raw_optimizer(optimizer)  # a scheduler bound to a wrapper (accelerate, Lightning) is read on the real one
        scheduler = rebound(self.setup.scheduler, raw) if self.setup.scheduler is not None else None
        return peak_lrs(raw, scheduler)

    @cached_property
    def lr_caution(self) -> float:
        """The warning level below ``lr_max``: the setup's; else SGD's default with the default ceiling;
        else a third of the ceiling."""
        if self.setup.lr_caution is not None:
            caution = float(self.setup.lr_caution)
        elif self.setup.lr_max is None and isinstance(self.setup.optimizer, torch.optim.SGD):
            caution = SGD_LR_CAUTION
        else:
            caution = self.lr_max / 3
        return min(caution, self.lr_max)

    # -- inputs --------------------------------------------------------------------------------

    @cached_property
    def sample(self) -> Sample:
        if self.setup.sample is not None:
            return self.setup.sample
        crop = self.expected.crop_size if self.expected is not None else None
        sample, note = synthetic_sample(self.inner, crop)
        self.notes.append(note)
        return sample

    @cached_property
    def targets(self) -> torch.Tensor:
        if self.setup.targets is not None:
            return self.setup.targets
        targets, note = synthetic_targets(self.sample, self.setup.num_classes)
        self.notes.append(note)
        return targets

    # -- traces --------------------------------------------------------------------------------

    def train_trace(self) -> TrainTrace:
        if self._train_trace is None:
            try:
                heads = self.heads
            except Skip:
                heads = []
            self._train_trace = trace_train_step(
                self.setup,
                traced_module(self.setup.model),
                self.sample,
                self.targets,
                self.snapshot,
                self.requires_grad,
                heads,
            )
        return self._train_trace

    def observed_gradients(self) -> set[int] | None:
        """``id`` of every parameter that received a gradient in the traced train step, or None where
        no complete step was observed (a static-only audit, a step that raised or could not run)."""
        if self.static_only:
            return None
        try:
            trace = self.train_trace()
        except Skip:
            return None
        if trace.error is not None or trace.skip_reason is not None:
            return None
        return trace.grad_received

    def predict_trace(self) -> PredictTrace:
        if self._predict_trace is None:
            if self.setup.predict is None:
                raise Skip("no predict given")
            self._predict_trace = trace_predict(self.setup, traced_module(self.setup.model), self.sample, self.snapshot)
        return self._predict_trace
