"""What the command line writes and returns: exit codes, the report to stdout or a file, progress on stderr.

Shared by the sub-commands; torch-free.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import TextIO

from tlaudit.errors import UsageError

__all__ = ["EXIT_CODES_HELP", "ExitCode", "Progress", "emit", "show_progress"]


class ExitCode(enum.IntEnum):
    """What ``tlaudit`` exits with.

    * ``OK`` (0): nothing at or above ``--fail-on`` was found (or ``--exit-zero``); other commands: done.
    * ``FINDINGS`` (1): the audit found a problem at or above ``--fail-on``.
    * ``SETUP_ERROR`` (2): the input could not be used: the setup file or function is missing,
      ``setup()`` raised or returned no TransferSetup, the model cannot take the sample, or an option
      value is bad (an unknown check ID or model name, a malformed number, an unreadable baseline).
      Never 1: a setup that could not be audited is not a clean audit and not a list of findings either.

    A folder audit exits with the worst code of its files: 2 if one could not be audited, else 1 if
    one has findings at or above ``--fail-on``, else 0.
    """

    OK = 0
    FINDINGS = 1
    SETUP_ERROR = 2


EXIT_CODES_HELP = """\
exit codes:
  0  no finding at or above --fail-on (or --exit-zero); other commands: done
  1  the audit found a problem at or above --fail-on
  2  the input could not be used: setup file/function missing, setup() raised or returned
     no TransferSetup, the model cannot take the sample, or a bad option value or baseline file
a folder audit exits with the worst code of its files (2 > 1 > 0)
"""


def emit(text: str, output: str | None) -> None:
    """The report to stdout, or to ``output`` (a UsageError naming ``--output`` when it cannot be written)."""
    if output is None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    try:
        Path(output).write_text(text + "\n", encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write the report: {output} (--output): {err.strerror or err}") from err


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
