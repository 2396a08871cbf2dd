"""examples/digits_transfer.py, reduced: what holds across seeds with a margin, and the audit of every setup.

The full run (``python examples/digits_transfer.py``, about a minute) is what the README reports;
here the budgets are cut to what the claims need. test_examples.py runs the script itself, plot included.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

import tlaudit

pytest.importorskip("sklearn")

PATH = Path(__file__).resolve().parent.parent / "examples" / "digits_transfer.py"


def _load():
    spec = importlib.util.spec_from_file_location("digits_transfer", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


digits = _load()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    data = digits.load_data()
    checkpoint = tmp_path_factory.mktemp("digits") / "source.pt"
    source_accuracy = digits.pretrain(data, checkpoint)
    return data, checkpoint, source_accuracy


def test_the_source_model_learns_its_task(pretrained):
    _, _, source_accuracy = pretrained
    assert source_accuracy > 0.9


@pytest.mark.parametrize("k", [1, 3])
def test_fine_tuning_is_ahead_of_scratch_after_a_short_budget_with_few_labels(pretrained, k):
    """Ten epochs, three seeds: the mean held-out accuracy of fine-tuning leads scratch's by more than 0.1."""
    data, checkpoint, _ = pretrained
    runs = {method: [digits.train(method, k, seed, 10, data, checkpoint) for seed in range(3)] for method in ("scratch", "fine-tuning")}
    mean = {method: statistics.fmean(r.curve[-1] for r in results) for method, results in runs.items()}
    assert mean["fine-tuning"] > mean["scratch"] + 0.1, mean
    assert all(r.audit_flags == () for results in runs.values() for r in results)


@pytest.mark.parametrize("method", digits.METHODS)
def test_the_audit_catches_the_broken_twin_and_passes_the_correct_setup(pretrained, method):
    data, checkpoint, _ = pretrained
    sample = data.transform(data.target_pool.images[:16])
    targets = data.target_pool.labels[:16]
    broken = tlaudit.audit(digits.build(method, checkpoint, data, sample, targets, broken=True).setup)
    correct = tlaudit.audit(digits.build(method, checkpoint, data, sample, targets, broken=False).setup)
    mistake, check = digits.MISTAKES[method]
    assert check in {f.check for f in broken.at_or_above("warning")}, broken.to_text()
    assert correct.findings == (), correct.to_text()


def test_bad_budgets_and_sources_are_refused():
    with pytest.raises(ValueError, match=r"^need 0 < short <= long epochs: short=5, long=2 \(--short/--long\)$"):
        digits.experiment(short=5, long=2)
    with pytest.raises(ValueError, match=r"^unknown source task: 'mnist' \(--source\); expected 'shifted' or 'disjoint'$"):
        digits.load_data("mnist")
    with pytest.raises(ValueError, match=r"^unknown shift: 'blurred' \(--shift\); expected one of noisy, rotated, inverted$"):
        digits.load_data("shifted", "blurred")
