"""examples/cached_features_head.py runs and prints time and accuracy of both ways side by side."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cached_features_head.py"


def test_cached_features_example_prints_both_ways(capsys):
    spec = importlib.util.spec_from_file_location("_example_cached_features_head", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    threads = torch.get_num_threads()
    try:
        spec.loader.exec_module(module)
        assert module.main(["--epochs", "2", "--train", "128", "--batch-size", "32"]) == 0
    finally:
        sys.modules.pop(spec.name, None)
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    plain = re.search(r"^recompute the backbone every epoch +(\d+\.\d) +(0\.\d{3}|1\.000)$", out, re.MULTILINE)
    cached = re.search(r"^extract once, train on cached features +(\d+\.\d) +(0\.\d{3}|1\.000)$", out, re.MULTILINE)
    assert plain and cached, out
    assert abs(float(plain.group(2)) - float(cached.group(2))) <= 0.05  # the same head on the same features
    assert float(cached.group(2)) > 0.3  # a linear probe on frozen features learns (chance: 0.1)
    assert re.search(r"^cached: \d+\.\dx faster \(extraction \d+\.\d s, engine eager, ", out, re.MULTILINE), out
