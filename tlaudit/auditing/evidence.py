"""What the checks read: the contract between the engine, which gathers evidence, and the checks.

The engine (:mod:`tlaudit.auditing.engine`) resolves the setup and traces one train step and two ``predict``
calls; it hands the checks an object satisfying :class:`Evidence`. Checks depend on this module,
never on the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tlaudit.auditing.rules.inputs import Sample
    from tlaudit.auditing.rules.schedule import SchedulePeaks
    from tlaudit.auditing.setup import TransferSetup
    from tlaudit.normalization import Normalization

__all__ = ["BatchNormCall", "Evidence", "PredictTrace", "Skip", "TrainTrace"]


class Skip(Exception):
    """Raised by a check that cannot run on this setup; the message is the reason."""


@dataclass(frozen=True)
class BatchNormCall:
    """One call of a BatchNorm layer in the train step: its mode, and whether it keeps running statistics."""

    training: bool
    no_running_stats: bool


@dataclass
class TrainTrace:
    """What one train step did: parameters that got a gradient or changed (by ``id``), BatchNorm calls, the output.

    ``error`` is ``"<type>: <message>"`` when the user's ``train_step`` raised; what was observed
    before it raised is kept. ``outputs`` is the model's output, or a dict of the head modules'
    outputs where the step called ``model.forward(x)`` (which runs no hooks of the model itself).
    """

    grad_received: set[int] = field(default_factory=set)
    bn_calls: dict[str, list[BatchNormCall]] = field(default_factory=dict)
    outputs: Any = None
    changed: set[int] = field(default_factory=set)
    error: str | None = None
    reported_by: str = ""
    """The check whose finding reports ``error`` (set by the engine with the error)."""
    skip_reason: str | None = None
    """Why the step could not be observed whole although the user's code did nothing wrong: the
    audit's own default step, or its synthesized sample or targets, did not fit the model."""
    outputs_from_heads: bool = False
    head_outputs: dict[str, Any] = field(default_factory=dict)
    """Each head module's output in the step (main and auxiliary): the logits."""

    def require_complete(self) -> TrainTrace:
        """This trace, or :class:`Skip` when the step raised before it could be observed whole."""
        if self.error is not None:
            raise Skip(f"the train step raised ({self.error}); see `{self.reported_by}`")
        if self.skip_reason is not None:
            raise Skip(self.skip_reason)
        return self


@dataclass
class PredictTrace:
    """What two ``predict`` calls did: modules called in training mode, grad mode, both outputs."""

    training_modules: list[str] = field(default_factory=list)
    grad_enabled: bool = False
    grad_modules: list[str] = field(default_factory=list)
    """The outermost modules that ran with autograd on (``""``: the model itself)."""
    outputs: tuple[Any, Any] = (None, None)
    reported_by: str = ""
    """The check whose finding reports ``error``."""
    error: str | None = None

    def require_complete(self) -> PredictTrace:
        """This trace, or :class:`Skip` when ``predict`` raised."""
        if self.error is not None:
            raise Skip(f"predict raised ({self.error}); see `{self.reported_by}`")
        return self


class Evidence(Protocol):
    """The resolved setup and its traces, as every check reads them.

    Parameters are keyed by ``id()``; names are those of the unwrapped model. Properties that cannot
    be resolved for this setup raise :class:`Skip` with the reason.
    """

    setup: TransferSetup
    inner: nn.Module
    """The user's module inside DataParallel/DDP/``torch.compile`` wrappers."""
    params: list[tuple[str, nn.Parameter]]
    requires_grad: dict[int, bool]
    """Each parameter's ``requires_grad`` before the audit touched anything."""

    @property
    def heads(self) -> list[str]: ...
    def is_head(self, name: str) -> bool: ...
    def is_new(self, name: str) -> bool:
        """A head, or a module the weights' architecture lacks (not pretrained)."""

    @property
    def head_ids(self) -> set[int]:
        """Parameters that are not pretrained: of the head(s) and the other new modules."""

    @property
    def weights_cover_part(self) -> bool:
        """The weights describe only a part of the model (a backbone's, as ``weights_backbone=``
        builds it): the rest is new, and the model is trained as a whole."""

    @property
    def frozen_patterns(self) -> tuple[str, ...]: ...
    @property
    def meant_frozen(self) -> dict[int, str]:
        """``id(param) -> name`` of every parameter meant to be frozen."""

    @property
    def meant_frozen_source(self) -> str:
        """Where the intent comes from, for messages: ``strategy='feature_extraction'``, ..."""

    def module_meant_frozen(self, name: str) -> bool | None:
        """Whether the module is in the part meant frozen; None where only the flags say so."""

    @property
    def optimizer_ids(self) -> dict[int, int]:
        """``id(param) -> group index`` for every parameter the optimizer holds."""

    @property
    def lr_max(self) -> float: ...
    @property
    def schedule_peaks(self) -> SchedulePeaks:
        """Each optimizer group's peak LR over the scheduler's whole run (needs an optimizer)."""

    @property
    def lr_caution(self) -> float:
        """Pretrained groups above it get a warning; above ``lr_max``, an error."""

    @property
    def expected(self) -> Normalization | None: ...
    @property
    def found_normalizations(self) -> list[Normalization]:
        """Read from the transform's steps, or measured where a step is opaque; Skip where neither can tell."""

    @property
    def weights_classes(self) -> int | None:
        """How many classes the declared weights were trained on, where that can be told."""

    @property
    def sample(self) -> Sample: ...
    @property
    def targets(self) -> torch.Tensor: ...
    def train_trace(self) -> TrainTrace: ...
    def observed_gradients(self) -> set[int] | None:
        """Parameters (by ``id``) that received a gradient in a complete traced train step; None
        where no such step was observed (a static-only audit, a step that raised or could not run)."""

    def predict_trace(self) -> PredictTrace: ...
