"""Tests for tlaudit.bench: the modes side by side, the sanity check, the renderings and ``tlaudit bench``.

Timings on a shared CPU prove nothing in a unit test, so no test asserts a speed; the targets live in
benchmarks/test_extract_bench.py. These tests check what is measured and reported: every mode on
the same inputs, cosine to the fp32 features, the FLOP count against torchvision's published figure,
the ceiling that flags impossible rates, the JSON keys, the plot, and every bad option.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torchvision

import tlaudit
from tlaudit.bench import MIN_COSINE, flops_per_image, peak_flops, plausible, run_bench
from tlaudit.bench.environment import gpu_peak_flops
from tlaudit.cli import ExitCode, main
from tlaudit.extract import choose_config

FAST = {"image_size": 32, "batch_sizes": [2], "iters": 1, "warmup": 1, "repeats": 3}


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    tlaudit.remove_head(model)
    return model


@pytest.fixture(scope="module")
def report(backbone):
    return run_bench(backbone, name="resnet18", modes=["naive", "baseline", "optimized", "channels-last"], **FAST)


def test_every_mode_is_measured_with_its_figures(report):
    assert [r.mode for r in report.results] == ["naive", "baseline", "optimized", "channels-last"]
    for r in report.results:
        assert r.repeats == 3 and r.spread[0] <= r.images_per_second <= r.spread[1]
        assert r.cosine_vs_fp32 >= MIN_COSINE and r.plausible
        assert r.peak_memory_bytes is not None and r.peak_memory_bytes > 0
        assert r.flops_per_second == pytest.approx(r.images_per_second * report.flops_per_image)
        assert r.aggregate_images_per_second == r.images_per_second  # one process
    by_mode = {r.mode: r for r in report.results}
    assert by_mode["baseline"].speedup_vs_baseline == 1.0
    assert by_mode["baseline"].cosine_vs_fp32 == pytest.approx(1.0, abs=1e-6)  # the reference itself
    assert by_mode["naive"].config["grad"] is True and by_mode["baseline"].config["grad"] is False
    assert by_mode["optimized"].config == choose_config("cpu").to_dict() | {"reasons": by_mode["optimized"].config["reasons"]}
    assert by_mode["channels-last"].config["channels_last"] and not by_mode["channels-last"].config["fold_batchnorm"]
    assert report.warnings == ()


def test_json_has_the_documented_keys(report):
    data = json.loads(report.to_json())
    assert {"model", "device", "environment", "results"} <= set(data)
    assert data["model"] == "resnet18" and data["device"] == "cpu"
    for key in ("torch", "cuda", "device_name", "threads", "cpu", "flags"):
        assert key in data["environment"]
    for result in data["results"]:
        assert {"mode", "images_per_second", "speedup_vs_baseline", "cosine_vs_fp32", "peak_memory_bytes", "config"} <= set(result)


def test_table_lists_each_mode(report):
    table = str(report)
    assert table.splitlines()[0].startswith("resnet18 on cpu (")
    assert "| mode " in table and "| vs baseline " in table
    for mode in ("naive", "baseline", "optimized", "channels-last"):
        assert f"| {mode} " in table


def test_flops_match_torchvisions_published_count(backbone):
    published = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["_ops"]  # GFLOPS, counted as multiply-adds
    flops = flops_per_image(backbone, torch.zeros(2, 3, 224, 224))
    assert flops / 2 / 1e9 == pytest.approx(published, rel=0.01)


def test_an_impossible_rate_is_flagged(backbone):
    result = run_bench(backbone, modes=["baseline"], ceiling=1e6, **FAST)  # 1 MFLOP/s: every real rate exceeds it
    assert result.results[0].plausible is False
    assert len(result.warnings) == 1
    assert "exceeds the device's ceiling of 0.0 TFLOP/s: a measurement error" in result.warnings[0]
    assert "IMPOSSIBLE" in result.to_table()


def test_ceilings_bound_the_device():
    assert plausible(100.0, 4e9, 1e12) and not plausible(1000.0, 4e9, 1e12)
    assert gpu_peak_flops("NVIDIA H200", "bfloat16") == 989e12
    assert gpu_peak_flops("NVIDIA H200", "float32", tf32=True) == 494e12
    assert gpu_peak_flops("Some Future GPU") == 2.5e15
    caps = torch.cpu.get_capabilities()
    assert peak_flops("cpu", "bfloat16") >= peak_flops("cpu") >= caps["num_physical_cores"] * 3e9 * 32


def test_uint8_host_input_goes_through_the_loader_path(backbone):
    result = run_bench(backbone, modes=["baseline", "optimized"], input="uint8-host", **FAST)
    assert result.input == "uint8-host"
    assert all(r.cosine_vs_fp32 >= MIN_COSINE for r in result.results)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modes": ["fast"]}, r"unknown mode: 'fast' \(modes\); expected naive, baseline, optimized"),
        ({"modes": []}, r"unknown mode: none given \(modes\)"),
        ({"input": "jpeg"}, r"unknown input: 'jpeg' \(input\); expected synthetic, uint8-host"),
        ({"repeats": 2}, r"repeats must be an int >= 3 \(median and spread need three\): 2 \(repeats\)"),
        ({"iters": 0}, r"iters must be a positive int: 0 \(iters\)"),
        ({"batch_sizes": [8, -1]}, r"batch_size must be a positive int: -1 \(batch_size\)"),
    ],
)
def test_bad_arguments_are_named(backbone, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_bench(backbone, **{**FAST, **kwargs})


# -- the command -----------------------------------------------------------------------------------

ARGS = ["bench", "resnet18", "--image-size", "32", "--iters", "1", "--warmup", "1"]


def test_cli_json_sweeps_batch_sizes(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [*ARGS, "--batch-size", "1,2", "--format", "json", "--output", str(out), "--no-channels-last"]
    assert main(argv) == ExitCode.OK
    data = json.loads(out.read_text())
    assert [(r["mode"], r["batch_size"]) for r in data["results"]] == [(m, b) for b in (1, 2) for m in ("naive", "baseline", "optimized")]
    assert all(r["config"]["channels_last"] is False for r in data["results"])
    assert "fastest: " in capsys.readouterr().err


def test_cli_plot_draws_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    assert main([*ARGS, "--batch-size", "1", "2", "--modes", "baseline,optimized", "--plot", str(png)]) == ExitCode.OK
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| optimized " in capsys.readouterr().out


def test_cli_plot_without_matplotlib_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main([*ARGS, "--plot", str(tmp_path / "x.png")]) == ExitCode.SETUP_ERROR
    assert "--plot needs matplotlib" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "resnet5O"], "unknown torchvision model: 'resnet5O' (MODEL); closest: resnet50"),
        (["bench", "resnet18", "--repeats", "2"], "argument --repeats: expected an integer >= 3, got '2'"),
        (["bench", "resnet18", "--batch-size", "0"], "argument --batch-size: expected positive integers separated by commas, got '0'"),
        (["bench", "resnet18", "--modes", "fast"], "argument --modes: unknown mode: 'fast'; expected a comma-separated list of naive"),
        (["bench", "resnet18", "--dtype", "int8"], "argument --dtype: invalid choice: 'int8'"),
    ],
)
def test_cli_bad_options_exit_2_with_the_reason(argv, message, capsys):
    assert main(argv) == ExitCode.SETUP_ERROR
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_cuda_without_a_gpu(capsys):
    assert main(["bench", "resnet18", "--device", "cuda"]) == ExitCode.SETUP_ERROR
    assert "tlaudit bench: error: CUDA is not available: cuda (--device)" in capsys.readouterr().err
