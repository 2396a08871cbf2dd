"""What a watched run prints: reports around live progress bars (tlaudit/watcher/progress.py: a tqdm
bar drawn on the report's stream is cleared before the report and drawn again after it, so no report
starts in the middle of the bar's line), and a stop nobody catches (one line, no traceback)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

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
