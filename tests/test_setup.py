"""TransferSetup validation and load_setup from files and modules."""

from __future__ import annotations

import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

import tlaudit
from tlaudit.auditing.setup import SetupError, Strategy, TransferSetup, load_setup


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "resnet18"}, r"TransferSetup.model: expected a torch.nn.Module, got str"),
        ({"num_classes": 0}, r"TransferSetup.num_classes: expected a positive int, got 0"),
        ({"num_classes": True}, r"TransferSetup.num_classes: expected a positive int, got True"),
        ({"sample": [1, 2]}, r"TransferSetup.sample: expected a torch.Tensor or a dict of them \(e.g. a tokenizer.s output\), got list"),
        ({"targets": torch.zeros(2)}, r"TransferSetup.targets: given without a sample"),
        ({"optimizer": "adam"}, r"TransferSetup.optimizer: expected a torch.optim.Optimizer, got str"),
        ({"strategy": "finetune"}, r"TransferSetup.strategy: expected 'feature_extraction', 'fine_tuning' or None, got 'finetune'"),
        ({"frozen": ["layer1", 3]}, r"TransferSetup.frozen: expected a module name or a list of them, got \['layer1', 3\]"),
        ({"lr_max": -1}, r"TransferSetup.lr_max: expected a positive number, got -1"),
        ({"predict": 3}, r"TransferSetup.predict: expected a callable, got int"),
        (
            {"scheduler": object()},
            r"TransferSetup.scheduler: expected an LR scheduler \(torch.optim.lr_scheduler, or one with step\(\), state_dict\(\) and an .optimizer\), got object",
        ),
        ({"transform": 42}, r"TransferSetup.transform: expected a callable input pipeline \(or a list of transforms\), got int"),
        ({"transform": [42]}, r"TransferSetup.transform: expected a callable input pipeline \(or a list of transforms\), got list"),
        (
            {"sample": torch.full((2, 4), float("nan"))},
            r"TransferSetup.sample: every value is NaN or infinite, so nothing can run: shape \(2, 4\)",
        ),
        ({"sample": torch.zeros(0, 4)}, r"TransferSetup.sample: expected a batch with at least one item, got shape \(0, 4\)"),
        (
            {"sample": torch.zeros(2, 4), "targets": torch.zeros(3, dtype=torch.long)},
            r"TransferSetup.targets: 3 targets \(shape \(3,\)\) for a sample batch of 2 \(shape \(2, 4\)\)",
        ),
        (
            {"sample": torch.zeros(2, 4), "targets": torch.tensor(1)},
            r"TransferSetup.targets: expected one target per sample, got a scalar 1",
        ),
        (
            {"sample": torch.zeros(2, 4), "targets": torch.tensor([0.5, float("inf")])},
            r"TransferSetup.targets: holds NaN or infinite values: shape \(2,\)",
        ),
        ({"head": "fcc"}, r"no module named 'fcc' \(TransferSetup.head\); hint: use find_heads\(model\)"),
        ({"frozen": ["layr1"]}, r"pattern matches no module: 'layr1' \(TransferSetup.frozen\)"),
        ({"model": nn.ReLU()}, r"TransferSetup.model: has no parameters, so there is nothing to train or audit: ReLU"),
    ],
)
def test_bad_fields_name_the_field(fields, message):
    fields = {"model": nn.Linear(4, 2), **fields}
    with pytest.raises(SetupError, match=message) as info:
        TransferSetup(**fields)
    field = next(name for name in fields if f"TransferSetup.{name}" in message)
    assert info.value.field == field


def test_scheduler_must_step_the_setup_optimizer():
    model = nn.Linear(4, 2)
    opt_a, opt_b = (torch.optim.SGD(model.parameters(), lr=0.1) for _ in range(2))
    sched = torch.optim.lr_scheduler.StepLR(opt_b, 1)
    with pytest.raises(SetupError, match=r"TransferSetup.scheduler: steps a different optimizer"):
        TransferSetup(model=model, optimizer=opt_a, scheduler=sched)


def test_an_optimizer_passed_as_scheduler_is_named():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        SetupError, match=r"TransferSetup.scheduler: got an optimizer \(SGD\); pass it as optimizer= and its scheduler here"
    ):
        TransferSetup(model=model, optimizer=optimizer, scheduler=optimizer)


def test_a_scheduler_shaped_object_from_another_library_is_accepted():
    class WarmupScheduler:  # the shape timm's and other libraries' schedulers have
        def __init__(self, optimizer):
            self.optimizer = optimizer

        def step(self, epoch=None):
            pass

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert isinstance(TransferSetup(model=model, optimizer=optimizer, scheduler=WarmupScheduler(optimizer)).scheduler, WarmupScheduler)


def test_a_sample_with_some_nan_is_accepted_for_input_range_to_report():
    sample = torch.zeros(2, 4)
    sample[0, 0] = float("nan")
    assert TransferSetup(model=nn.Linear(4, 2), sample=sample).sample is sample


def test_fields_are_normalised():
    model = nn.Sequential(OrderedDict(body=nn.Linear(4, 4), fc=nn.Linear(4, 2)))
    setup = TransferSetup(model=model, strategy="feature_extraction", frozen="body", head=["fc"])
    assert setup.strategy is Strategy.FEATURE_EXTRACTION and setup.frozen == ("body",) and setup.head == ("fc",)
    assert setup.replace(num_classes=2).num_classes == 2 and setup.replace().model is setup.model


SETUP_FILE = """
import torch, tlaudit
def setup():
    return tlaudit.TransferSetup(model=torch.nn.Linear(4, 2), num_classes=2)
def other():
    return tlaudit.TransferSetup(model=torch.nn.Linear(4, 3), num_classes=3)
def broken():
    raise KeyError("missing")
def wrong():
    return 42
"""


@pytest.fixture
def setup_file(tmp_path):
    path = tmp_path / "my_setup.py"
    path.write_text(SETUP_FILE)
    return path


def test_load_setup_from_file_and_function(setup_file):
    assert load_setup(setup_file).num_classes == 2
    assert load_setup(f"{setup_file}:other").num_classes == 3


def test_load_setup_from_module(setup_file, monkeypatch):
    monkeypatch.syspath_prepend(str(setup_file.parent))
    try:
        assert load_setup("my_setup:other").num_classes == 3
    finally:
        sys.modules.pop("my_setup", None)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (":broken", r"my_setup.py:broken\(\) raised KeyError: 'missing' \(setup\)"),
        (":wrong", r"my_setup.py:wrong\(\) returned int, not a TransferSetup \(setup\)"),
        (":nothing", r"no function nothing\(\) in .*my_setup.py \(setup\); define `def nothing\(\) -> TransferSetup`"),
    ],
)
def test_load_setup_errors_name_file_and_function(setup_file, suffix, message):
    with pytest.raises(SetupError, match=message):
        load_setup(f"{setup_file}{suffix}")


def test_load_setup_missing_file_and_module(tmp_path):
    with pytest.raises(SetupError, match=r"file not found: .*nope.py \(setup\)"):
        load_setup(tmp_path / "nope.py")
    with pytest.raises(SetupError, match=r"cannot import module 'no_such_module_xyz': ModuleNotFoundError"):
        load_setup("no_such_module_xyz:setup")


def test_load_setup_import_error_names_the_file(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import does_not_exist_xyz\n")
    with pytest.raises(SetupError, match=r"importing .*bad.py raised ModuleNotFoundError"):
        load_setup(path)


def test_bundled_examples_load():
    from tlaudit.examples import EXAMPLES

    assert set(EXAMPLES) == {"correct", "buggy"}
    assert isinstance(load_setup(EXAMPLES["buggy"]), tlaudit.TransferSetup)
