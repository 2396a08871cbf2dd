"""Audit cost against the user's own work: one train step plus one predict call.

Target (ResNet-50, batch 8, CPU, fine-tuning with AdamW, all checks): the audit takes at most
2x the time and 1.5x the memory of the user's train step + predict, for the memory both as the
whole process's peak and as the work's own peak above the built setup (which torch's own
footprint does not dilute). Run:

    .venv/bin/python -m pytest benchmarks/test_audit_overhead.py -s

Times are interleaved in one process (medians of ROUNDS); memory is the peak RSS of separate
processes that build the same setup (with glibc returning freed blocks to the OS, so RSS follows
live memory), and the peak above the RSS they had before the measured work.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

ROUNDS = 5
TIME_RATIO_MAX = 2.0
MEMORY_RATIO_MAX = 1.5
WORK_MEMORY_RATIO_MAX = 1.5

_SETUP = """
import torch, torchvision, tlaudit
from tlaudit.auditing.engine.defaults import default_train_step
from tlaudit.examples._common import pretend_pretrained
torch.manual_seed(0)
torch.set_num_threads({threads})
model = tlaudit.replace_head(pretend_pretrained(torchvision.models.resnet50()), 10)
weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
optimizer = torch.optim.AdamW(tlaudit.param_groups(model, 1e-4, weight_decay=0.05), lr=1e-3)
sample, targets = torch.randn(8, 3, 224, 224), torch.randint(10, (8,))

def predict(model, x):
    with tlaudit.inference(model):
        return model(x)

setup = tlaudit.TransferSetup(model=model, num_classes=10, sample=sample, targets=targets, optimizer=optimizer,
    strategy="fine_tuning", predict=predict, weights=weights, transform=weights.transforms())

def user():
    default_train_step(model, sample, targets, optimizer)
    predict(model, sample)

def run_audit():
    return tlaudit.audit(setup)
"""

_MEMORY = """
def status_kib(field):
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent that spawned us
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
before = status_kib("VmRSS")
{action}()
peak = status_kib("VmHWM")
print(json.dumps({{"before_kib": before, "peak_kib": peak}}))
"""


def _namespace(threads: int) -> dict:
    namespace: dict = {}
    exec(_SETUP.format(threads=threads), namespace)
    return namespace


def _peak(action: str) -> dict:
    code = "import json\n" + _SETUP.format(threads=2) + _MEMORY.format(action=action)
    # large blocks straight from mmap and back to the OS when freed: RSS then follows live memory
    # instead of glibc's retained free lists (which otherwise hide or inflate differences)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.benchmark(group="audit-overhead")
def test_audit_time_against_train_step_and_predict(benchmark):
    ns = _namespace(threads=2)
    ns["user"]()  # warm-up: allocator, optimizer state, kernels
    ns["run_audit"]()
    user_times, audit_times = [], []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        ns["user"]()
        user_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = ns["run_audit"]()
        audit_times.append(time.perf_counter() - start)
    assert report.ok and not report.skipped, report.to_text()
    ratio = statistics.median(audit_times) / statistics.median(user_times)
    benchmark.extra_info.update(
        user_median_s=statistics.median(user_times), audit_median_s=statistics.median(audit_times), time_ratio=ratio
    )
    benchmark.pedantic(ns["run_audit"], rounds=1, iterations=1)
    print(
        f"\nuser step+predict median {statistics.median(user_times):.2f}s, audit median "
        f"{statistics.median(audit_times):.2f}s, ratio {ratio:.2f}"
    )
    assert ratio <= TIME_RATIO_MAX


@pytest.mark.benchmark(group="audit-overhead")
def test_audit_peak_memory_against_train_step_and_predict(benchmark):
    user = _peak("user")
    audited = benchmark.pedantic(_peak, args=("run_audit",), rounds=1, iterations=1)
    user_peak, audit_peak = user["peak_kib"], audited["peak_kib"]
    user_delta = user_peak - user["before_kib"]
    audit_delta = audit_peak - audited["before_kib"]
    benchmark.extra_info.update(
        user_peak_mib=user_peak / 1024,
        audit_peak_mib=audit_peak / 1024,
        peak_ratio=audit_peak / user_peak,
        work_ratio=audit_delta / user_delta,
    )
    print(
        f"\npeak RSS: user {user_peak / 1024:.0f} MiB, audit {audit_peak / 1024:.0f} MiB "
        f"(ratio {audit_peak / user_peak:.2f}); above the built setup: user {user_delta / 1024:.0f} MiB, "
        f"audit {audit_delta / 1024:.0f} MiB (ratio {audit_delta / user_delta:.2f})"
    )
    assert audit_peak / user_peak <= MEMORY_RATIO_MAX
    assert audit_delta / user_delta <= WORK_MEMORY_RATIO_MAX  # what the audit adds, not torch's footprint
