"""What a watched run prints: reports around live progress bars (tlaudit/watcher/progress.py: a tqdm
bar drawn on the report's stream is cleared before the report and drawn again after it, so no report
starts in the middle of the bar's line), and a stop nobody catches (one line, no traceback)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import tlaudit
from tlaudit.watcher.session import AuditSession

tqdm = pytest.importorskip("tqdm")


def audit_on(stream: io.StringIO) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    AuditSession(stream=stream).audit("static", {"model": model, "optimizer": optimizer}, {"model": "Sequential"}, [])


def test_a_report_during_a_bar_starts_on_a_cleared_line_and_the_bar_is_drawn_again():
    stream = io.StringIO()
    bar = tqdm.tqdm(total=10, file=stream, ascii=True, mininterval=0, bar_format="{n}/{total}")
    bar.update(3)
    drawn = stream.getvalue()
    audit_on(stream)
    bar.close()
    after = stream.getvalue()[len(drawn) :]
    heading = after.index("tlaudit watch:")
    assert heading > 0 and after[heading - 1] == "\r", repr(after[: heading + 20])  # the bar's line was cleared
    assert after[:heading].strip() == ""  # nothing but the clearing before the report
    assert "3/10" in after[heading:]  # the bar is drawn again after the report


def test_a_bar_on_another_file_is_left_alone():
    ours, theirs = io.StringIO(), io.StringIO()
    bar = tqdm.tqdm(total=10, file=theirs, ascii=True, mininterval=0, bar_format="{n}/{total}")
    bar.update(3)
    before = theirs.getvalue()
    audit_on(ours)
    assert theirs.getvalue() == before
    assert ours.getvalue().startswith("tlaudit watch:")
    bar.close()


def test_without_a_bar_the_stream_gets_the_report_alone():
    stream = io.StringIO()
    audit_on(stream)
    assert stream.getvalue().startswith("tlaudit watch:") and "\r" not in stream.getvalue()


UNCAUGHT = """
import sys, torch
from torch import nn
import tlaudit
from tlaudit.watcher.session import AuditSession
model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
session = AuditSession(fail_on="error")
if sys.argv[1] == "audit":
    session.audit("static", {"model": model, "optimizer": torch.optim.Adam(model.parameters(), lr=0.5)}, {}, [])
raise ValueError("the program's own error")
"""


@pytest.mark.parametrize("where", ["audit", "program"])
def test_an_uncaught_stop_prints_its_one_line_reason_and_other_errors_their_traceback(tmp_path, where):
    """A script whose trainer.train() does not catch the AuditFailed ends with the report and one line,
    exit code 1, not a traceback through the framework's hooks; the program's own errors keep theirs."""
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(UNCAUGHT)
    done = subprocess.run([sys.executable, str(script), where], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    if where == "audit":
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("lr-threshold") >= 2  # the report, then the reason
        assert done.stderr.rstrip().splitlines()[-1].startswith("tlaudit.AuditFailed: static audit")
    else:
        assert "Traceback" in done.stderr and done.stderr.rstrip().endswith("ValueError: the program's own error")


class ListInput(nn.Module):
    """Takes a list of images, as torchvision's detection models do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        return self.net(torch.stack(images))


def watched_loop(model: nn.Module, *, validate: bool, as_list: bool = False) -> str:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    stream = io.StringIO()
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    inputs = list(x) if as_list else x
    with tlaudit.watch(stream=stream):
        for _ in range(2):
            model.train()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), y).backward()
            optimizer.step()
            if validate:
                model.eval()
                with torch.no_grad():
                    model(inputs)
    return stream.getvalue()


def test_a_run_that_never_predicts_says_no_inference_was_audited():
    out = watched_loop(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), validate=False)
    assert out.rstrip().endswith(
        "tlaudit watch: no inference audited: no inference call (grad mode off, inference mode, or the model in eval "
        "mode) was seen while watched; eval-mode, eval-nondeterministic and grad-inference did not run"
    )


def test_a_validation_call_the_audit_cannot_replay_is_named():
    out = watched_loop(ListInput(), validate=True, as_list=True)
    assert (
        "tlaudit watch: no inference audited: the validation call of ListInput takes no tensor batch the audit can "
        "replay (its input: list; a detection model's list of images, say)"
    ) in out


def test_an_audited_inference_needs_no_such_line():
    out = watched_loop(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), validate=True)
    assert "tlaudit watch: inference audit" in out and "no inference audited" not in out
