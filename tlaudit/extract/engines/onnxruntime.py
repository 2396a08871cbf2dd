"""``onnxruntime``: ONNX Runtime, the backbone exported with ``torch.onnx.export`` (the dynamo exporter)."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

from tlaudit.extract.engines._interface import Engine, Runner, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tlaudit.extract.config import ExtractConfig

__all__ = ["OnnxRuntime"]


@register
class OnnxRuntime(Engine):
    """ONNX Runtime's CPU provider (the CUDA provider when the device is CUDA and it is installed), fp32.

    ONNX Runtime's CPU kernels compute fp32; a bf16 configuration runs as fp32, and says so.
    """

    name = "onnxruntime"
    summary = "ONNX Runtime (torch.onnx.export, dynamo exporter), fp32"
    devices = ("cpu", "cuda")
    requires = (("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("onnxscript", "onnxscript"))
    extra = "onnx"

    def build(self, backbone: nn.Module, example: torch.Tensor, config: ExtractConfig) -> Runner:
        import onnxruntime as ort
        import torch

        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            program = torch.onnx.export(backbone, (example,), dynamo=True, input_names=["images"], verbose=False)
        assert program is not None  # the dynamo exporter returns the program
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        # idle threads that spin steal the CPU from whatever runs next (the next batch's decoding, another engine)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if example.device.type == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(program.model_proto.SerializeToString(), options, providers=providers)
        name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> torch.Tensor:
            out = session.run(None, {name: x.detach().cpu().contiguous().numpy()})[0]
            return torch.from_numpy(out).to(x.device)

        return run
