"""Ray's fixed start-up cost and 1 against 2 actors, against extracting locally, on one machine.

64 PNG files (64 px), ResNet-18 from a local checkpoint, fp32 eager (the same features everywhere).
Ray pays off where one process cannot reach the hardware: many machines, many GPUs; on one small
CPU machine its start-up and scheduling cost is what this measures. Run:

    .venv/bin/python -m pytest benchmarks/test_extract_ray_bench.py -s
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import tlaudit
from tlaudit.extract import FeatureExtractor
from tlaudit.extract.ray import RayExtractor

ray = pytest.importorskip("ray")

IMAGES = 64
OPTIONS = {"engine": "eager", "dtype": "float32"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_ray_start_up_and_actor_scaling(benchmark, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    torch.manual_seed(0)
    checkpoint = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), checkpoint)

    started = time.perf_counter()
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    tlaudit.remove_head(model)
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in sorted(folder.iterdir())])
    FeatureExtractor(model, weights={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, **OPTIONS).extract(pixels, batch_size=16)
    local = time.perf_counter() - started

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    init = time.perf_counter() - started
    timings = {}
    try:
        for actors in (1, 2):
            started = time.perf_counter()
            ds = ray.data.read_images(str(folder), include_paths=True, num_cpus=0.25)
            ds = ds.map_batches(
                RayExtractor,
                fn_constructor_kwargs={"build": "resnet18", "checkpoint": str(checkpoint), **OPTIONS},
                batch_size=16,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=0.5,
            )
            ds.write_parquet(str(tmp_path / f"out{actors}"), ray_remote_args={"num_cpus": 0.25})
            timings[actors] = time.perf_counter() - started
    finally:
        ray.shutdown()
    print(
        f"\nlocal (build + extract {IMAGES} images): {local:.1f} s; ray.init: {init:.1f} s; "
        f"pipeline with 1 actor: {timings[1]:.1f} s; with 2 actors: {timings[2]:.1f} s"
    )
    benchmark.extra_info.update({"local_s": local, "ray_init_s": init, "one_actor_s": timings[1], "two_actors_s": timings[2]})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
