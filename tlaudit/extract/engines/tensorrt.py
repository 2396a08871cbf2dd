"""``tensorrt``: NVIDIA TensorRT through torch-tensorrt, on CUDA only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlaudit.extract.engines._interface import Engine, Runner, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tlaudit.extract.config import ExtractConfig

__all__ = ["TensorRT", "enabled_precisions"]


def enabled_precisions(dtype: str) -> tuple[str, ...]:
    """The TensorRT precisions for a configuration dtype: fp32 always, plus the reduced one asked for.

    Example:
        >>> enabled_precisions("bfloat16")
        ('float32', 'bfloat16')
    """
    return ("float32",) if dtype == "float32" else ("float32", dtype)


@register
class TensorRT(Engine):
    """TensorRT engines built by ``torch_tensorrt.compile`` (dynamo IR) for the batch shape, on CUDA.

    The configuration's dtype (bf16 from compute capability 8.0, fp16 from 7.0) is enabled beside fp32;
    TensorRT picks per layer.
    """

    name = "tensorrt"
    summary = "TensorRT through torch-tensorrt on CUDA (fp32 plus the device's reduced precision)"
    devices = ("cuda",)
    requires = (("torch_tensorrt", "torch-tensorrt"),)
    extra = None
    dtypes = ("float32", "bfloat16", "float16")

    def build(self, backbone: nn.Module, example: torch.Tensor, config: ExtractConfig) -> Runner:
        import torch
        import torch_tensorrt

        precisions = {getattr(torch, d) for d in enabled_precisions(config.dtype)}
        compiled = torch_tensorrt.compile(backbone, ir="dynamo", inputs=[example], enabled_precisions=precisions)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                out = compiled(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            return out.float().clone()

        return run
