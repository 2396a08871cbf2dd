"""Feature extraction as one call: :func:`extract_images`, from images on disk to features on disk.

It builds the backbone with its weights (:mod:`tlaudit.extract.backbones`), reads the images with
the weights' preprocessing on DataLoader workers (:mod:`tlaudit.extract.files`), runs the fastest
engine that keeps the features (``engine="auto"``), and writes resumable ``.npy`` chunks with an
``index.csv`` (sample index, path, label), or a Parquet file with the paths and labels beside the
features. Under ``torchrun`` each rank takes its shard; rank 0 writes the index and the Parquet file.

Output directory::

    index.csv                         index,path,label for every sample (rank 0)
    classes.json                      the class names, indexed by label (ImageFolder layout)
    run-00000.json, features-*.npy    the chunks (see tlaudit.extract.storage)
    features.parquet                  with format="parquet": index, path, label, features
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from tlaudit.extract.backbones import build_backbone
from tlaudit.extract.extractor import FeatureExtractor
from tlaudit.extract.files import ImageFiles, Preprocess, load_dataset
from tlaudit.extract.storage import Features, load_features

__all__ = ["FORMATS", "ExtractionRun", "extract_images", "write_parquet"]

FORMATS = ("npy", "parquet")
"""Output formats: ``npy`` chunks plus ``index.csv``, or both plus ``features.parquet``."""


@dataclass(frozen=True)
class ExtractionRun:
    """What :func:`extract_images` did: ``summary()`` is the final line ``tlaudit extract`` prints.

    Attributes:
        features: the :class:`~tlaudit.extract.Features` of this process (rows in memory without ``output``).
        samples: images in the data set; ``extracted`` of them by this call (``skipped`` already on disk).
        seconds: wall time of the extraction loop without ``selection_seconds``, the ``auto`` measurement
            on its first batch.
        engine: the engine that ran; ``config`` its label (``openvino+bf16``); ``reason`` why it was chosen.
        batch_size, num_workers: the loader's settings.
        preprocessing: what was done to each image (``resize 256, crop 224``) and the mean/std.
        weights: where the weights came from.
        output: the output directory; ``parquet`` the Parquet file, when written.
    """

    features: Features
    samples: int
    extracted: int
    skipped: int
    seconds: float
    selection_seconds: float
    engine: str
    config: str
    reason: str
    batch_size: int
    num_workers: int
    preprocessing: str
    weights: str
    model: str
    output: str | None
    parquet: str | None

    @property
    def images_per_second(self) -> float:
        """Images over the loop's time without the ``auto`` measurement (under torchrun: all ranks over the slowest)."""
        if self.features.aggregate_images_per_second != self.features.images_per_second:
            return self.features.aggregate_images_per_second
        return self.extracted / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: images, rate, engine, configuration."""
        where = f" -> {self.parquet or self.output}" if self.output else ""
        chosen = f", chosen in {self.selection_seconds:.1f} s" if self.selection_seconds else ""
        setup = (
            f"engine {self.engine} ({self.config}{chosen}), batch {self.batch_size}, {self.num_workers} worker(s), "
            f"{self.model} [{self.weights}; {self.preprocessing}]{where}"
        )
        if not self.extracted and self.skipped:
            return f"nothing to extract: all {self.samples} images were already done; {setup}"
        done = f"{self.extracted} of {self.samples} images" if self.skipped else f"{self.extracted} images"
        resumed = f" ({self.skipped} already done)" if self.skipped else ""
        return f"extracted {done}{resumed} in {self.seconds:.1f} s: {self.images_per_second:,.1f} img/s, {setup}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "extracted": self.extracted,
            "skipped": self.skipped,
            "seconds": self.seconds,
            "selection_seconds": self.selection_seconds,
            "images_per_second": self.images_per_second,
            "engine": self.engine,
            "config": self.config,
            "reason": self.reason,
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "preprocessing": self.preprocessing,
            "weights": self.weights,
            "model": self.model,
            "output": self.output,
            "parquet": self.parquet,
        }


def _default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // 2))


def _rows(dataset: Any) -> tuple[list[str], list[int]]:
    if isinstance(dataset, ImageFiles):
        return dataset.paths, dataset.labels
    n = len(dataset)
    return [""] * n, [-1] * n


def write_parquet(directory: str | os.PathLike[str], paths: Sequence[str], labels: Sequence[int]) -> Path:
    """``features.parquet`` in ``directory`` from its chunks: columns index, path, label, features (float32 list)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError("Parquet output needs pyarrow: pip install pyarrow (format='parquet'); or use format='npy'") from err
    features, indices = load_features(directory)
    idx = indices.numpy()
    flat = features.flatten(1).numpy()
    table = pa.table(
        {
            "index": pa.array(idx, pa.int64()),
            "path": pa.array([paths[i] for i in idx], pa.string()),
            "label": pa.array([labels[i] for i in idx], pa.int64()),
            "features": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.float32()), flat.shape[1]),
        }
    )
    path = Path(directory) / "features.parquet"
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def extract_images(
    data: Any,
    model: Any,
    *,
    weights: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    output: str | os.PathLike[str] | None = None,
    format: str = "npy",
    engine: str = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    resize: int | None = None,
    crop: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    node: str | None = None,
    device: str | torch.device = "cpu",
    chunk_size: int = 4096,
    progress: bool | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> ExtractionRun:
    """Features of every image in ``data`` with ``model``'s pretrained backbone: the whole job in one call.

    ``data``: a folder (ImageFolder layout or flat), a file list, ``module:function`` returning a
    Dataset, or a Dataset. ``model``/``weights``/``checkpoint``/``random_weights``: see
    :func:`~tlaudit.extract.backbones.build_backbone`. The weights' preprocessing (resize, center crop,
    mean and std) applies unless ``resize``, ``crop``, ``mean``, ``std`` replace it. ``engine``: see
    :class:`~tlaudit.FeatureExtractor`. With ``output``, chunks are written there and a rerun resumes;
    ``format="parquet"`` also writes ``features.parquet`` (needs pyarrow). ``progress``: a tqdm bar
    with images/s and ETA on stderr (default: when stderr is a terminal).

    Raises:
        ValueError: a bad option (named); FileNotFoundError: no such data; ImportError: Parquet without pyarrow.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format: {format!r} (format); expected one of {', '.join(FORMATS)}")
    if format == "parquet":
        if output is None:
            raise ValueError("format='parquet' needs an output directory (output)")
        try:
            import pyarrow  # noqa: F401
        except ImportError as err:
            raise ImportError("Parquet output needs pyarrow: pip install pyarrow (format='parquet'); or use format='npy'") from err
    backbone = build_backbone(model, weights=weights, checkpoint=checkpoint, random_weights=random_weights, node=node)
    norm = backbone.normalization
    mean = tuple(mean) if mean is not None else (norm.mean if norm else None)
    std = tuple(std) if std is not None else (norm.std if norm else None)
    if mean is None or std is None:
        raise ValueError(f"the weights' mean and std are unknown for {backbone.weights} (mean, std); pass mean= and std=")
    resize = resize if resize is not None else (norm.resize_size if norm else None)
    crop = crop if crop is not None else (norm.crop_size if norm else None)
    preprocess = Preprocess(resize, crop, (norm.interpolation if norm and norm.interpolation else "bilinear"))
    dataset = load_dataset(data, preprocess if (resize or crop) else None)
    if isinstance(dataset, ImageFiles) and crop is None:
        raise ValueError("images of different sizes cannot be batched without a crop size (crop); pass crop=")
    workers = _default_workers() if num_workers is None else num_workers
    fx = FeatureExtractor(backbone.model, node=node, weights={"mean": list(mean), "std": list(std)}, device=device, engine=engine)
    from tlaudit.extract._run import rank_and_world

    this_rank, world = rank_and_world(rank, world_size)
    paths, labels = _rows(dataset)
    if output is not None and this_rank == 0:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "index.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "path", "label"])
            writer.writerows(zip(range(len(paths)), paths, labels))
        classes = getattr(dataset, "classes", None)
        if classes:
            (out / "classes.json").write_text(json.dumps(list(classes)) + "\n", encoding="utf-8")
    started = time.perf_counter()
    result = fx.extract(
        dataset,
        batch_size=batch_size,
        output=output,
        chunk_size=chunk_size,
        num_workers=workers,
        progress=progress,
        rank=this_rank,
        world_size=world,
    )
    # `auto` chose on the loop's first batch: after the DataLoader forked its workers, never before (a
    # process that forks while an engine's thread pools exist can crash), and apart from the rate
    selection = fx.choice.seconds if fx.choice is not None else 0.0
    seconds = time.perf_counter() - started - selection
    parquet = None
    if format == "parquet":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if this_rank == 0:
            parquet = str(write_parquet(output, paths, labels))  # type: ignore[arg-type]
    choice = fx.choice
    return ExtractionRun(
        features=result,
        samples=len(cast(Sized, dataset)),
        extracted=int(result.indices.numel()),
        skipped=result.skipped,
        seconds=seconds,
        selection_seconds=selection,
        engine=fx.config.engine if not (engine == "auto" and choice is None) else "auto",
        config=fx.config.describe() if not (engine == "auto" and choice is None) else "nothing ran, nothing measured",
        reason=choice.reason if choice is not None else dict(fx.config.reasons).get("engine", ""),
        batch_size=batch_size,
        num_workers=workers,
        preprocessing=f"{preprocess.describe()}, mean {_fmt(mean)}, std {_fmt(std)}",
        weights=backbone.weights,
        model=str(model) if isinstance(model, str) else type(backbone.model).__name__,
        output=None if output is None else str(output),
        parquet=parquet,
    )


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
