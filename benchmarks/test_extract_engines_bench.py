"""Engines side by side on this machine: the automatic choice against the fastest engine in the same run.

Target (issue 22): ``engine="auto"`` within 5% of the fastest engine measured in the same run, on a
CPU with native bf16 (AVX-512 BF16 or AMX: chosen by ``torch.cpu.get_capabilities()``). Without native
bf16 the figures are reported with the FLOP ceiling, not asserted. ResNet-18, batch 16, 224 px: each
run takes about a minute on two cores. Run:

    .venv/bin/python -m pytest benchmarks/test_extract_engines_bench.py -s

``test_engines_side_by_side`` measures every mode interleaved in one process (``run_bench``: medians
of REPEATS rounds, each timing every mode in turn), which is what the ratio is computed from; the
per-engine tests record each engine with pytest-benchmark (``--benchmark-json`` keeps them).
"""

from __future__ import annotations

import pytest
import torch
import torchvision

import tlaudit
from tlaudit.bench import MIN_COSINE, run_bench
from tlaudit.bench.names import engine_modes
from tlaudit.extract import FeatureExtractor, device_capabilities

BATCH = 16
SIZE = 224
REPEATS = 5
ITERS = 2
AUTO_VS_FASTEST = 0.95


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    tlaudit.remove_head(model)
    return model


def test_engines_side_by_side(resnet18):
    modes = engine_modes("cpu")
    report = run_bench(resnet18, name="resnet18", batch_sizes=[BATCH], image_size=SIZE, iters=ITERS, repeats=REPEATS, warmup=2, modes=modes)
    print("\n" + report.to_table())
    by_mode = {r.mode: r for r in report.results}
    assert all(r.cosine_vs_fp32 >= MIN_COSINE for r in report.results), report.to_table()
    engines = {m: r for m, r in by_mode.items() if m not in ("auto", "baseline")}
    fastest = max(engines.values(), key=lambda r: r.images_per_second)
    auto = by_mode["auto"]
    ratio = auto.images_per_second / fastest.images_per_second
    print(
        f"auto chose {auto.config['engine']}: {auto.images_per_second:,.1f} img/s = {ratio:.2f}x the fastest "
        f"({fastest.mode}, {fastest.images_per_second:,.1f} img/s); {auto.speedup_vs_baseline:.2f}x baseline"
    )
    ceiling = report.ceiling_flops_per_second["bfloat16" if device_capabilities("cpu").native_bf16 else "float32"]
    for r in report.results:
        print(f"{r.mode}: {r.flops_per_second / 1e9:,.0f} GFLOP/s = {r.flops_per_second / ceiling:.1%} of the ceiling")
    if not device_capabilities("cpu").native_bf16:
        pytest.skip(f"the 5% target is set for CPUs with native bf16; measured auto {ratio:.2f}x the fastest")
    assert ratio >= AUTO_VS_FASTEST, report.to_table()


@pytest.mark.parametrize("engine", ["eager", "openvino", "onnxruntime", "auto"])
def test_engine(benchmark, resnet18, engine, tmp_path, monkeypatch):
    monkeypatch.setenv("TLAUDIT_CACHE_DIR", str(tmp_path))
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    fx = FeatureExtractor(resnet18, engine=engine)
    fx(x)  # conversion, or the auto measurement, before the timing
    benchmark.pedantic(fx, args=(x,), rounds=5, warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "engine": fx.config.engine,
            "config": fx.config.describe(),
            "batch_size": BATCH,
            "images_per_second": BATCH / benchmark.stats.stats.median,
        }
    )
