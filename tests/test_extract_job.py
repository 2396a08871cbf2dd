"""Tests for ``tlaudit extract`` and :func:`tlaudit.extract.extract_images`: images on disk to features on disk.

Small JPEG and PNG folders written with PIL; a ResNet-18 whose "pretrained" weights are its own
seeded initialization saved as a local checkpoint (nothing is downloaded); 32 px crops.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import tlaudit
from tests.extract.images import write_images
from tlaudit.cli import ExitCode, main
from tlaudit.extract import FeatureExtractor, extract_images, load_features
from tlaudit.extract.backbones import build_backbone
from tlaudit.extract.files import Preprocess, decode, image_files, load_dataset
from tlaudit.extract.inputs import normalize_uint8

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FAST = {"resize": 36, "crop": 32, "batch_size": 4, "num_workers": 0, "engine": "eager"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_images(root, ("cat", "dog"), per_class=3)
    return root


def by_hand(folder_paths, checkpoint: Path) -> torch.Tensor:
    """The features as a user would compute them: decode, resize, crop, normalize, eval + no_grad."""
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    tlaudit.remove_head(model)
    pre = Preprocess(36, 32)
    pixels = torch.stack([pre(decode(p)) for p in folder_paths])
    with tlaudit.inference(model):
        return model(normalize_uint8(pixels, torch.tensor(MEAN), torch.tensor(STD)))


# -- data on disk ----------------------------------------------------------------------------------


def test_folders_lists_and_functions_become_data_sets(folder, tmp_path):
    found = image_files(folder)
    assert found.classes == ["cat", "dog"] and found.labels == [0, 0, 0, 1, 1, 1]
    assert [Path(p).relative_to(folder).as_posix() for p in found.paths][:2] == ["cat/0.jpg", "cat/1.jpg"]
    flat = write_images(tmp_path / "flat", (), per_class=2, fmt="png")
    assert image_files(tmp_path / "flat").paths == [str(p) for p in flat] and image_files(tmp_path / "flat").labels == [-1, -1]
    listing = tmp_path / "list.txt"
    listing.write_text("# two images\nflat/1.png\n\nflat/0.png\n")
    assert image_files(listing).paths == [str(tmp_path / "flat/1.png"), str(tmp_path / "flat/0.png")]
    image, label = image_files(folder, Preprocess(36, 32))[4]
    assert (image.dtype, tuple(image.shape), label) == (torch.uint8, (3, 32, 32), 1)
    assert len(load_dataset("tests.extract.datasets:digits")) == 10


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: p / "missing", FileNotFoundError, r"no such folder or file list: '.*missing' \(DATA\)"),
        (lambda p: p, ValueError, r"no images in: '.*' \(DATA\); expected files ending in .jpg"),
    ],
)
def test_bad_data_is_named(tmp_path, make, error, match):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(error, match=match):
        image_files(make(tmp_path))


def test_a_listed_file_that_is_missing_is_named(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("nope.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"listed images not found: .*nope.jpg \(DATA: .*list.txt\)"):
        image_files(listing)


# -- the backbone with its weights -----------------------------------------------------------------


def test_a_weightless_builder_is_refused_unless_asked_for(checkpoint):
    with pytest.raises(ValueError, match=r"'resnet18' would be built without weights: every process .* random_weights=True"):
        build_backbone("resnet18")
    with pytest.raises(ValueError, match=r"'resnet18' called without arguments would be built without weights"):
        build_backbone("torchvision.models:resnet18")
    a, b = build_backbone("resnet18", random_weights=True), build_backbone("resnet18", random_weights=True)
    torch.testing.assert_close(a.model.conv1.weight, b.model.conv1.weight)  # seeded: every process agrees
    loaded = build_backbone("resnet18", checkpoint=checkpoint)
    assert loaded.normalization.mean == MEAN and loaded.normalization.crop_size == 224  # the default weights' preprocessing
    assert loaded.weights == str(checkpoint) and isinstance(loaded.model.fc, torch.nn.Identity)


def test_weights_are_resolved_by_name_and_bad_ones_named(checkpoint, tmp_path):
    from tlaudit.extract.backbones import _torchvision_weights

    assert str(_torchvision_weights("resnet18", "IMAGENET1K_V1")) == "ResNet18_Weights.IMAGENET1K_V1"
    assert str(_torchvision_weights("resnet18", "DEFAULT")) == "ResNet18_Weights.IMAGENET1K_V1"
    with pytest.raises(
        ValueError, match=r"unknown weights for resnet18: 'IMAGENET9K' \(weights\); expected DEFAULT or one of IMAGENET1K_V1"
    ):
        _torchvision_weights("resnet18", "IMAGENET9K")
    with pytest.raises(ValueError, match=r"pass weights or checkpoint, not both"):
        build_backbone("resnet18", weights="DEFAULT", checkpoint=checkpoint)
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, wrong)
    with pytest.raises(ValueError, match=r"checkpoint does not fit ResNet: missing \['bn1.weight'"):
        build_backbone("resnet18", checkpoint=wrong)
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match=r"checkpoint does not fit ResNet: size mismatch for conv1.weight"):
        build_backbone("resnet18", checkpoint=wrong)
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: '.*none.pt' \(checkpoint\)"):
        build_backbone("resnet18", checkpoint=tmp_path / "none.pt")


# -- extract_images --------------------------------------------------------------------------------


def test_a_folder_to_features_matches_the_hand_written_loop(folder, checkpoint, tmp_path):
    run = extract_images(folder, "resnet18", checkpoint=checkpoint, output=tmp_path / "out", **FAST)
    features, indices = load_features(tmp_path / "out")
    assert indices.tolist() == list(range(6)) and features.shape == (6, 512)
    expected = by_hand(image_files(folder).paths, checkpoint)
    assert float(torch.nn.functional.cosine_similarity(features, expected).min()) >= 0.99  # bf16 where native
    with open(tmp_path / "out" / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["index"], Path(r["path"]).name, r["label"]) for r in rows][:4] == [
        ("0", "0.jpg", "0"),
        ("1", "1.jpg", "0"),
        ("2", "2.jpg", "0"),
        ("3", "0.jpg", "1"),
    ]
    assert json.loads((tmp_path / "out" / "classes.json").read_text()) == ["cat", "dog"]
    line = run.summary()
    assert line.startswith("extracted 6 images in ") and " img/s, engine eager (" in line
    assert "batch 4, 0 worker(s), resnet18 [" in line and "resize 36, crop 32, mean (0.485, 0.456, 0.406)" in line
    assert run.to_dict()["extracted"] == 6 and run.engine == "eager"


def test_a_rerun_resumes_and_parquet_holds_paths_and_labels(folder, checkpoint, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="installed by the test extra")
    out = tmp_path / "out"
    first = extract_images(folder, "resnet18", checkpoint=checkpoint, output=out, chunk_size=2, **FAST)
    (out / "features-00000-000002.npy").unlink()  # as if the run had been killed before the last chunk
    again = extract_images(folder, "resnet18", checkpoint=checkpoint, output=out, chunk_size=2, format="parquet", **FAST)
    assert (first.extracted, again.extracted, again.skipped) == (6, 2, 4)
    assert again.features.indices.tolist() == [4, 5] and "(4 already done)" in again.summary()
    done = extract_images(folder, "resnet18", checkpoint=checkpoint, output=out, chunk_size=2, **FAST)
    assert done.summary().startswith("nothing to extract: all 6 images were already done; engine eager (")
    table = pq.read_table(out / "features.parquet")
    assert table.column("index").to_pylist() == list(range(6)) and table.column("label").to_pylist() == [0, 0, 0, 1, 1, 1]
    assert [Path(p).name for p in table.column("path").to_pylist()] == ["0.jpg", "1.jpg", "2.jpg"] * 2
    stored = np.array(table.column("features").to_pylist(), dtype=np.float32)
    torch.testing.assert_close(torch.from_numpy(stored), load_features(out)[0])


def test_parquet_without_pyarrow_says_how(folder, checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"Parquet output needs pyarrow: pip install pyarrow \(format='parquet'\); or use format='npy'"):
        extract_images(folder, "resnet18", checkpoint=checkpoint, output=tmp_path, format="parquet", **FAST)
    with pytest.raises(ValueError, match=r"unknown format: 'csv' \(format\); expected one of npy, parquet"):
        extract_images(folder, "resnet18", checkpoint=checkpoint, output=tmp_path, format="csv", **FAST)


def test_images_of_several_sizes_need_a_crop(folder):
    with pytest.raises(ValueError, match=r"images of different sizes cannot be batched without a crop size \(crop\)"):
        extract_images(folder, "torchvision.models:resnet18", random_weights=True, mean=MEAN, std=STD, engine="eager")


# -- the command line ------------------------------------------------------------------------------


def test_cli_extracts_with_progress_and_a_final_line(folder, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "extract",
            str(folder),
            "--model",
            "resnet18",
            "--checkpoint",
            str(checkpoint),
            "--output",
            str(out),
            "--resize",
            "36",
            "--crop",
            "32",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--engine",
            "eager",
            "--progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == ExitCode.OK, err
    assert "img/s" in err and "6/6" in err  # the tqdm bar: count, rate
    last = err.strip().splitlines()[-1]
    assert last.startswith("extracted 6 images in ") and "engine eager (" in last and "0 worker(s)" in last
    assert load_features(out)[1].tolist() == list(range(6))


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "resnet18", "--output", "o"], "one of the arguments --weights --checkpoint --random-weights is required"),
        (["--model", "resnet18", "--random-weights", "--weights", "DEFAULT", "--output", "o"], "not allowed with argument"),
        (["--model", "resnet18", "--random-weights", "--output", "o", "--engine", "fast"], "invalid choice: 'fast'"),
        (["--model", "resnet18", "--random-weights", "--output", "o", "--mean", "1,2"], "expected three numbers"),
        (["--model", "resnet18", "--checkpoint", "nope.pt", "--output", "o"], r"checkpoint not found: 'nope.pt' \(checkpoint\)"),
        (
            ["--model", "resnet18", "--random-weights", "--output", "o", "--format", "parquet", "--engine", "tensorrt"],
            r"engine 'tensorrt' cannot run: runs on cuda only, not cpu \(engine\)",
        ),
    ],
)
def test_cli_bad_input_exits_2_with_the_reason(folder, tmp_path, capsys, argv, match):
    import re

    code = main(["extract", str(folder), *[a.replace("o", str(tmp_path / "o")) if a == "o" else a for a in argv]])
    assert code == ExitCode.SETUP_ERROR
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.own_process
def test_cli_under_torchrun_extracts_every_image_exactly_once(folder, checkpoint, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "tlaudit",
        "extract",
        str(folder),
        "--model",
        "resnet18",
        "--checkpoint",
        str(checkpoint),
        "--output",
        str(out),
        "--resize",
        "36",
        "--crop",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--engine",
        "eager",
        "--chunk-size",
        "2",
        "--format",
        "parquet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=Path(__file__).parents[1], start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    features, indices = load_features(out)
    assert indices.tolist() == list(range(6))
    assert sorted(p.name for p in out.glob("run-*.json")) == ["run-00000.json", "run-00001.json"]
    assert done.stderr.count("extracted ") == 1  # rank 0 reports, for all ranks
    assert "extracted 3 images" in done.stderr and "1 worker(s)" in done.stderr  # decoded on a worker process
    single = FeatureExtractor(build_backbone("resnet18", checkpoint=checkpoint).model, weights={"mean": MEAN, "std": STD}, dtype="float32")
    pre = Preprocess(36, 32)
    pixels = torch.stack([pre(decode(p)) for p in image_files(folder).paths])
    cosine = torch.nn.functional.cosine_similarity(features, single(pixels))
    assert float(cosine.min()) >= 0.99  # each rank's engine keeps the fp32 features
