"""The ``tlaudit bench MODEL`` subcommand: :func:`add_parser` registers it, :func:`run` runs it."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from tlaudit.bench.names import DTYPE_NAMES, INPUTS, MODE_REGISTRY, MODES, default_modes

if TYPE_CHECKING:
    import torch

    from tlaudit.bench.report import BenchReport

__all__ = ["add_parser", "run"]


def _sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _worker_counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 0 separated by commas, got {text!r}")
    return values


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_GROUPS = ("engines", "all")


def _modes(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [v for v in values if v not in MODES and v not in _GROUPS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(
            f"unknown mode: {', '.join(unknown) or text!r}; expected a comma-separated list of {', '.join(MODES)}, "
            f"or {' or '.join(_GROUPS)}"
        )
    return values


def _expand(modes: list[str], device_type: str) -> list[str]:
    """``engines``: baseline, optimized, every engine that runs here, auto; ``all``: every mode that runs here."""
    from tlaudit.bench.names import engine_modes
    from tlaudit.extract.engines import ENGINES

    out: list[str] = []
    for mode in modes:
        if mode == "engines":
            out += engine_modes(device_type)
        elif mode == "all":
            out += [
                m
                for m, spec in MODE_REGISTRY.items()
                if spec.engine in (None, "auto") or ENGINES[spec.engine].unavailable(device_type) is None
            ]
        else:
            out.append(mode)
    return list(dict.fromkeys(out))


def _modes_help() -> str:
    lines = [f"{m.name}: {m.summary}" for m in MODE_REGISTRY.values()]
    return (
        "modes to run, comma-separated (default: " + ",".join(default_modes()) + "); engines: baseline, optimized, "
        "every engine installed for the device and auto; all: every mode that runs here. " + "; ".join(lines)
    )


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``bench`` subparser to ``commands`` (the ``tlaudit`` subparsers)."""
    p = commands.add_parser(
        "bench",
        parents=[common],
        help="measure feature-extraction throughput: naive, baseline and optimized side by side",
        description=(
            "Remove MODEL's head and measure images/s of each mode on the same inputs, with each mode's cosine "
            "to the fp32 features: naive (eval, gradients on, fp32), baseline (eval + no_grad, fp32), optimized "
            "(FeatureExtractor's choice), and on request compiled, channels-last, every engine (--modes engines: "
            "OpenVINO, ONNX Runtime, TensorRT where installed) and auto. With --images: from JPEG files to "
            "features end to end instead. MODEL is a torchvision builder name (weights=None), a "
            "Python file or module:function, as in `tlaudit inspect`. Under torchrun each rank measures on "
            "its device and rank 0 reports the aggregate images/s."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="resnet50, file.py[:function] or module:function")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available, else cpu")
    p.add_argument(
        "--batch-size",
        type=_sizes,
        nargs="+",
        default=[[32]],
        metavar="N[,N...]",
        help="batch size, or several to sweep: 32 64 or 32,64 (default: 32)",
    )
    p.add_argument("--iters", type=_count(1), default=5, metavar="N", help="batches per timed repeat (default: 5)")
    p.add_argument("--repeats", type=_count(3), default=3, metavar="N", help="timed repeats per mode, at least 3 (default: 3)")
    p.add_argument("--warmup", type=_count(1), default=2, metavar="N", help="untimed batches first, compilation included (default: 2)")
    p.add_argument("--image-size", type=_count(1), default=224, metavar="PX", help="square input size (default: 224)")
    p.add_argument("--dtype", choices=["auto", *DTYPE_NAMES], default="auto", help="optimized mode's compute dtype (default: auto)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="optimized mode's layout (default: auto)")
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the optimized mode (default: auto)"
    )
    p.add_argument("--modes", type=_modes, default=None, metavar="M[,M...]", help=_modes_help())
    p.add_argument(
        "--input",
        choices=list(INPUTS),
        default="synthetic",
        help="synthetic: float32 already on the device; uint8-host: uint8 pixels in host memory (default: synthetic)",
    )
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default: table)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="end to end instead: JPEG files in DIR (ImageFolder layout) to features, tlaudit's pipeline "
        "against ImageFolder + DataLoader + eval/no_grad, with decode-only and network-only rates",
    )
    p.add_argument(
        "--workers", type=_worker_counts, default=[1, 2], metavar="N[,N...]", help="DataLoader worker counts for --images (default: 1,2)"
    )
    p.add_argument("--engine", default="auto", metavar="NAME", help="the engine of tlaudit's pipeline for --images (default: auto)")
    p.add_argument("--plot", metavar="FILE.png", help="save images/s against batch size per mode (needs matplotlib)")
    p.set_defaults(run=run)


def _init_distributed(device: str) -> torch.device:
    import torch

    """Under torchrun: join the process group and return this rank's device."""
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def run(args: argparse.Namespace) -> int:
    """Run ``tlaudit bench`` with parsed ``args``; returns the exit code (0, or 2 for unusable input)."""
    import torch

    from tlaudit.bench.report import run_bench
    from tlaudit.cli._console import ExitCode, emit
    from tlaudit.cli._models import load_model
    from tlaudit.errors import UsageError
    from tlaudit.surgery import HeadNotFoundError, remove_head

    batch_sizes = list(dict.fromkeys(size for group in args.batch_size for size in group))
    if args.plot and not _has_matplotlib():
        raise UsageError(f"--plot needs matplotlib: {args.plot} (--plot); pip install 'tlaudit[plot]'")
    device_type = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise UsageError("CUDA is not available: cuda (--device)")
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    device = _init_distributed(device_type) if distributed else torch.device(device_type)
    model, _, head = load_model(args.model)
    if not callable(getattr(model, "forward_head", None)):
        try:
            remove_head(model, head=head if isinstance(head, str) else None)
        except HeadNotFoundError as err:
            raise UsageError(f"{args.model}: {err}") from err
    overrides = {"channels_last": args.channels_last, "compile": args.compile, "dtype": None if args.dtype == "auto" else args.dtype}
    if args.images is not None:
        return _run_pipeline(args, model, batch_sizes[0])
    from tlaudit.extract.engines import EngineUnavailable

    modes = _expand(args.modes, device.type) if args.modes else list(default_modes())
    print(f"tlaudit bench: {args.model} on {device}, batch {','.join(map(str, batch_sizes))}, modes {','.join(modes)} ...", file=sys.stderr)
    try:
        report = run_bench(
            model,
            name=args.model,
            device=device,
            batch_sizes=batch_sizes,
            image_size=args.image_size,
            iters=args.iters,
            warmup=args.warmup,
            repeats=args.repeats,
            modes=modes,
            input=args.input,
            **overrides,
        )
    except (ValueError, TypeError, EngineUnavailable) as err:
        raise UsageError(f"{args.model}: {err}") from err
    if distributed and torch.distributed.get_rank() != 0:
        return ExitCode.OK
    emit(report.to_json() if args.format == "json" else report.to_table(), args.output)
    if args.plot:
        try:
            report.plot(args.plot)
        except ImportError as err:
            raise UsageError(str(err)) from err
    print(_summary(report), file=sys.stderr)
    return ExitCode.OK


def _run_pipeline(args: argparse.Namespace, model: Any, batch_size: int) -> int:
    from pathlib import Path

    from tlaudit.bench.pipeline import run_pipeline_bench
    from tlaudit.cli._console import ExitCode, emit
    from tlaudit.errors import UsageError
    from tlaudit.extract.engines import EngineUnavailable
    from tlaudit.normalization import Normalization

    if not Path(args.images).is_dir():
        raise UsageError(f"no such folder: {args.images!r} (--images)")
    crop = args.image_size
    norm = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_size=crop, resize_size=round(crop * 256 / 224))
    workers = list(dict.fromkeys(w for w in args.workers))
    print(
        f"tlaudit bench: {args.model}, JPEG files in {args.images} to features, workers {','.join(map(str, workers))} ...", file=sys.stderr
    )
    try:
        report = run_pipeline_bench(
            args.images, model, normalization=norm, workers=workers, batch_size=batch_size, engine=args.engine, name=args.model
        )
    except (ValueError, TypeError, FileNotFoundError, EngineUnavailable) as err:
        raise UsageError(f"{args.images}: {err}") from err
    import json

    emit(json.dumps(report.to_dict(), indent=2, default=str) if args.format == "json" else report.to_table(), args.output)
    best = max(report.results, key=lambda r: r.images_per_second)
    print(f"fastest: {best.pipeline} with {best.workers} worker(s), {best.images_per_second:,.1f} images/s end to end", file=sys.stderr)
    return ExitCode.OK


def _summary(report: BenchReport) -> str:
    best = max(report.results, key=lambda r: r.images_per_second)
    text = f"fastest: {best.mode} at batch {best.batch_size}, {best.images_per_second:,.1f} images/s"
    if best.speedup_vs_baseline is not None:
        text += f" ({best.speedup_vs_baseline:.2f}x baseline)"
    if report.warnings:
        text += f"; {len(report.warnings)} warning(s)"
    return text
