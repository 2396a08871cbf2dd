"""Every runnable example in examples/ runs and prints what it promises (test_*.py ones run in test_plugin)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "feature_extraction.py": [
        r"^tlaudit: ResNet: 15 checks run, 0 errors, 0 warnings, 2 skipped\.$",
        r"^epoch 2: loss \d+\.\d+, train accuracy (0\.[3-9]\d|1\.00)$",
    ],
    "staged_fine_tuning.py": [
        r"^epoch 0: unfroze 0 parameters, 2,052 trainable, group LRs \[0\.01, 0\.01\]$",
        r"^epoch 1: unfroze 5 parameters, 8,390,660 trainable, group LRs \[0\.01, 0\.01, 0\.001\]$",
        r"^epoch 2: unfroze 5 parameters, 10,487,812 trainable, group LRs \[0\.01, 0\.01, 0\.001, 0\.0003\]$",
        r"^resumed: 4 groups, requires_grad flags match: True$",
    ],
}


def test_every_example_has_expectations():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("test_")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name):
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for pattern in EXPECTED[name]:
        assert re.search(pattern, result.stdout, flags=re.M), f"{pattern!r} not in:\n{result.stdout}"
