"""``tlaudit bench``: feature-extraction throughput of several modes, measured side by side.

* :mod:`tlaudit.bench.modes`: the modes and the timing protocol.
* :mod:`tlaudit.bench.report`: :func:`run_bench`, :class:`BenchReport` (table, JSON, plot).
* :mod:`tlaudit.bench.environment`: the environment record, FLOP counts and device ceilings.
* the ``tlaudit bench`` sub-command is :mod:`tlaudit.cli.bench`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tlaudit.bench.names import INPUTS, MODES

if TYPE_CHECKING:
    from tlaudit.bench.environment import environment, flops_per_image, peak_flops, plausible
    from tlaudit.bench.report import MIN_COSINE, BenchReport, BenchResult, run_bench

_LAZY = {
    "environment": "tlaudit.bench.environment",
    "flops_per_image": "tlaudit.bench.environment",
    "peak_flops": "tlaudit.bench.environment",
    "plausible": "tlaudit.bench.environment",
    "MIN_COSINE": "tlaudit.bench.report",
    "BenchReport": "tlaudit.bench.report",
    "BenchResult": "tlaudit.bench.report",
    "run_bench": "tlaudit.bench.report",
}


def __getattr__(name: str) -> Any:
    """The measuring parts import torch on first use; the subcommand's parser does not."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tlaudit.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "INPUTS",
    "MIN_COSINE",
    "MODES",
    "BenchReport",
    "BenchResult",
    "environment",
    "flops_per_image",
    "peak_flops",
    "plausible",
    "run_bench",
]
