"""Tests for tlaudit.extract.ray: RayExtractor in a real local Ray (``ray.init(num_cpus=1)``), bounded.

One Ray session for the module. The pipeline is the documented one: ``read_images`` on a small PNG
folder (lossless, so local decoding gives the same pixels), ``map_batches`` with the extractor on an
actor pool (``compute=``), ``write_parquet``; every row exactly once, features equal to local
extraction. Two actors built from one checkpoint give identical features.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import tlaudit
from tests.extract.images import write_images
from tlaudit.extract import FeatureExtractor
from tlaudit.extract.files import Preprocess
from tlaudit.extract.ray import RayExtractor, as_chw_uint8

ray = pytest.importorskip("ray", reason="installed by the test extra")  # the extra is `ray[data]`

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),  # ray's own defaults use its deprecated options
]

NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
OPTIONS = {"engine": "eager", "dtype": "float32"}  # fp32: local and remote must agree to rounding


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def session():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def local_features(paths, checkpoint: Path) -> torch.Tensor:
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    tlaudit.remove_head(model)
    crop = Preprocess(None, 32)
    pixels = torch.stack([crop(torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)) for p in paths])
    return FeatureExtractor(model, weights=NORM, **OPTIONS)(pixels)


# -- without Ray -----------------------------------------------------------------------------------


def test_hwc_chw_and_read_only_arrays_are_taken_without_a_warning():
    hwc = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    hwc.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a read-only array it would share
        chw = as_chw_uint8(hwc)
        column = np.empty(2, dtype=object)  # what Ray hands out for images of several sizes
        column[0], column[1] = hwc[0], hwc[1, :7]
        rows = as_chw_uint8(column)
    assert chw.shape == (2, 3, 8, 6) and torch.equal(chw[1], torch.from_numpy(hwc[1].copy()).permute(2, 0, 1))
    assert [tuple(r.shape) for r in rows] == [(3, 8, 6), (3, 7, 6)]
    assert as_chw_uint8(np.zeros((2, 3, 8, 6), np.uint8)).shape == (2, 3, 8, 6)  # CHW stays


def test_a_weightless_builder_is_refused_and_errors_name_the_field(checkpoint):
    with pytest.raises(ValueError, match=r"'resnet18' would be built without weights: every process \(each rank, each Ray actor\)"):
        RayExtractor("resnet18")
    with pytest.raises(ValueError, match=r"cannot import the model builder: 'torchvision.models:nope' \(model\)"):
        RayExtractor("torchvision.models:nope", random_weights=True)
    fn = RayExtractor("resnet18", checkpoint=checkpoint)
    assert fn.extractor.normalization.mean == tuple(NORM["mean"])  # the default weights' preprocessing
    with pytest.raises(KeyError, match=r"no column named: 'image' \(column\); the batch has \['pixels'\]"):
        fn({"pixels": np.zeros((1, 3, 8, 8), np.uint8)})
    with pytest.raises(ValueError, match=r"images of several sizes in one batch: .* \(image\); pass crop="):
        fn({"image": np.array([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], dtype=object)})


# -- in a local Ray --------------------------------------------------------------------------------


def test_two_actors_build_the_same_model_and_agree(session, checkpoint):
    remote = session.remote(num_cpus=0.5)(RayExtractor)
    image = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    actors = [remote.remote("resnet18", checkpoint=str(checkpoint), **OPTIONS) for _ in range(2)]
    first, second = session.get([a.__call__.remote({"image": image}) for a in actors])
    np.testing.assert_array_equal(first["features"], second["features"])


def test_read_images_map_batches_write_parquet_every_row_once(session, checkpoint, tmp_path):
    import pyarrow.parquet as pq

    paths = write_images(tmp_path / "images", (), per_class=6, size=(32, 32), fmt="png")  # 32..37 x 32 px
    ds = session.data.read_images(str(tmp_path / "images"), include_paths=True, num_cpus=0.25)
    ds = ds.map_batches(
        RayExtractor,
        fn_constructor_kwargs={"build": "resnet18", "checkpoint": str(checkpoint), "crop": 32, **OPTIONS},
        batch_size=4,
        compute=session.data.ActorPoolStrategy(size=1),
        num_cpus=0.5,
    )
    ds.write_parquet(str(tmp_path / "out"), ray_remote_args={"num_cpus": 0.25})
    table = pq.read_table(tmp_path / "out")
    rows = sorted(zip(table.column("path").to_pylist(), table.column("features").to_numpy()))
    assert [Path(p).name for p, _ in rows] == sorted(p.name for p in paths)  # every image exactly once
    remote = torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for _, f in rows]))
    local = local_features(sorted(paths), checkpoint)
    torch.testing.assert_close(remote, local, rtol=1e-4, atol=1e-4)
