"""The ``tlaudit extract DATA --model NAME`` subcommand: :func:`add_parser` registers it, :func:`run` runs it.

Self-contained (it needs only ``tlaudit.cli._console`` and ``tlaudit.errors`` besides the extraction
package) and torch-free until it runs, so ``tlaudit --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tlaudit.extract.engines import ENGINE_NAMES, ENGINES

__all__ = ["add_parser", "run"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers separated by commas, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers separated by commas, got {text!r}")
    return values


def _engines_help() -> str:
    lines = ["auto: measure the available engines on the first batch, keep the fastest with cosine >= 0.99 to fp32"]
    lines += [f"{name}: {engine.summary}" for name, engine in ENGINES.items()]
    return "; ".join(lines)


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``extract`` subparser to ``commands`` (the ``tlaudit`` subparsers)."""
    p = commands.add_parser(
        "extract",
        parents=[common],
        help="extract features of a folder of images with a pretrained backbone, on the fastest engine",
        description=(
            "Run MODEL's backbone (head removed) over every image of DATA and write the features to --output: "
            ".npy chunks with index.csv (resumable: a rerun skips the chunks already written), or also a "
            "Parquet file. DATA is a folder (class subfolders as in ImageFolder, or images directly), a text "
            "file listing image paths, or module:function returning a Dataset. Images are decoded on DataLoader "
            "workers with the weights' own preprocessing. Under torchrun each rank extracts its shard."
        ),
    )
    p.add_argument("data", metavar="DATA", help="image folder, file list, or module:function returning a Dataset")
    p.add_argument(
        "--model", required=True, metavar="NAME", help="torchvision name (resnet50), timm/NAME, or module:function building the model"
    )
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument(
        "--weights", metavar="W", help="torchvision weights (IMAGENET1K_V2, DEFAULT, ResNet50_Weights.IMAGENET1K_V2); 'pretrained' for timm"
    )
    weights.add_argument("--checkpoint", metavar="FILE", help="a local state dict to load into the model")
    weights.add_argument(
        "--random-weights", action="store_true", help="extract with a seeded random initialization (for tests and timing only)"
    )
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="directory for the chunks, index and Parquet file")
    p.add_argument(
        "--format",
        choices=["npy", "parquet"],
        default="npy",
        help="npy: chunks + index.csv; parquet: also features.parquet with path and label (needs pyarrow)",
    )
    p.add_argument("--engine", choices=list(ENGINE_NAMES), default="auto", help=_engines_help())
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available, else cpu")
    p.add_argument("--batch-size", type=_positive, default=64, metavar="N", help="images per batch (default: 64)")
    p.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="DataLoader worker processes decoding images (default: half the cores, at most 8)",
    )
    p.add_argument("--resize", type=_positive, default=None, metavar="PX", help="shorter side before the crop (default: the weights')")
    p.add_argument("--crop", type=_positive, default=None, metavar="PX", help="center crop (default: the weights')")
    p.add_argument("--mean", type=_floats, default=None, metavar="R,G,B", help="normalization mean (default: the weights')")
    p.add_argument("--std", type=_floats, default=None, metavar="R,G,B", help="normalization std (default: the weights')")
    p.add_argument("--node", default=None, metavar="NAME", help="a graph node whose output are the features (layer4, avgpool)")
    p.add_argument("--chunk-size", type=_positive, default=4096, metavar="N", help="samples per .npy chunk (default: 4096)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar with images/s and ETA on stderr (default: when stderr is a terminal)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``tlaudit extract`` with parsed ``args``; returns the exit code (0, or 2 for unusable input)."""
    import torch

    from tlaudit.cli._console import ExitCode
    from tlaudit.errors import SetupError, UsageError
    from tlaudit.extract.engines import EngineUnavailable
    from tlaudit.extract.job import extract_images

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("CUDA is not available: cuda (--device)")
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
    try:
        result = extract_images(
            args.data,
            args.model,
            weights=args.weights,
            checkpoint=args.checkpoint,
            random_weights=args.random_weights,
            output=args.output,
            format=args.format,
            engine=args.engine,
            batch_size=args.batch_size,
            num_workers=args.workers,
            resize=args.resize,
            crop=args.crop,
            mean=args.mean,
            std=args.std,
            node=args.node,
            device=device,
            chunk_size=args.chunk_size,
            progress=args.progress,
        )
    except (ValueError, TypeError, FileNotFoundError, ImportError, EngineUnavailable, SetupError) as err:
        raise UsageError(str(err)) from err
    finally:
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    if int(os.environ.get("RANK", 0)) != 0:
        return ExitCode.OK
    if args.engine == "auto" and result.reason:
        print(f"engine: {result.reason}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    return ExitCode.OK
