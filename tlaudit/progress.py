"""Progress of ``tlaudit audit`` on stderr: the running check on one line, only for a terminal by default."""
from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["Progress", "show_progress"]


class Progress:
    """The engine's ``progress`` callback: ``\\r[3/16] frozen-bn-train`` on one line of ``stream``."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.index = 0
        self.width = 0

    def __call__(self, check_id: str) -> None:
        self.index += 1
        line = f"[{self.index}/{self.total}] {check_id}"
        self.width = max(self.width, len(line))
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()

    def clear(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def show_progress(flag: bool | None) -> bool:
    """``--progress``/``--no-progress`` when given, else whether stderr is a terminal."""
    if flag is not None:
        return flag
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())
