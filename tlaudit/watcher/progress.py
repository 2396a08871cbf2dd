"""Reports written around live progress bars: a bar on the report's stream is cleared before the
report and drawn again after it, so a report never lands in the middle of a bar's line.

tqdm's bars (tqdm itself, Lightning's ``TQDMProgressBar``, the Hugging Face ``Trainer``'s
``ProgressCallback``) are found through tqdm's own registry of live instances, on every subclass,
and only when tqdm is already imported: nothing is imported here. A stream that is stdout or
stderr counts as the terminal both bars and reports share, as tqdm's ``write`` treats them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["clear_of_progress_bars"]


def _bar_classes(base: type) -> list[type]:
    seen: list[type] = []
    todo = [base]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def _live_bars(stream: TextIO) -> list[Any]:
    std = sys.modules.get("tqdm.std")
    if std is None:
        return []
    terminal = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    bars: list[Any] = []
    for cls in _bar_classes(std.tqdm):
        for bar in list(cls.__dict__.get("_instances", ())):
            fp = getattr(bar, "fp", None)
            fp = getattr(fp, "_wrapped", fp)  # tqdm wraps its file (DisableOnWriteError)
            if bar in bars or not hasattr(bar, "start_t") or getattr(bar, "disable", False):
                continue
            if fp is stream or (fp in terminal and stream in terminal):
                bars.append(bar)
    return bars


@contextmanager
def clear_of_progress_bars(stream: TextIO) -> Iterator[None]:
    """Clear the live bars drawn on ``stream`` (or on the terminal it shares) for the ``with`` body."""
    bars = _live_bars(stream)
    if not bars:
        yield
        return
    lock = sys.modules["tqdm.std"].tqdm.get_lock()
    with lock:
        for bar in bars:
            bar.clear(nolock=True)
        try:
            yield
        finally:
            for bar in bars:
                bar.refresh(nolock=True)
