"""Running the programs of ``tests/scripts/`` in this process, watched (``tlaudit run``) or not, and
reading what the run reported.

The programs are small versions of public training programs (each names its source); they print a
``checksum`` of the final parameters, so a watched run can be compared bit for bit with the
unwatched one. Reports are read from ``--format json --output FILE``: one JSON object per audit,
with its ``stage``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tlaudit.cli import main
from tlaudit.cli.run import run_script

SCRIPTS = Path(__file__).parent / "scripts"


def write_image_folder(root: Path, classes: tuple[str, ...] = ("ants", "bees"), per_class: tuple[int, int] = (4, 2)) -> Path:
    """``root/train`` and ``root/val`` ImageFolders of 40x40 random PNGs."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, count in zip(("train", "val"), per_class):
        for label in classes:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (40, 40, 3), generator=gen, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@dataclass
class Run:
    """What one run of a program left: exit code, stdout, stderr and the audits it reported."""

    code: int
    out: str
    err: str
    audits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        return [a["stage"] for a in self.audits]

    def findings(self, severity: str | None = None) -> list[tuple[str, str]]:
        """``(stage, check)`` of every finding (of ``severity``)."""
        return [(a["stage"], f["check"]) for a in self.audits for f in a["findings"] if severity is None or f["severity"] == severity]

    def checks(self, severity: str | None = "error") -> set[str]:
        return {check for _, check in self.findings(severity)}

    def notes(self) -> str:
        return "\n".join(note for a in self.audits for note in a.get("notes", []))

    @property
    def checksum(self) -> str:
        found = re.findall(r"^checksum (\S+)$", self.out, flags=re.MULTILINE)
        assert found, f"the program printed no checksum (exit {self.code}):\n{self.err[-3000:]}"
        return found[-1]


_RUNS: dict[tuple[str, ...], Run] = {}
"""Runs already made in this process, by their command line: the programs are deterministic, and a
run that several tests read is made once."""


def _captured(call: Callable[[], int]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = call()
    return code, out.getvalue(), err.getvalue()


def run_watched(script: str, *argv: str, options: tuple[str, ...] = ()) -> Run:
    """``tlaudit run [options] --format json --output FILE SCRIPT ARGV``."""
    key = ("watched", *options, script, *argv)
    if key not in _RUNS:
        with tempfile.TemporaryDirectory() as folder:
            report = Path(folder) / "report.jsonl"
            command = ["run", *options, "--format", "json", "--output", str(report), str(SCRIPTS / script), *argv]
            code, out, err = _captured(lambda: main(command))
            audits = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
        _RUNS[key] = Run(code, out, err, audits)
    return _RUNS[key]


def run_plain(script: str, *argv: str) -> Run:
    """The program as ``python SCRIPT ARGV`` runs it (in this process), not under ``tlaudit run``; the
    audits a callback of the program wrote (table format, to stderr) are read back from stderr."""
    key = ("plain", script, *argv)
    if key not in _RUNS:
        code, out, err = _captured(lambda: run_script(SCRIPTS / script, list(argv), contextlib.nullcontext()))
        _RUNS[key] = Run(code, out, err, table_audits(err))
    return _RUNS[key]


_FINDING = re.compile(r"^(error|warning|info) +([a-z][a-z-]+) ")


def table_audits(text: str) -> list[dict[str, Any]]:
    """The audits in table-format output: ``stage`` is the heading after ``tlaudit watch: ``, and each
    finding line gives ``severity`` and ``check``."""
    audits: list[dict[str, Any]] = []
    for line in text.replace("\r", "\n").splitlines():
        if line.startswith("tlaudit watch: ") and not line.startswith("tlaudit watch: the run is stopped"):
            audits.append({"stage": line.removeprefix("tlaudit watch: "), "findings": [], "notes": []})
        elif audits and (match := _FINDING.match(line)):
            audits[-1]["findings"].append({"severity": match.group(1), "check": match.group(2)})
        elif audits and line.startswith("  "):
            audits[-1]["notes"].append(line.strip())
    return audits
