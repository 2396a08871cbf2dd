"""Staged unfreezing: train the head first, then unfreeze deeper parts at given epochs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tlaudit._names import match_names, strip_wrapper_prefix, unwrap
from tlaudit.freezing import select_params, unfreeze

__all__ = ["Stage", "StagedUnfreezer"]


@dataclass(frozen=True)
class Stage:
    """One step of a :class:`StagedUnfreezer` schedule: at ``epoch``, unfreeze ``patterns`` with ``lr``."""

    epoch: int
    patterns: tuple[str, ...]
    lr: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.patterns, str):
            object.__setattr__(self, "patterns", (self.patterns,))
        else:
            object.__setattr__(self, "patterns", tuple(self.patterns))


def _stages(schedule: Mapping[int, Any] | Iterable[Stage]) -> list[Stage]:
    stages = []
    items: Iterable[Any] = schedule.items() if isinstance(schedule, Mapping) else schedule
    for item in items:
        if isinstance(item, Stage):
            stage = item
        elif isinstance(item, tuple) and len(item) == 2:
            epoch, patterns = item
            lr = None
            if isinstance(patterns, Mapping):
                lr = patterns.get("lr")
                patterns = patterns.get("patterns", ())
            stage = Stage(epoch, (patterns,) if isinstance(patterns, str) else tuple(patterns), lr)
        else:
            raise TypeError(f"schedule entry must be a Stage or epoch -> patterns: {item!r} (schedule)")
        if isinstance(stage.epoch, bool) or not isinstance(stage.epoch, int) or stage.epoch < 0:
            raise ValueError(f"stage epoch must be an int >= 0: {stage.epoch!r} (schedule)")
        if not stage.patterns:
            raise ValueError(f"stage at epoch {stage.epoch} names no module (schedule)")
        stages.append(stage)
    return sorted(stages, key=lambda s: s.epoch)


class StagedUnfreezer:
    """Unfreeze named parts of a model at given epochs and hand their parameters to the optimizer.

    ``schedule`` maps an epoch to module-name patterns (``{2: "layer4", 4: ["layer3"]}``), or
    to ``{"patterns": ..., "lr": ...}``, or is a list of :class:`Stage`. Call :meth:`step` at the start
    of every epoch. Newly trainable parameters that the optimizer does not hold yet are added as a new
    group named ``unfreeze:<patterns>`` with the stage's LR (default: ``lr``, else the lowest LR of
    the optimizer's groups). A parameter is never added twice.

    To resume: build the model, optimizer and unfreezer as at the start, call
    ``unfreezer.load_state_dict(...)`` (which re-applies the stages already done, so the optimizer
    has the same groups again), then ``optimizer.load_state_dict(...)``.

    Example:
        >>> import torch, torchvision
        >>> from tlaudit import freeze_backbone, param_groups
        >>> m = torchvision.models.resnet18()
        >>> _ = freeze_backbone(m)
        >>> opt = torch.optim.SGD(param_groups(m, 1e-3), lr=1e-3)
        >>> unfreezer = StagedUnfreezer(m, opt, {1: "layer4"}, lr=1e-4)
        >>> unfreezer.step(0), len(opt.param_groups)
        ([], 2)
        >>> len(unfreezer.step(1)), opt.param_groups[-1]["name"], opt.param_groups[-1]["lr"]
        (15, 'unfreeze:layer4', 0.0001)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Mapping[int, Any] | Iterable[Stage],
        *,
        lr: float | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer: {type(optimizer).__name__} (optimizer)")
        self.model = model
        self.optimizer = optimizer
        self.stages = _stages(schedule)
        self.lr = lr
        names = [n for n, _ in unwrap(model).named_modules() if n] + [n for n, _ in unwrap(model).named_parameters()]
        for stage in self.stages:
            match_names(names, stage.patterns, field=f"schedule[{stage.epoch}]")
        self.epoch = -1
        self.applied: list[int] = []

    def _apply(self, index: int) -> list[str]:
        stage = self.stages[index]
        changed = unfreeze(self.model, *stage.patterns)
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        new = [p for _, p in select_params(self.model, stage.patterns) if p.requires_grad and id(p) not in held]
        if new:
            lr = stage.lr if stage.lr is not None else self.lr
            if lr is None:
                lr = min(group["lr"] for group in self.optimizer.param_groups)
            names = ",".join(strip_wrapper_prefix(p) for p in stage.patterns)
            self.optimizer.add_param_group({"params": new, "lr": lr, "name": "unfreeze:" + names})
        self.applied.append(index)
        return changed

    def step(self, epoch: int | None = None) -> list[str]:
        """Advance to ``epoch`` (default: the next one) and apply every stage due; returns the names unfrozen."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        changed = []
        for index, stage in enumerate(self.stages):
            if stage.epoch <= self.epoch and index not in self.applied:
                changed.extend(self._apply(index))
        return changed

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "applied": list(self.applied)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the epoch and re-apply the stages already applied (flags and optimizer groups)."""
        try:
            epoch, applied = state["epoch"], list(state["applied"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a StagedUnfreezer state dict: {state!r} (state)") from err
        for index in applied:
            if not 0 <= index < len(self.stages):
                raise ValueError(f"stage index out of range: {index} (state['applied'])")
            if index not in self.applied:
                self._apply(index)
        self.epoch = epoch
