"""Shared pytest configuration for the tlaudit test suite."""

from __future__ import annotations

import os


def pytest_configure(config):
    """Under pytest-xdist, give each worker its share of the cores as torch intra-op threads.

    By default every worker would use all cores; with ``-n 2`` on two cores the workers' thread pools
    then fight over the CPU and small forwards run several times slower than with one thread each.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and workers.isdigit() and int(workers) > 0:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))
