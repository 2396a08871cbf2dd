"""Every runnable example in examples/ runs and prints what it promises (test_*.py ones run in test_plugin).

Long examples run with reduced budgets (their command-line flags); the gallery in
examples/common_mistakes/ is audited file by file in test_common_mistakes.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tlaudit.auditing.checks import REGISTRY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
N = len(REGISTRY)  # the counts follow the registry

# script -> (command-line arguments, patterns its stdout must match)
EXPECTED = {
    "cached_features_head.py": (
        ["--epochs", "2", "--train", "128", "--batch-size", "32"],
        [
            r"^recompute the backbone every epoch +\d+\.\d +0\.\d{3}$",
            r"^extract once, train on cached features +\d+\.\d +0\.\d{3}$",
            r"^cached: \d+\.\dx faster \(extraction ",
        ],
    ),
    "feature_extraction.py": (
        [],
        [
            rf"^tlaudit: ResNet: {N - 2} checks run, 0 errors, 0 warnings, 2 skipped\.$",
            r"^epoch 2: loss \d+\.\d+, train accuracy (0\.[3-9]\d|1\.00)$",
        ],
    ),
    "staged_fine_tuning.py": (
        [],
        [
            r"^epoch 0: unfroze 0 parameters, 2,052 trainable, group LRs \[0\.01, 0\.01\]$",
            r"^epoch 1: unfroze 5 parameters, 8,390,660 trainable, group LRs \[0\.01, 0\.01, 0\.001\]$",
            r"^epoch 2: unfroze 5 parameters, 10,487,812 trainable, group LRs \[0\.01, 0\.01, 0\.001, 0\.0003\]$",
            r"^resumed: 4 groups, requires_grad flags match: True$",
        ],
    ),
    "digits_transfer.py": (
        ["--seeds", "2", "--shots", "1", "--short", "1", "--long", "2", "--broken-shots", "1", "--plot", "{tmp}/digits.png"],
        [
            r"^source -> target: half A -> half B, noisy; pretrained CNN, held-out source accuracy 0\.9\d$",
            r"^scratch +1 +0\.\d\d ± 0\.\d\d +0\.\d\d ± 0\.\d\d +never \(0/2\) +\d+\.\d+ +clean$",
            r"^scratch, broken: no eval\(\) at inference +1 .* eval-mode$",
            r"^feature extraction, broken: frozen BatchNorm drifting +1 .* frozen-bn-train$",
            r"^fine-tuning, broken: LR too high on pretrained layers +1 .* lr-threshold$",
            r"^staged unfreezing, broken: optimizer built before the head swap +1 .* optimizer-missing$",
            r"^audit: every broken twin caught by its check: True; correct setups clean: True$",
            r"^plot: .*digits\.png$",
        ],
    ),
    "timm_fine_tuning.py": (
        ["--epochs", "1"],
        [
            rf"^tlaudit: ConvNeXt: {N - 1} checks run, 0 errors, 0 warnings, 0 skipped\.$",  # one check ignored
            r"^expected input: mean \[0\.485, 0\.456, 0\.406\], std \[0\.229, 0\.224, 0\.225\], bicubic, crop_pct 0\.875$",
            r"^param groups: 14, LRs 1\.8e-05\.\.0\.001$",
            r"^epoch 0: loss \d+\.\d+, train accuracy 0\.\d\d$",
        ],
    ),
}


# scripts with a main(argv): run in this process; the others as users run them, in a subprocess
IN_PROCESS = {"cached_features_head.py", "digits_transfer.py", "timm_fine_tuning.py"}


def test_every_example_has_expectations():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("test_")}
    assert scripts == set(EXPECTED)


def _run_in_process(path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``main(args)`` of a script that has one, in this process: no second torch import to pay for."""
    import torch

    spec = importlib.util.spec_from_file_location(f"_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    threads = torch.get_num_threads()
    try:
        spec.loader.exec_module(module)
        code = module.main(args)
    finally:
        sys.modules.pop(spec.name, None)
        torch.set_num_threads(threads)
    return code, capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name, tmp_path, capsys):
    if name == "timm_fine_tuning.py":
        pytest.importorskip("timm")
    if name == "digits_transfer.py":
        pytest.importorskip("matplotlib")
    args, patterns = EXPECTED[name]
    args = [a.format(tmp=tmp_path) for a in args]
    if name in IN_PROCESS:
        code, stdout = _run_in_process(EXAMPLES / name, args, capsys)
        assert code == 0, stdout
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # small models: one thread each, whatever else runs
        result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        stdout = result.stdout
    for pattern in patterns:
        assert re.search(pattern, stdout, flags=re.M), f"{pattern!r} not in:\n{stdout}"
    if name == "digits_transfer.py":
        assert (tmp_path / "digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
