"""Tests for the crash diagnosis of ``tlaudit.watch()`` (tlaudit/watcher/whole_run.py): a loss that
raises before the first optimizer step is diagnosed from what the run was computing, with the class
count of the dataset being iterated, even where the crash has unwound the loop that iterated it."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import tlaudit
from tests.test_watch import tiny


class Folder(Dataset):
    """An ImageFolder-like dataset: it declares its ``classes``; ``offset`` is the seeded mistake
    (class indices counted from 1, as a ``target_transform=lambda t: t + 1`` gives)."""

    def __init__(self, n: int, offset: int = 0) -> None:
        self.classes = ["ants", "bees"]
        self.images = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        self.offset = offset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], i % 2 + self.offset


class LossInside(nn.Module):
    """A wrapper that computes the loss in its forward with its own log-softmax and gather, as timm's
    ``ClassificationTask`` with ``LabelSmoothingCrossEntropy`` does: no ``F.cross_entropy`` call to
    watch, the targets are an argument of the model call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logprobs = self.model(x).log_softmax(dim=-1)
        return -logprobs.gather(dim=-1, index=target.unsqueeze(1)).mean()


def train(offset: int, stream: io.StringIO) -> None:
    model = tiny()
    model.fc = nn.Linear(8, 2)  # the head, for the dataset's 2 classes
    task = LossInside(model)
    train_loader = DataLoader(Folder(4, offset), batch_size=2)
    val_loader = DataLoader(Folder(2), batch_size=2)  # a second live loader: "the only one" cannot decide
    optimizer = torch.optim.SGD(task.parameters(), lr=0.01)
    with tlaudit.watch(stream=stream, fail_on=None):
        for x, y in train_loader:
            optimizer.zero_grad()
            task(x, y).backward()
            optimizer.step()
    del val_loader


def test_a_loss_computed_inside_the_model_that_raises_is_diagnosed_with_the_datasets_classes():
    stream = io.StringIO()
    with pytest.raises(RuntimeError, match="index 2 is out of bounds"):
        train(offset=1, stream=stream)
    text = stream.getvalue()
    assert "diagnosis of the exception that ended the run" in text
    assert "label-range" in text
    assert "outside [0, 2) (num_classes)" in text
    assert "2, Folder.classes" in text  # read from the dataset while its loop was still running


def test_the_same_loop_with_labels_from_0_is_not_diagnosed():
    stream = io.StringIO()
    train(offset=0, stream=stream)
    text = stream.getvalue()
    assert "diagnosis" not in text
    assert "label-range" not in text


def test_a_crash_in_the_first_step_of_a_model_called_with_keywords_only_is_diagnosed():
    """Hugging Face's run_glue_no_trainer.py: ``model(**batch)`` with ``labels=`` computes the loss
    inside the model; labels counted from 1 crash it at the very first step, before any batch shape
    is known (the call has no positional input)."""
    pytest.importorskip("transformers")
    from tests.support.hf import tiny_bert

    model = tiny_bert(num_labels=2)
    batch = {
        "input_ids": torch.randint(5, 50, (2, 8)),
        "attention_mask": torch.ones(2, 8, dtype=torch.long),
        "labels": torch.tensor([1, 2]),
    }
    stream = io.StringIO()
    with pytest.raises(IndexError, match="Target 2 is out of bounds"):
        with tlaudit.watch(stream=stream, fail_on=None):
            model(**batch).loss.backward()
    text = stream.getvalue()
    assert "diagnosis of the exception that ended the run" in text
    assert "targets range over [1, 2], outside [0, 2) (num_classes)" in text
