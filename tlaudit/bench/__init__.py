"""``tlaudit bench``: feature-extraction throughput of several modes, measured side by side.

* :mod:`tlaudit.bench.modes`: the modes and the timing protocol.
* :mod:`tlaudit.bench.report`: :func:`run_bench`, :class:`BenchReport` (table, JSON, plot).
* :mod:`tlaudit.bench.environment`: the environment record, FLOP counts and device ceilings.
* :mod:`tlaudit.bench.command`: the subcommand (:func:`add_parser`, :func:`run`).
"""
from __future__ import annotations

from tlaudit.bench.command import add_parser, run
from tlaudit.bench.environment import environment, flops_per_image, peak_flops, plausible
from tlaudit.bench.modes import INPUTS, MODES
from tlaudit.bench.report import MIN_COSINE, BenchReport, BenchResult, run_bench

__all__ = [
    "INPUTS",
    "MIN_COSINE",
    "MODES",
    "BenchReport",
    "BenchResult",
    "add_parser",
    "environment",
    "flops_per_image",
    "peak_flops",
    "plausible",
    "run",
    "run_bench",
]
