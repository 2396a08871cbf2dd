"""``openvino``: Intel's OpenVINO runtime on the CPU, converted through ``torch.export``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlaudit.extract.engines._interface import Engine, Runner, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tlaudit.extract.config import ExtractConfig

__all__ = ["OpenVINO"]

_PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


@register
class OpenVINO(Engine):
    """OpenVINO on the CPU: the backbone exported with ``torch.export`` and compiled for the batch shape.

    Precision follows the configuration: ``bfloat16`` (the choice on CPUs with native bf16) sets
    OpenVINO's ``INFERENCE_PRECISION_HINT`` to ``bf16``; ``float32`` to ``f32``. OpenVINO uses as
    many threads as torch does (``torch.get_num_threads()``), so the comparison is fair.
    """

    name = "openvino"
    summary = "OpenVINO on the CPU (torch.export -> OpenVINO IR), bf16 where the CPU computes it natively"
    devices = ("cpu",)
    requires = (("openvino", "openvino"),)
    extra = "openvino"
    dtypes = ("float32", "bfloat16")

    def build(self, backbone: nn.Module, example: torch.Tensor, config: ExtractConfig) -> Runner:
        import openvino as ov
        import torch

        exported = torch.export.export(backbone, (example,))
        model = ov.convert_model(exported)
        options = {
            "INFERENCE_PRECISION_HINT": _PRECISION[config.dtype],
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        compiled = ov.Core().compile_model(model, "CPU", options)
        request = compiled.create_infer_request()

        def run(x: torch.Tensor) -> torch.Tensor:
            out = request.infer({0: x.contiguous().numpy()})
            return torch.from_numpy(next(iter(out.values())).copy())

        return run
