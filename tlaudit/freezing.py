"""Freezing and unfreezing by module name, frozen BatchNorm, optimizer parameter groups, staged unfreezing.

Every selector is a module-name pattern: it names a module and everything under it with a dot
boundary (``features.1`` does not match ``features.10``), globs are allowed (``layer*``), and wrapper
prefixes (``module.``, ``_orig_mod.``) are ignored. A pattern that matches nothing is an error.
"""
from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tabulate import tabulate
from torch import nn

from tlaudit._names import match_names, pattern_matches, strip_wrapper_prefix, unwrap
from tlaudit.surgery import _flag_summary, _mode, resolve_heads

__all__ = [
    "BatchNormMode",
    "FrozenBatchNorm",
    "freeze",
    "unfreeze",
    "freeze_backbone",
    "freeze_batchnorm",
    "eval_frozen_batchnorm",
    "param_groups",
    "Stage",
    "StagedUnfreezer",
    "inference",
    "trainable_report",
    "TrainableReport",
]

_BN_TYPES = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


class BatchNormMode(str, enum.Enum):
    """What :func:`freeze` does with BatchNorm layers under the frozen patterns.

    * ``"keep"``: only ``requires_grad`` changes; in ``model.train()`` the layers still normalize with
      batch statistics and update their running statistics (PyTorch's default behaviour).
    * ``"frozen"``: the layers are replaced by :class:`FrozenBatchNorm`, which always uses the
      pretrained running statistics, in training mode too.
    """

    KEEP = "keep"
    FROZEN = "frozen"


def _enum(cls: type[enum.Enum], value: object, field: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"invalid {field}: {value!r} ({field}); expected one of {valid}") from None


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics and affine terms, stored as buffers (for 1d, 2d and 3d inputs).

    Unlike ``BatchNorm*d.eval()`` it stays fixed after ``model.train()``. Its state dict has the
    BatchNorm keys (``weight``, ``bias``, ``running_mean``, ``running_var``), so checkpoints load either way.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> FrozenBatchNorm:
        """A frozen copy of ``bn``'s statistics and affine terms, on its device and dtype.

        Raises:
            ValueError: ``bn`` keeps no running statistics (``track_running_stats=False``).
        """
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(
                f"cannot freeze {type(bn).__name__}({bn.num_features}): it keeps no running statistics "
                "(track_running_stats=False)"
            )
        ref = bn.running_mean if bn.running_mean is not None else bn.weight
        frozen = cls(bn.num_features, bn.eps)
        if ref is not None:
            frozen = frozen.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if bn.affine:
                frozen.weight.copy_(bn.weight)
                frozen.bias.copy_(bn.bias)
            if bn.running_mean is not None:
                frozen.running_mean.copy_(bn.running_mean)
                frozen.running_var.copy_(bn.running_var)
        return frozen

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(shape) + shift.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _param_names(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return list(unwrap(model).named_parameters())


def select_params(
    model: nn.Module, patterns: Sequence[str], *, field: str = "patterns"
) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` under the patterns (all with none); a pattern naming nothing raises PatternError."""
    named = _param_names(model)
    if not patterns:
        return named
    module_names = [n for n, _ in unwrap(model).named_modules() if n]
    match_names(module_names + [n for n, _ in named], patterns, field=field)  # raises for a pattern naming nothing
    return [(n, p) for n, p in named if any(pattern_matches(pat, n) for pat in _strip(patterns))]


def _strip(patterns: Sequence[str]) -> list[str]:
    return [strip_wrapper_prefix(p) for p in patterns]


def _set_requires_grad(model: nn.Module, patterns: Sequence[str], flag: bool) -> list[str]:
    changed = []
    for name, param in select_params(model, patterns):
        if param.requires_grad != flag:
            param.requires_grad_(flag)
            changed.append(name)
    return changed


def freeze(model: nn.Module, *patterns: str, batchnorm: BatchNormMode | str = "keep") -> list[str]:
    """Set ``requires_grad=False`` on the parameters of the named modules (all with no pattern), in place.

    ``batchnorm`` is an explicit choice (see :class:`BatchNormMode`): ``"keep"`` leaves BatchNorm
    layers' behaviour alone, ``"frozen"`` converts the BatchNorm layers under the patterns to
    :class:`FrozenBatchNorm`. Returns the names of the parameters whose flag changed.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> freeze(m, "layer1.0")
        ['layer1.0.conv1.weight', 'layer1.0.bn1.weight', 'layer1.0.bn1.bias', 'layer1.0.conv2.weight', 'layer1.0.bn2.weight', 'layer1.0.bn2.bias']
    """
    mode = _enum(BatchNormMode, batchnorm, "batchnorm")
    changed = _set_requires_grad(model, patterns, False)
    if mode is BatchNormMode.FROZEN:
        freeze_batchnorm(model, *patterns)
    return changed


def unfreeze(model: nn.Module, *patterns: str) -> list[str]:
    """Set ``requires_grad=True`` on the parameters of the named modules (all with no pattern), in place.

    :class:`FrozenBatchNorm` layers stay frozen: they hold buffers, not parameters.
    Returns the names of the parameters whose flag changed.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> _ = freeze(m)
        >>> unfreeze(m, "fc")
        ['fc.weight', 'fc.bias']
    """
    return _set_requires_grad(model, patterns, True)


def freeze_backbone(
    model: nn.Module, head: str | Sequence[str] | None = None, *, batchnorm: BatchNormMode | str = "keep"
) -> list[str]:
    """Freeze everything but the head(s), in place: the feature-extraction strategy in one call.

    The head(s) come from :func:`~tlaudit.surgery.find_heads` unless ``head`` names them; they are
    made trainable. Returns the names of the parameters whose flag changed.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> len(freeze_backbone(m)), m.fc.weight.requires_grad, m.conv1.weight.requires_grad
        (60, True, False)
    """
    mode = _enum(BatchNormMode, batchnorm, "batchnorm")
    heads = resolve_heads(model, head)
    changed = []
    for name, param in _param_names(model):
        flag = any(pattern_matches(h, name) for h in heads)
        if param.requires_grad != flag:
            param.requires_grad_(flag)
            changed.append(name)
    if mode is BatchNormMode.FROZEN:
        inner = unwrap(model)
        backbone = [n for n, m in inner.named_modules() if isinstance(m, _BN_TYPES)]
        backbone = [n for n in backbone if not any(pattern_matches(h, n) for h in heads)]
        if backbone:
            freeze_batchnorm(model, *backbone)
    return changed


def freeze_batchnorm(model: nn.Module, *patterns: str) -> list[str]:
    """Replace the BatchNorm layers under the patterns (all with none) by :class:`FrozenBatchNorm`, in place.

    Returns the names of the replaced layers.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> freeze_batchnorm(m, "layer1.0")
        ['layer1.0.bn1', 'layer1.0.bn2']
        >>> m.layer1[0].bn1
        FrozenBatchNorm(64, eps=1e-05)
    """
    inner = unwrap(model)
    names = [n for n, _ in inner.named_modules() if n]
    selected = set(match_names(names, patterns)) if patterns else set(names)
    replaced = []
    for name, module in list(inner.named_modules()):
        if name in selected and isinstance(module, _BN_TYPES):
            parent_name, _, leaf = name.rpartition(".")
            parent = inner.get_submodule(parent_name) if parent_name else inner
            try:
                frozen = FrozenBatchNorm.from_batchnorm(module)
            except ValueError as err:
                raise ValueError(f"{err}: `{name}` (patterns)") from err
            setattr(parent, leaf, frozen)
            replaced.append(name)
    return replaced


def eval_frozen_batchnorm(model: nn.Module) -> list[str]:
    """Put BatchNorm layers whose affine parameters are all frozen into eval mode; call after ``model.train()``.

    They then normalize with their running statistics and stop updating them. Layers without affine
    parameters are left alone (nothing says whether they are meant frozen). Returns the names set to eval.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> _ = freeze(m, "layer1")
        >>> _ = m.train()
        >>> eval_frozen_batchnorm(m)[:2]
        ['layer1.0.bn1', 'layer1.0.bn2']
    """
    changed = []
    for name, module in unwrap(model).named_modules():
        if isinstance(module, _BN_TYPES) and module.affine:
            if not module.weight.requires_grad and not module.bias.requires_grad and module.training:
                module.eval()
                changed.append(name)
    return changed


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or name.endswith(".bias")


def _block_key(model: nn.Module, name: str) -> str:
    """The block a parameter belongs to: the entry of the first Sequential/ModuleList on its path,
    else the module that owns it (the parameter itself for parameters of the root)."""
    parts = name.split(".")
    module = model
    for i, part in enumerate(parts[:-1]):
        if isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) > 1:
            return ".".join(parts[: i + 1])
        module = module._modules.get(part)
        if module is None:
            break
    return ".".join(parts[:-1]) or name


def param_groups(
    model: nn.Module,
    lr: float,
    *,
    head_lr: float | None = None,
    layer_decay: float | None = None,
    weight_decay: float = 0.0,
    head: str | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: a low LR for pretrained layers, a higher one for the head.

    * pretrained (non-head) parameters get ``lr``; head parameters get ``head_lr`` (default ``10 * lr``);
    * with ``layer_decay`` (0 < d <= 1), block ``k`` counted back from the head gets ``lr * d**k``;
      a block is the entry of the first ``nn.Sequential``/``nn.ModuleList`` on a parameter's path
      (ResNet ``layer1.0``, VGG ``features.0``, ViT ``encoder.layers.encoder_layer_0``), else the
      module that owns it (ViT ``encoder.ln``), in the order the model registers them;
    * only trainable parameters, each exactly once; biases and 1-d parameters (norm weights) get no
      weight decay.

    Each group carries a ``name`` key for logs. Pass the result to any ``torch.optim`` optimizer.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> groups = param_groups(m, 1e-4, weight_decay=0.05)
        >>> [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in groups]
        [('backbone', 0.0001, 0.05, 20), ('backbone/no_decay', 0.0001, 0.0, 40), ('head', 0.001, 0.05, 1), ('head/no_decay', 0.001, 0.0, 1)]
    """
    for value, field in ((lr, "lr"), (head_lr, "head_lr"), (weight_decay, "weight_decay")):
        if value is None and field == "head_lr":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{field} must be a finite number >= 0: {value!r} ({field})")
    if layer_decay is not None and (
        isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1
    ):
        raise ValueError(f"layer_decay must be in (0, 1]: {layer_decay!r} (layer_decay)")
    head_lr = 10 * lr if head_lr is None else head_lr
    inner = unwrap(model)
    heads = resolve_heads(model, head)
    seen: set[int] = set()
    backbone: list[tuple[str, nn.Parameter]] = []
    head_params: list[tuple[str, nn.Parameter]] = []
    for name, param in inner.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (head_params if any(pattern_matches(h, name) for h in heads) else backbone).append((name, param))

    groups: dict[tuple[str, bool], dict[str, Any]] = {}

    def add(group_name: str, group_lr: float, name: str, param: nn.Parameter) -> None:
        no_decay = _no_decay(name, param)
        key = (group_name, no_decay)
        if key not in groups:
            groups[key] = {
                "name": group_name + ("/no_decay" if no_decay else ""),
                "params": [],
                "lr": group_lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        groups[key]["params"].append(param)

    if layer_decay is None:
        for name, param in backbone:
            add("backbone", lr, name, param)
    else:
        blocks = list(dict.fromkeys(_block_key(inner, name) for name, _ in backbone))
        depth = {block: len(blocks) - 1 - i for i, block in enumerate(blocks)}
        for name, param in backbone:
            block = _block_key(inner, name)
            add(block, lr * layer_decay ** depth[block], name, param)
    for name, param in head_params:
        add("head", head_lr, name, param)
    return list(groups.values())


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
            raise TypeError(
                f"schedule entry must be a Stage or epoch -> patterns: {item!r} (schedule)"
            )
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
        names = [n for n, _ in unwrap(model).named_modules() if n] + [n for n, _ in _param_names(model)]
        for stage in self.stages:
            match_names(names, stage.patterns, field=f"schedule[{stage.epoch}]")
        self.epoch = -1
        self.applied: list[int] = []

    def _apply(self, index: int) -> list[str]:
        stage = self.stages[index]
        changed = unfreeze(self.model, *stage.patterns)
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        new = [p for _, p in select_params(self.model, stage.patterns) if p.requires_grad and id(p) not in held]
        new = list({id(p): p for p in new}.values())
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


@contextlib.contextmanager
def inference(model: nn.Module, *, inference_mode: bool = True) -> Iterator[nn.Module]:
    """``model.eval()`` plus ``torch.inference_mode()`` (or ``no_grad`` with ``inference_mode=False``).

    Every module's previous training flag is restored on exit, also after an exception.

    Example:
        >>> import torch, torchvision
        >>> m = torchvision.models.resnet18().train()
        >>> with inference(m):
        ...     y = m(torch.randn(1, 3, 64, 64))
        >>> m.training, y.requires_grad
        (True, False)
    """
    modules = list(model.modules())
    flags = [m.training for m in modules]
    grad_context = torch.inference_mode() if inference_mode else torch.no_grad()
    try:
        model.eval()
        with grad_context:
            yield model
    finally:
        for module, flag in zip(modules, flags):
            module.training = flag


@dataclass(frozen=True)
class TrainableReport:
    """What :func:`trainable_report` returns: ``str()`` is the tables, ``to_dict()`` the same for JSON."""

    modules: tuple[dict[str, Any], ...]
    groups: tuple[dict[str, Any], ...]
    trainable_params: int
    total_params: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "modules": [dict(m) for m in self.modules],
            "param_groups": [dict(g) for g in self.groups],
        }

    def __str__(self) -> str:
        out = [
            f"trainable: {self.trainable_params:,} of {self.total_params:,} parameters",
            tabulate(
                [[m["module"], m["requires_grad"], f"{m['trainable']:,}", f"{m['params']:,}", m["mode"]] for m in self.modules],
                headers=["module", "requires_grad", "trainable", "params", "mode"],
                colalign=("left", "left", "right", "right", "left"),
            ),
        ]
        if self.groups:
            out.append("")
            out.append(
                tabulate(
                    [[g["group"], g["name"], g["lr"], g["weight_decay"], g["params"], g["trainable"]] for g in self.groups],
                    headers=["group", "name", "lr", "weight_decay", "params", "trainable"],
                )
            )
        return "\n".join(out)


def trainable_report(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, depth: int = 1
) -> TrainableReport:
    """``requires_grad`` status per module (to ``depth`` levels) and the LR of every optimizer group.

    Example:
        >>> import torch, torchvision
        >>> m = torchvision.models.resnet18()
        >>> _ = freeze_backbone(m)
        >>> r = trainable_report(m, torch.optim.SGD(m.fc.parameters(), lr=0.01))
        >>> r.trainable_params, r.groups[0]["lr"]
        (513000, 0.01)
    """
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer: {type(optimizer).__name__} (optimizer)")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int: {depth!r} (depth)")
    inner = unwrap(model)
    rows = []
    for name, module in inner.named_modules():
        if not name or name.count(".") >= depth:
            continue
        params = list({id(p): p for p in module.parameters()}.values())
        rows.append(
            {
                "module": name,
                "requires_grad": _flag_summary([p.requires_grad for p in params]),
                "trainable": sum(p.numel() for p in params if p.requires_grad),
                "params": sum(p.numel() for p in params),
                "mode": _mode(module),
            }
        )
    unique = list({id(p): p for p in inner.parameters()}.values())
    groups = []
    if optimizer is not None:
        for index, group in enumerate(optimizer.param_groups):
            groups.append(
                {
                    "group": index,
                    "name": str(group.get("name", "")),
                    "lr": group.get("lr"),
                    "weight_decay": group.get("weight_decay"),
                    "params": len(group["params"]),
                    "trainable": sum(1 for p in group["params"] if p.requires_grad),
                }
            )
    return TrainableReport(
        modules=tuple(rows),
        groups=tuple(groups),
        trainable_params=sum(p.numel() for p in unique if p.requires_grad),
        total_params=sum(p.numel() for p in unique),
    )
