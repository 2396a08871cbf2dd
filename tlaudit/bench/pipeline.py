"""End to end: JPEG files on disk to features, tlaudit's pipeline against the plain one, and where time goes.

* ``plain``: torchvision ``ImageFolder`` with the weights' usual transform (PIL decode, ``Resize``,
  ``CenterCrop``, ``ToTensor``, ``Normalize``) + ``DataLoader`` + ``model.eval()`` under ``torch.no_grad()``.
* ``tlaudit``: :class:`~tlaudit.extract.files.ImageFiles` (``decode_jpeg`` straight to a uint8 tensor,
  resize and crop on uint8) + ``DataLoader`` + :class:`~tlaudit.FeatureExtractor` on the chosen engine,
  normalizing on the device.

Each pipeline runs at every worker count three ways: end to end; the loader alone (decode + resize
+ collate: the input side's rate); the network alone on batches decoded beforehand. End to end can
reach the slower of the two only when decoding overlaps the network on other cores.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from tlaudit.evaluation import training_flags_kept
from tlaudit.extract.extractor import FeatureExtractor, _first_tensor
from tlaudit.extract.files import ImageFiles, Preprocess, image_files
from tlaudit.normalization import Normalization

__all__ = ["PIPELINES", "PipelineReport", "PipelineResult", "run_pipeline_bench"]

PIPELINES = ("plain", "tlaudit")


@dataclass(frozen=True)
class PipelineResult:
    """One pipeline at one worker count: images/s end to end, of the loader alone and of the network alone."""

    pipeline: str
    workers: int
    images_per_second: float
    loader_images_per_second: float
    network_images_per_second: float
    config: str
    speedup_vs_plain: float | None = None

    @property
    def bound(self) -> str:
        """``decode`` when the loader alone is slower than the network alone, else ``network``."""
        return "decode" if self.loader_images_per_second < self.network_images_per_second else "network"

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "workers": self.workers,
            "images_per_second": self.images_per_second,
            "loader_images_per_second": self.loader_images_per_second,
            "network_images_per_second": self.network_images_per_second,
            "bound": self.bound,
            "config": self.config,
            "speedup_vs_plain": self.speedup_vs_plain,
        }


@dataclass(frozen=True)
class PipelineReport:
    """What :func:`run_pipeline_bench` returns; ``str()`` is the table."""

    model: str
    images: int
    batch_size: int
    preprocessing: str
    results: tuple[PipelineResult, ...]
    cosine: float
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "images": self.images,
            "batch_size": self.batch_size,
            "preprocessing": self.preprocessing,
            "cosine_vs_plain": self.cosine,
            "environment": self.environment,
            "results": [r.to_dict() for r in self.results],
        }

    def to_table(self) -> str:
        from tabulate import tabulate

        rows = [
            [
                r.pipeline,
                r.workers,
                f"{r.images_per_second:,.1f}",
                "" if r.speedup_vs_plain is None else f"{r.speedup_vs_plain:.2f}x",
                f"{r.loader_images_per_second:,.1f}",
                f"{r.network_images_per_second:,.1f}",
                r.bound,
                r.config,
            ]
            for r in self.results
        ]
        headers = ["pipeline", "workers", "end to end img/s", "vs plain", "decode only img/s", "network only img/s", "bound by", "config"]
        env = self.environment
        head = (
            f"{self.model}: {self.images} JPEG files -> features, batch {self.batch_size}, {self.preprocessing} "
            f"({env.get('device_name', 'cpu')}, {env.get('threads', torch.get_num_threads())} threads); "
            f"features cosine tlaudit vs plain >= {self.cosine:.4f}"
        )
        return "\n".join([head, "", tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)])

    def __str__(self) -> str:
        return self.to_table()


def _worker_context() -> Any:
    """``forkserver`` workers: the engines' thread pools already exist here, and forking a process with
    live thread pools can crash; the server starts clean with torch and the data sets preloaded."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torchvision", "tlaudit.extract.files"])
    return ctx


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _timed(loader: Iterable[Any], forward: Callable[[torch.Tensor], torch.Tensor] | None) -> tuple[int, float, list[torch.Tensor]]:
    started, count, outs = time.perf_counter(), 0, []
    for batch in loader:
        images = batch[0]
        count += images.shape[0]
        if forward is not None:
            outs.append(forward(images))
    return count, time.perf_counter() - started, outs


def run_pipeline_bench(
    folder: str,
    model: nn.Module,
    *,
    normalization: Normalization,
    workers: Sequence[int] = (1, 2),
    batch_size: int = 16,
    engine: str = "auto",
    name: str | None = None,
    repeats: int = 1,
) -> PipelineReport:
    """Measure ``plain`` against ``tlaudit`` from the JPEG files under ``folder`` (ImageFolder layout) to features.

    ``normalization`` gives mean, std, ``resize_size`` and ``crop_size`` (both needed). Each figure is
    the median of ``repeats`` passes over the whole folder.

    Raises:
        ValueError: no crop or resize size, a bad worker count, an empty folder.
    """
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    from tlaudit.bench.environment import environment

    if not normalization.crop_size or not normalization.resize_size:
        raise ValueError(f"the end-to-end bench needs resize and crop sizes: {normalization.to_dict()} (normalization)")
    if not workers or any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in workers):
        raise ValueError(f"workers must be integers >= 0: {list(workers)!r} (workers)")
    preprocess = Preprocess(normalization.resize_size, normalization.crop_size)
    files: ImageFiles = image_files(folder, preprocess)
    plain_transform = T.Compose(
        [
            T.Resize(normalization.resize_size),
            T.CenterCrop(normalization.crop_size),
            T.ToTensor(),
            T.Normalize(normalization.mean, normalization.std),
        ]
    )
    plain_data = ImageFolder(folder, transform=plain_transform)
    norm = {"mean": list(normalization.mean), "std": list(normalization.std)}
    fx = FeatureExtractor(model, weights=norm, engine=engine)
    first = torch.stack([files[i][0] for i in range(min(batch_size, len(files)))])
    if engine == "auto":
        fx.select_engine(first, cache=False)
    fx(first)  # builds a converting engine before the timing

    def plain_forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _first_tensor(model(x))

    results: list[PipelineResult] = []
    plain_feats: list[torch.Tensor] = []
    ours_feats: list[torch.Tensor] = []
    with training_flags_kept(model):
        model.eval()
        for w in workers:
            for pipeline, data, forward in (("plain", plain_data, plain_forward), ("tlaudit", files, fx)):

                def loader(data: Any = data, w: int = w) -> DataLoader:
                    return DataLoader(
                        data, batch_size=batch_size, num_workers=w, shuffle=False, multiprocessing_context=_worker_context() if w else None
                    )

                e2e, dec, net = [], [], []
                for _ in range(repeats):
                    n, seconds, outs = _timed(loader(), forward)
                    e2e.append(_rate(n, seconds))
                    n, seconds, _ = _timed(loader(), None)
                    dec.append(_rate(n, seconds))
                    decoded = [batch[0] for batch in loader()]
                    started = time.perf_counter()
                    for images in decoded:
                        forward(images)
                    net.append(_rate(n, time.perf_counter() - started))
                (plain_feats if pipeline == "plain" else ours_feats).append(torch.cat(outs).flatten(1))
                results.append(
                    PipelineResult(
                        pipeline,
                        w,
                        statistics.median(e2e),
                        statistics.median(dec),
                        statistics.median(net),
                        "eval+no_grad fp32, PIL + ToTensor + Normalize"
                        if pipeline == "plain"
                        else f"decode_jpeg uint8, {fx.config.describe()}",
                    )
                )
    by_workers = {r.workers: r for r in results if r.pipeline == "plain"}
    results = [
        r
        if r.pipeline == "plain"
        else PipelineResult(
            r.pipeline,
            r.workers,
            r.images_per_second,
            r.loader_images_per_second,
            r.network_images_per_second,
            r.config,
            r.images_per_second / by_workers[r.workers].images_per_second,
        )
        for r in results
    ]
    results = [
        PipelineResult(r.pipeline, r.workers, r.images_per_second, r.loader_images_per_second, r.network_images_per_second, r.config, 1.0)
        if r.pipeline == "plain"
        else r
        for r in results
    ]
    import torch.nn.functional as F

    cosine = float(F.cosine_similarity(plain_feats[0], ours_feats[0], dim=1).min())
    return PipelineReport(
        model=name or type(model).__name__,
        images=len(files),
        batch_size=batch_size,
        preprocessing=f"{preprocess.describe()}",
        results=tuple(results),
        cosine=cosine,
        environment=environment("cpu"),
    )
