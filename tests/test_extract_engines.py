"""Tests for tlaudit.extract.engines: the registry, each engine's features against fp32, and ``auto``.

OpenVINO and ONNX Runtime run for real (the ``test`` extra installs them) on a ResNet-18 at 32 px.
TensorRT needs CUDA and torch-tensorrt: its CPU-side logic (availability, the error, the precisions,
``auto`` passing it over with the reason) is tested here; ``benchmarks/gpu.sh`` runs it on a GPU.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision

import tlaudit
from tests.support.helpers import TinyCNN
from tlaudit.extract import FeatureExtractor
from tlaudit.extract.config import ExtractConfig, with_engine
from tlaudit.extract.engines import (
    ENGINE_NAMES,
    ENGINES,
    Engine,
    EngineUnavailable,
    available_engines,
    get_engine,
)
from tlaudit.extract.engines._interface import register
from tlaudit.extract.engines.auto import MIN_COSINE
from tlaudit.extract.engines.tensorrt import enabled_precisions

NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    tlaudit.remove_head(model)
    return model


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def fp32(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(x)


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).min())


# -- the registry ----------------------------------------------------------------------------------


def test_every_engine_is_registered_with_a_summary_and_auto_comes_first():
    assert list(ENGINES) == ["eager", "torch-compile", "openvino", "onnxruntime", "tensorrt"]
    assert ENGINE_NAMES[0] == "auto"
    for name, engine in ENGINES.items():
        assert engine.name == name and engine.summary and engine.devices
        assert name == name.lower() and " " not in name


def test_a_name_is_registered_once():
    class Again(Engine):
        name = "eager"

    with pytest.raises(ValueError, match=r"engine name must be unique and non-empty: 'eager' \(Again\)"):
        register(Again)


def test_unknown_engine_names_the_closest():
    with pytest.raises(ValueError, match=r"unknown engine: 'openvno' \(engine\); expected auto or one of .*closest: openvino"):
        get_engine("openvno")
    with pytest.raises(ValueError, match=r"unknown engine: 'openvno' \(engine\)"):
        FeatureExtractor(TinyCNN(), engine="openvno")


def test_availability_says_why_not():
    here = available_engines("cpu")
    assert here["eager"] is None and here["openvino"] is None and here["onnxruntime"] is None  # installed by the test extra
    assert here["tensorrt"] == "runs on cuda only, not cpu"
    assert available_engines("cuda")["openvino"] == "runs on cpu only, not cuda"


def test_tensorrt_without_the_package_says_how_to_install_it():
    import importlib.util

    why = get_engine("tensorrt").unavailable("cuda")
    if importlib.util.find_spec("torch_tensorrt") is None:
        assert why == "torch-tensorrt is not installed (pip install torch-tensorrt)"
    else:
        assert why is None
    with pytest.raises(EngineUnavailable, match=r"engine 'tensorrt' cannot run: runs on cuda only, not cpu \(engine\)"):
        FeatureExtractor(TinyCNN(), engine="tensorrt")
    assert enabled_precisions("float32") == ("float32",)
    assert enabled_precisions("float16") == ("float32", "float16")


def test_a_converting_engine_takes_layout_and_folding_and_keeps_only_dtypes_it_computes():
    base = ExtractConfig("cpu", dtype="bfloat16", channels_last=True, fold_batchnorm=True)
    ov = with_engine(base, "openvino")
    assert (ov.dtype, ov.channels_last, ov.fold_batchnorm, ov.describe()) == ("bfloat16", False, False, "openvino+bf16")
    ort = with_engine(base, "onnxruntime")
    assert (ort.dtype, dict(ort.reasons)["dtype"]) == ("float32", "onnxruntime computes float32 only")
    compiled = with_engine(base, "torch-compile")
    assert compiled.compile and compiled.channels_last and compiled.to_dict()["engine"] == "torch-compile"


# -- the engines on a real model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(resnet, batch):
    return {name: FeatureExtractor(resnet, engine=name, weights=NORM) for name in ("openvino", "onnxruntime")}


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_converting_engines_keep_the_fp32_features(resnet, batch, converted, name):
    fx = converted[name]
    out = fx(batch)
    assert out.dtype == torch.float32 and out.shape == (4, 512)
    assert min_cosine(out, fp32(resnet, batch)) >= 0.999
    assert fx.config.engine == name and fx._built is not None and fx._built.build_seconds > 0
    more = torch.cat([batch, batch, batch[:1]])  # 9 rows: two full batches of the built size and a padded one
    assert min_cosine(fx(more), fp32(resnet, more)) >= 0.999
    assert fx(batch[:3]).shape == (3, 512)
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)  # uint8 normalized on the fly
    assert (
        min_cosine(fx(pixels), fp32(resnet, tlaudit.extract.normalize_uint8(pixels, torch.tensor(NORM["mean"]), torch.tensor(NORM["std"]))))
        >= 0.999
    )


def test_a_converted_engine_follows_changed_weights(batch):
    torch.manual_seed(0)
    model = TinyCNN()
    tlaudit.remove_head(model)
    fx = FeatureExtractor(model, engine="onnxruntime")
    before = fx(batch)
    with torch.no_grad():
        model.layer2[1].weight.mul_(2)
    after = fx(batch)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, fp32(model, batch), rtol=1e-4, atol=1e-5)


# -- auto ------------------------------------------------------------------------------------------


class _Permuted(Engine):
    """A deliberately wrong engine: the features negated (per-sample cosine -1)."""

    name = "test-permuted"
    summary = "features negated"
    devices = ("cpu",)

    def build(self, backbone, example, config):
        def run(x):
            return -backbone(x)

        return run


@pytest.fixture
def permuted_engine():
    register(_Permuted)
    try:
        yield ENGINES["test-permuted"]
    finally:
        del ENGINES["test-permuted"]


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    model = TinyCNN(width=16)
    tlaudit.remove_head(model)
    return model


def test_auto_keeps_the_fastest_engine_whose_features_match(tiny, batch, tmp_path, permuted_engine):
    cache = tmp_path / "choices.json"
    fx = FeatureExtractor(tiny, engine="auto", weights=NORM)
    choice = fx.select_engine(batch, candidates=["eager", "openvino", "test-permuted", "tensorrt"], cache=cache, rounds=2)
    by_name = {m.engine: m for m in choice.measurements}
    assert by_name["tensorrt"].kept is False and by_name["tensorrt"].why == "runs on cuda only, not cpu"
    assert by_name["test-permuted"].kept is False and by_name["test-permuted"].cosine < MIN_COSINE
    assert "cosine" in by_name["test-permuted"].why
    kept = [m for m in choice.measurements if m.kept]
    assert {m.engine for m in kept} == {"eager", "openvino"}
    fastest = max(kept, key=lambda m: m.images_per_second)
    assert choice.engine == fastest.engine and fx.config.engine == fastest.engine
    assert choice.reason.startswith(f"fastest of 2 engine(s) that keep the features: {fastest.engine}")
    assert "test-permuted (cosine" in choice.reason and "tensorrt (runs on cuda only" in choice.reason
    assert min_cosine(fx(batch), fp32(tiny, batch)) >= MIN_COSINE
    assert json.loads(cache.read_text())  # remembered
    again = FeatureExtractor(tiny, engine="auto", weights=NORM)
    cached = again.select_engine(batch, candidates=["eager", "openvino", "test-permuted", "tensorrt"], cache=cache)
    assert cached.cached and cached.engine == choice.engine and cached.reason.endswith("(cached measurement)")


def test_auto_chooses_on_the_first_batch_by_default(tiny, batch, monkeypatch, tmp_path):
    monkeypatch.setenv("TLAUDIT_CACHE_DIR", str(tmp_path))
    model = tiny
    fx = FeatureExtractor(model, engine="auto")
    assert fx.choice is None
    out = fx.extract(batch, batch_size=2).features
    assert fx.choice is not None and fx.choice.engine in ("eager", "openvino", "onnxruntime")
    assert {m.engine for m in fx.choice.measurements} == {"eager", "openvino", "onnxruntime"}  # torch-compile only on request
    assert (tmp_path / "engine-choices.json").exists()
    torch.testing.assert_close(out, fp32(model, batch), rtol=2e-2, atol=2e-2)


def test_auto_fails_clearly_when_nothing_keeps_the_features(batch, permuted_engine):
    fx = FeatureExtractor(TinyCNN(), engine="auto")
    with pytest.raises(EngineUnavailable, match=r"no engine kept the features on cpu: test-permuted: cosine .* < 0.99"):
        fx.select_engine(batch, candidates=["test-permuted"], cache=False)
    with pytest.raises(ValueError, match=r"rounds must be a positive int: 0 \(rounds\)"):
        fx.select_engine(batch, rounds=0, cache=False)
    with pytest.raises(ValueError, match=r"select_engine needs engine='auto'; this extractor runs 'eager' \(engine\)"):
        FeatureExtractor(TinyCNN()).select_engine(batch)


def test_torch_compile_engine_is_the_compiled_configuration():
    fx = FeatureExtractor(TinyCNN(), engine="torch-compile")
    assert fx.config.compile and fx.config.engine == "torch-compile" and "compile(default)" in fx.config.describe()
