"""``eager`` and ``torch-compile``: PyTorch itself, as :class:`~tlaudit.FeatureExtractor` runs it."""

from __future__ import annotations

from typing import Any

from tlaudit.extract.engines._interface import Engine, register

__all__ = ["Eager", "TorchCompile"]


@register
class Eager(Engine):
    """PyTorch eager under ``inference_mode``: folded BatchNorm, channels-last, bf16 autocast where native."""

    name = "eager"
    summary = "PyTorch eager: fold-bn, channels-last, bf16/fp16 autocast where the device computes it natively"
    native = True
    static_batch = False
    dtypes = ("float32", "bfloat16", "float16")

    def overrides(self) -> dict[str, Any]:
        return {"compile": False}


@register
class TorchCompile(Engine):
    """The eager configuration through ``torch.compile`` (Inductor); compilation costs seconds to minutes."""

    name = "torch-compile"
    summary = "the eager configuration through torch.compile (Inductor): slow to build, sometimes faster"
    native = True
    dtypes = ("float32", "bfloat16", "float16")

    def overrides(self) -> dict[str, Any]:
        return {"compile": True}
