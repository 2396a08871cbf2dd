"""Tests for the bench's mode registry, the engines as modes, and the end-to-end pipeline bench.

No test asserts a speed (the targets live in benchmarks/); these check what is measured and shown:
every engine as a mode with its cosine to fp32, the help generated from the registry, the
end-to-end table with where the time goes. A small real CNN (tests.support.helpers:TinyCNN) keeps the
conversions to a second.
"""

from __future__ import annotations

import json

import pytest
import torch

import tlaudit
from tests.extract.images import write_images
from tests.support.helpers import TinyCNN
from tlaudit.bench import MIN_COSINE, run_bench
from tlaudit.bench.names import (
    MODE_REGISTRY,
    MODES,
    Mode,
    default_modes,
    engine_modes,
    register_mode,
)
from tlaudit.bench.pipeline import run_pipeline_bench
from tlaudit.cli import ExitCode, build_parser, main
from tlaudit.extract.engines import ENGINES
from tlaudit.normalization import Normalization

TINY = "tests.support.helpers:TinyCNN"
ARGS = ["bench", TINY, "--image-size", "16", "--iters", "1", "--warmup", "1", "--batch-size", "2"]


def test_every_mode_is_declared_once_and_every_converting_engine_is_a_mode():
    assert default_modes() == ("naive", "baseline", "optimized")
    assert {n for n, e in ENGINES.items() if not e.native} <= set(MODES) and MODES[-1] == "auto"
    for mode in MODE_REGISTRY.values():
        assert mode.summary and (mode.plain is None) == (mode.engine is not None)
    with pytest.raises(ValueError, match=r"mode registered twice: 'naive'"):
        register_mode(Mode("naive", "again"))
    assert engine_modes("cpu") == ("baseline", "optimized", "openvino", "onnxruntime", "auto")


def test_the_help_lists_every_mode_with_its_summary(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for mode in MODE_REGISTRY.values():
        assert f"{mode.name}: {' '.join(mode.summary.split())}" in text


def test_engines_as_modes_with_their_cosine(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main([*ARGS, "--modes", "engines", "--format", "json", "--output", str(out)]) == ExitCode.OK
    data = json.loads(out.read_text())
    by_mode = {r["mode"]: r for r in data["results"]}
    assert list(by_mode) == ["baseline", "optimized", "openvino", "onnxruntime", "auto"]
    for r in data["results"]:
        assert r["cosine_vs_fp32"] >= MIN_COSINE and r["images_per_second"] > 0
    assert by_mode["openvino"]["config"]["engine"] == "openvino" and by_mode["openvino"]["compile_seconds"] > 0
    assert by_mode["onnxruntime"]["config"]["dtype"] == "float32"
    auto = by_mode["auto"]["config"]["auto"]
    assert auto["engine"] == by_mode["auto"]["config"]["engine"]
    assert {m["engine"] for m in auto["measurements"]} == {"eager", "openvino", "onnxruntime"}
    assert "modes baseline,optimized,openvino,onnxruntime,auto" in capsys.readouterr().err


def test_the_table_names_the_engine_of_each_mode():
    torch.manual_seed(0)
    model = TinyCNN()
    tlaudit.remove_head(model)
    report = run_bench(model, modes=["baseline", "onnxruntime"], image_size=16, batch_sizes=[2], iters=1, warmup=1)
    rows = [line for line in str(report).splitlines() if line.startswith("| onnxruntime")]
    assert len(rows) == 1 and rows[0].rstrip("| ").endswith("onnxruntime")


def test_an_engine_that_cannot_run_here_exits_2_with_the_reason(capsys):
    assert main([*ARGS, "--modes", "baseline,tensorrt"]) == ExitCode.SETUP_ERROR
    assert "engine 'tensorrt' cannot run: runs on cuda only, not cpu (engine)" in capsys.readouterr().err


def test_an_unknown_mode_lists_the_groups(capsys):
    assert main([*ARGS, "--modes", "fastest"]) == ExitCode.SETUP_ERROR
    assert "unknown mode: 'fastest'; expected a comma-separated list of naive" in capsys.readouterr().err


# -- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    write_images(root, ("a", "b"), per_class=4, size=(40, 48))
    return root


def test_end_to_end_compares_pipelines_and_says_where_time_goes(jpegs):
    torch.manual_seed(0)
    model = TinyCNN()
    tlaudit.remove_head(model)
    norm = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_size=16, resize_size=18)
    report = run_pipeline_bench(str(jpegs), model, normalization=norm, workers=[0, 1], batch_size=4, engine="eager")
    assert [(r.pipeline, r.workers) for r in report.results] == [("plain", 0), ("tlaudit", 0), ("plain", 1), ("tlaudit", 1)]
    for r in report.results:
        assert r.images_per_second > 0 and r.loader_images_per_second > 0 and r.network_images_per_second > 0
        assert r.bound in ("decode", "network")
        assert r.speedup_vs_plain == (
            1.0
            if r.pipeline == "plain"
            else pytest.approx(
                r.images_per_second / next(p.images_per_second for p in report.results if p.pipeline == "plain" and p.workers == r.workers)
            )
        )
    assert report.images == 8 and report.cosine >= 0.99  # the same features, decoded two ways
    table = str(report)
    assert "8 JPEG files -> features, batch 4, resize 18, crop 16" in table
    assert "| decode only img/s " in table and "| network only img/s " in table
    with pytest.raises(ValueError, match=r"workers must be integers >= 0: \[-1\] \(workers\)"):
        run_pipeline_bench(str(jpegs), model, normalization=norm, workers=[-1])
    with pytest.raises(ValueError, match=r"the end-to-end bench needs resize and crop sizes"):
        run_pipeline_bench(str(jpegs), model, normalization=Normalization(mean=(0.5,) * 3, std=(0.5,) * 3))


def test_cli_images_runs_end_to_end(jpegs, capsys, tmp_path):
    argv = ["bench", TINY, "--images", str(jpegs), "--image-size", "16", "--batch-size", "4", "--workers", "0", "--engine", "eager"]
    assert main(argv) == ExitCode.OK
    captured = capsys.readouterr()
    assert "| plain " in captured.out and "| tlaudit " in captured.out
    assert "fastest: " in captured.err and "end to end" in captured.err
    assert main([*argv[:3], str(tmp_path / "none"), *argv[4:]]) == ExitCode.SETUP_ERROR
    assert "no such folder: " in capsys.readouterr().err
