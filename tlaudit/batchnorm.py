"""BatchNorm in transfer learning: keep the pretrained statistics while the rest of the model trains.

``requires_grad=False`` freezes a BatchNorm layer's affine weights, not its statistics: in
``model.train()`` it still normalizes with batch statistics and overwrites the running ones.
:class:`FrozenBatchNorm` (via :func:`freeze_batchnorm`) fixes them for good;
:func:`eval_frozen_batchnorm` puts frozen layers back in eval mode after ``model.train()``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlaudit._names import match_names, unwrap

__all__ = ["BN_TYPES", "FrozenBatchNorm", "freeze_batchnorm", "eval_frozen_batchnorm", "is_batchnorm"]

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)
"""The BatchNorm layer types (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, lazy variants) that track statistics in training."""


def is_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm layer whose statistics move in training mode (not :class:`FrozenBatchNorm`)."""
    return isinstance(module, BN_TYPES)


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics and affine terms, stored as buffers (for 1d, 2d and 3d inputs).

    Unlike ``BatchNorm*d.eval()`` it stays fixed after ``model.train()``. Its state dict has the
    BatchNorm keys (``weight``, ``bias``, ``running_mean``, ``running_var``), so checkpoints load either way.
    A BatchNorm with a fused activation (timm's ``BatchNormAct2d``: ``drop`` then ``act`` after the
    normalization) keeps them: ``drop`` and ``act`` are carried over and applied in the same order.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

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
                f"cannot freeze {type(bn).__name__}({bn.num_features}): it keeps no running statistics (track_running_stats=False)"
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
        for name in ("drop", "act"):  # timm's BatchNormAct2d: normalization, then drop, then activation
            part = getattr(bn, name, None)
            if isinstance(part, nn.Module):
                setattr(frozen, name, part)
        return frozen

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        x = x * scale.reshape(shape) + shift.reshape(shape)
        for name in ("drop", "act"):  # only where from_batchnorm carried them over
            part = self._modules.get(name)
            if part is not None:
                x = part(x)
        return x

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


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
        if name in selected and is_batchnorm(module):
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
        >>> import torchvision, tlaudit
        >>> m = torchvision.models.resnet18()
        >>> _ = tlaudit.freeze(m, "layer1")
        >>> _ = m.train()
        >>> eval_frozen_batchnorm(m)[:2]
        ['layer1.0.bn1', 'layer1.0.bn2']
    """
    changed = []
    for name, module in unwrap(model).named_modules():
        if is_batchnorm(module) and module.affine:
            if not module.weight.requires_grad and not module.bias.requires_grad and module.training:
                module.eval()
                changed.append(name)
    return changed
