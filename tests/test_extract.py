"""Tests for tlaudit.extract: FeatureExtractor, its configuration, inputs, sharding and storage.

Real torchvision and timm models at 32 px. GPU-only settings are tested through their CPU-visible
parts: the configuration chosen for a given compute capability, the backend flags set and restored,
the uint8 path on the CPU. Distributed extraction runs two gloo processes under torchrun. Engines:
tests/test_extract_engines.py; Ray: tests/test_extract_ray.py; folders and the CLI: tests/test_extract_job.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, TensorDataset

import tlaudit
from tests.support.helpers import TinyCNN
from tlaudit.extract import Capabilities, ExtractConfig, FeatureExtractor, choose_config, load_features, shard_range
from tlaudit.extract.config import backend_flags, device_capabilities, with_overrides
from tlaudit.extract.inputs import batches, normalize_uint8, prefetch

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WEIGHTS = {"mean": list(MEAN), "std": list(STD)}


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    tlaudit.remove_head(model)
    return model


def reference(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with tlaudit.inference(model):
        return model(x)


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).min())


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caps", "dtype", "tf32", "compile_"),
    [
        (Capabilities("cpu", native_bf16=True), "bfloat16", False, False),
        (Capabilities("cpu", native_bf16=False), "float32", False, False),
        (Capabilities("cuda", cuda_capability=(9, 0), has_triton=True), "bfloat16", True, True),
        (Capabilities("cuda", cuda_capability=(7, 5), has_triton=True), "float16", False, True),
        (Capabilities("cuda", cuda_capability=(6, 1), has_triton=False), "float32", False, False),
    ],
)
def test_choose_config_follows_the_device(caps, dtype, tf32, compile_):
    cfg = choose_config(caps.device_type, caps)
    assert (cfg.dtype, cfg.tf32, cfg.compile) == (dtype, tf32, compile_)
    assert cfg.channels_last and cfg.fold_batchnorm
    assert cfg.cudnn_benchmark is (caps.device_type == "cuda")
    assert "dtype" in dict(cfg.reasons)
    assert cfg.cuda_graphs is (compile_ and caps.device_type == "cuda")  # reduce-overhead replays CUDA graphs


def test_overrides_replace_choices_and_say_so():
    cfg = choose_config("cpu", Capabilities("cpu", native_bf16=True), dtype=torch.float32, channels_last=False, compile=None)
    assert (cfg.dtype, cfg.channels_last, cfg.compile) == ("float32", False, False)
    assert dict(cfg.reasons)["dtype"] == "set by the caller"
    again = with_overrides(cfg, compile=True, compile_mode="max-autotune")
    assert (again.compile, again.compile_mode, again.describe()) == (True, "max-autotune", "fold-bn+compile(max-autotune)")
    assert again.to_dict()["reasons"]["compile"] == "set by the caller"


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"dtype": "int8"}, ValueError, r"unknown dtype: 'int8' \(dtype\); expected one of float32, bfloat16, float16"),
        ({"compile_mode": "fast"}, ValueError, r"unknown compile mode: 'fast' \(compile_mode\)"),
        ({"channels_last": "yes"}, TypeError, r"channels_last must be True, False or None \(automatic\): 'yes' \(channels_last\)"),
        ({"amp": True}, TypeError, r"unknown configuration option: 'amp' \(FeatureExtractor\); expected one of dtype"),
    ],
)
def test_bad_overrides_name_the_option(overrides, error, match):
    with pytest.raises(error, match=match):
        choose_config("cpu", Capabilities("cpu"), **overrides)


def test_device_capabilities_reads_the_cpu():
    caps = torch.cpu.get_capabilities()
    assert device_capabilities("cpu").native_bf16 is bool(caps["avx512_bf16"] or caps["amx_bf16"])


def test_backend_flags_are_set_for_cuda_and_restored():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (cudnn.benchmark, matmul.fp32_precision, cudnn.conv.fp32_precision)
    with backend_flags(ExtractConfig(device="cuda:0", cudnn_benchmark=True, tf32=True)):
        assert (cudnn.benchmark, matmul.fp32_precision, cudnn.conv.fp32_precision) == (True, "tf32", "tf32")
    assert (cudnn.benchmark, matmul.fp32_precision, cudnn.conv.fp32_precision) == before
    with backend_flags(ExtractConfig(device="cpu", cudnn_benchmark=True)):
        assert cudnn.benchmark == before[0]  # CPU runs leave the CUDA flags alone


# -- the extractor ---------------------------------------------------------------------------------


def test_features_match_fp32_and_the_model_is_left_alone(resnet):
    resnet.train()
    resnet.layer1.eval()
    flags = [m.training for m in resnet.modules()]
    params = {n: (p.data_ptr(), p.clone()) for n, p in resnet.state_dict().items()}
    x = torch.randn(3, 3, 32, 32)
    fx = FeatureExtractor(resnet, dtype="float32")
    assert fx.config.channels_last and fx.config.fold_batchnorm
    out = fx(x)
    assert out.shape == (3, 512) and out.dtype == torch.float32
    assert [m.training for m in resnet.modules()] == flags
    for name, tensor in resnet.state_dict().items():
        assert tensor.data_ptr() == params[name][0] and torch.equal(tensor, params[name][1]), name
    assert resnet.conv1.weight.is_contiguous()  # the layout changed on the extractor's copy only
    assert min_cosine(out, reference(resnet, x)) > 0.9999


def test_the_model_itself_runs_when_no_copy_is_needed(resnet):
    resnet.train()
    fx = FeatureExtractor(resnet, channels_last=False, fold_batchnorm=False, dtype="float32")
    assert fx._prepared is None
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(fx(x), reference(resnet, x), atol=1e-5)
    assert all(m.training for m in resnet.modules())


def test_the_copy_follows_changed_weights(resnet):
    fx = FeatureExtractor(resnet, dtype="float32")
    x = torch.randn(2, 3, 32, 32)
    before = fx(x)
    with torch.no_grad():
        resnet.layer4[1].conv2.weight.mul_(-1.0)
    try:
        after = fx(x)
        assert not torch.allclose(before, after)
        assert min_cosine(after, reference(resnet, x)) > 0.9999
    finally:
        with torch.no_grad():
            resnet.layer4[1].conv2.weight.mul_(-1.0)


def test_bf16_autocast_keeps_the_features(resnet):
    x = torch.randn(2, 3, 32, 32)
    fx = FeatureExtractor(resnet, dtype="bfloat16")
    out = fx(x)
    assert out.dtype == torch.float32
    assert min_cosine(out, reference(resnet, x)) >= 0.99


class _Branchy(torch.nn.Module):
    """Conv + BatchNorm with data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (TinyCNN(), "eval-mode BatchNorm folded"),
        (torch.nn.Conv2d(3, 4, 3), "no BatchNorm layer to fold"),
        (_Branchy(), "torch.fx cannot trace the model: TraceError"),
    ],
)
def test_the_config_says_whether_batchnorm_was_folded(model, reason):
    fx = FeatureExtractor(model, dtype="float32")
    assert fx.config.fold_batchnorm is (reason == "eval-mode BatchNorm folded")
    assert dict(fx.config.reasons)["fold_batchnorm"].startswith(reason)
    x = torch.randn(2, 3, 8, 8)
    assert min_cosine(fx(x), reference(model, x)) > 0.9999


def test_node_gives_that_nodes_output_and_keeps_training_flags():
    model = torchvision.models.resnet18().train()
    model.layer2.eval()
    flags = [m.training for m in model.modules()]
    fx = FeatureExtractor(model, "layer3", dtype="float32")
    assert fx(torch.randn(2, 3, 32, 32)).shape == (2, 256, 2, 2)
    assert [m.training for m in model.modules()] == flags


def test_unknown_node_names_the_closest_and_the_helper():
    with pytest.raises(ValueError, match=r"no graph node named: 'layer9' \(node\); closest: .*layer.*get_graph_node_names"):
        FeatureExtractor(torchvision.models.resnet18(), "layer9")


def test_timm_model_gives_pooled_pre_logits():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    fx = FeatureExtractor(model, dtype="float32")
    assert fx.normalization is not None and fx.normalization.mean == pytest.approx(MEAN)  # from pretrained_cfg
    with tlaudit.inference(model):
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    assert min_cosine(fx(x), expected) > 0.9999


def test_uint8_is_normalized_on_the_device_like_the_float_pipeline(resnet):
    pixels = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    floats = (pixels.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(normalize_uint8(pixels, torch.tensor(MEAN), torch.tensor(STD)), floats, atol=1e-5)
    fx = FeatureExtractor(resnet, weights="ResNet18_Weights.IMAGENET1K_V1", dtype="float32")
    assert min_cosine(fx(pixels), reference(resnet, floats)) > 0.9999


def test_uint8_without_weights_says_what_is_missing(resnet):
    with pytest.raises(ValueError, match=r"uint8 images need the weights' mean and std: weights=None \(FeatureExtractor\)"):
        FeatureExtractor(resnet)(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: FeatureExtractor("resnet18"), TypeError, r"model must be a torch.nn.Module, got str \(model\)"),
        (lambda: FeatureExtractor(TinyCNN(), 3), TypeError, r"node must be a graph node name, got int: 3 \(node\)"),
        (lambda: FeatureExtractor(TinyCNN(), config={}), TypeError, r"config must be an ExtractConfig, got dict \(config\)"),
        (
            lambda: FeatureExtractor(TinyCNN())(torch.zeros(1, 3, 4, 4, dtype=torch.int32)),
            TypeError,
            r"images must be uint8 or floating point, got torch.int32 \(images\)",
        ),
        (
            lambda: FeatureExtractor(TinyCNN()).extract(torch.zeros(2, 3, 4, 4), batch_size=0),
            ValueError,
            r"batch_size must be a positive int: 0 \(batch_size\)",
        ),
        (
            lambda: FeatureExtractor(TinyCNN()).extract(torch.zeros(2, 3, 4, 4), rank=0),
            ValueError,
            r"pass both rank and world_size or neither: rank=0, world_size=None \(extract\)",
        ),
        (
            lambda: FeatureExtractor(TinyCNN()).extract(torch.zeros(2, 3)),
            ValueError,
            r"an image tensor must be \(N, C, H, W\): shape \(2, 3\) \(data\)",
        ),
        (lambda: FeatureExtractor(TinyCNN()).extract(iter([])), TypeError, r"cannot extract from list_iterator: it has no length \(data\)"),
        (
            lambda: normalize_uint8(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.zeros(3), torch.ones(3)),
            ValueError,
            r"uint8 images must be \(N, C, H, W\) with C = 3 channels: shape \(1, 1, 2, 2\) \(images\)",
        ),
        (lambda: shard_range(4, 2, 2), ValueError, r"rank must be in \[0, world_size\): rank=2, world_size=2 \(distributed\)"),
    ],
)
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_compiled_extraction_pads_the_last_batch():
    torch.manual_seed(0)
    model = TinyCNN()
    model.fc = torch.nn.Identity()
    fx = FeatureExtractor(model, compile=True, dtype="float32")
    x = torch.randn(5, 3, 8, 8)
    out = fx.extract(x, batch_size=2)  # batches of 2, 2, 1: the last is padded to 2, one compiled shape
    assert out.indices.tolist() == [0, 1, 2, 3, 4]
    assert min_cosine(out.features, reference(model, x)) > 0.9999


# -- inputs, shards, storage -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "world"), [(0, 2), (1, 3), (10, 3), (11, 2), (7, 7)])
def test_shards_cover_every_sample_exactly_once(n, world):
    taken = [i for rank in range(world) for i in shard_range(n, rank, world)]
    assert taken == list(range(n))
    sizes = [len(shard_range(n, rank, world)) for rank in range(world)]
    assert max(sizes) - min(sizes) <= 1  # no padding, no rank with two extra samples


def test_dataset_and_loader_inputs_keep_their_indices(resnet):
    x = torch.randn(7, 3, 32, 32)
    fx = FeatureExtractor(resnet, dtype="float32")
    expected = reference(resnet, x)
    for data in (TensorDataset(x, torch.arange(7)), DataLoader(TensorDataset(x), batch_size=3)):
        out = fx.extract(data, batch_size=4, rank=1, world_size=2)
        assert out.indices.tolist() == [3, 4, 5, 6]
        assert min_cosine(out.features, expected[3:]) > 0.9999


def test_a_shuffled_loader_is_refused():
    loader = DataLoader(TensorDataset(torch.zeros(4, 3, 2, 2)), batch_size=2, shuffle=True)
    with pytest.raises(ValueError, match=r"cannot tell sample indices from this DataLoader: sampler RandomSampler \(data\)"):
        batches(loader, batch_size=2)


def test_prefetch_on_cpu_passes_batches_through_in_order():
    source = [(torch.full((1, 3, 2, 2), float(i)), torch.tensor([i])) for i in range(3)]
    got = list(prefetch(iter(source), torch.device("cpu")))
    assert [int(idx) for _, idx in got] == [0, 1, 2]
    assert [float(images[0, 0, 0, 0]) for images, _ in got] == [0.0, 1.0, 2.0]


def test_chunks_on_disk_resume_where_they_stopped(resnet, tmp_path):
    x = torch.randn(10, 3, 32, 32)
    fx = FeatureExtractor(resnet, dtype="float32")
    first = fx.extract(x, batch_size=3, output=tmp_path, chunk_size=4)
    assert first.features.numel() == 0 and first.output == str(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("features-*")) == [f"features-00000-00000{i}.npy" for i in range(3)]
    features, indices = load_features(tmp_path)
    assert indices.tolist() == list(range(10))
    assert min_cosine(features, reference(resnet, x)) > 0.9999
    (tmp_path / "features-00000-000002.npy").unlink()  # as if the run had stopped before the last chunk
    again = fx.extract(x, batch_size=3, output=tmp_path, chunk_size=4)
    assert again.skipped == 8 and again.indices.numel() == 2
    assert load_features(tmp_path)[1].tolist() == list(range(10))
    with pytest.raises(
        ValueError, match=r"output holds a different run: samples=10, shard_stop=10, this run has samples=6, shard_stop=6 \("
    ):
        fx.extract(x[:6], batch_size=3, output=tmp_path, chunk_size=4)


def test_load_features_refuses_an_empty_or_mixed_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no feature chunks in: .* \(directory\)"):
        load_features(tmp_path)
    for rank in (0, 1):
        np.save(tmp_path / f"features-{rank:05d}-000000.npy", np.zeros((2, 4), np.float32))
        np.save(tmp_path / f"indices-{rank:05d}-000000.npy", np.array([0, 1]))
    with pytest.raises(ValueError, match=r"sample indices appear more than once: \[0, 1\]"):
        load_features(tmp_path)


# -- distributed -----------------------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from tlaudit.extract import FeatureExtractor
    from tlaudit.bench import run_bench

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten())
    data = torch.randn(11, 3, 8, 8)
    fx = FeatureExtractor(model)
    out = fx.extract(data, batch_size=2, output=sys.argv[1], chunk_size=3)
    report = run_bench(model, image_size=8, batch_sizes=[2], iters=1, warmup=1, modes=["baseline", "optimized"])
    with open(f"{sys.argv[1]}/rank{dist.get_rank()}.json", "w") as f:
        json.dump({"indices": out.indices.tolist(), "aggregate": out.aggregate_images_per_second,
                   "own": out.images_per_second, "bench": [r.to_dict() for r in report.results]}, f)
    dist.destroy_process_group()
    """
)


@pytest.mark.own_process
def test_torchrun_with_gloo_extracts_every_sample_exactly_once(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    out = tmp_path / "features"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=Path(__file__).parents[1], start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["indices"] == [0, 1, 2, 3, 4] and ranks[1]["indices"] == [5, 6, 7, 8, 9, 10]
    features, indices = load_features(out)
    assert indices.tolist() == list(range(11)) and features.shape == (11, 4)
    slowest = max(len(rank["indices"]) / rank["own"] for rank in ranks)
    for rank in ranks:
        assert rank["aggregate"] == pytest.approx(11 / slowest, rel=1e-6)  # all images over the slowest rank's time
        for result in rank["bench"]:
            assert result["aggregate_images_per_second"] > result["images_per_second"] > 0
