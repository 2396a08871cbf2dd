"""Auditing models wrapped for training: DDP on one rank runs no collective, torch.compile is not recompiled."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import tlaudit

DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, datetime
    import torch, torch.distributed as dist
    from torch import nn
    import tlaudit

    rank = int(sys.argv[1])
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{sys.argv[2]}",
                            timeout=datetime.timedelta(seconds=60))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4))
    ddp = nn.parallel.DistributedDataParallel(model)
    if rank == 0:  # only rank 0 audits: the audit must not wait for rank 1 in a collective
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01)
        report = tlaudit.audit(tlaudit.TransferSetup(model=ddp, num_classes=4, sample=torch.randn(4, 3, 16, 16),
                                                     targets=torch.arange(4), optimizer=optimizer))
        print("AUDITED", report.ok, len(report.checks_run), flush=True)
    dist.barrier()  # both ranks meet again only after rank 0's audit
    dist.destroy_process_group()
    print("DONE", rank, flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ddp_model_audited_on_one_rank_does_not_hang(tmp_path):
    script = tmp_path / "ddp_audit.py"
    script.write_text(DDP_SCRIPT)
    port = str(_free_port())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, str(script), str(rank), port], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    (code0, out0, err0), (code1, out1, err1) = outputs
    assert code0 == 0 and code1 == 0, (err0[-2000:], err1[-2000:])
    assert "AUDITED True" in out0 and "DONE 0" in out0 and "DONE 1" in out1


def test_a_compiled_model_is_audited_through_its_original_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    compiled = torch.compile(model, backend="eager")
    calls: list[int] = []
    handle = compiled.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        report = tlaudit.audit(
            tlaudit.TransferSetup(
                model=compiled,
                num_classes=3,
                sample=torch.randn(4, 8),
                targets=torch.arange(4) % 3,
                optimizer=optimizer,
                predict=lambda m, x: m.eval()(x),
            )
        )
    finally:
        handle.remove()
    assert calls == [], "the compiled wrapper ran (the audit's hooks would recompile its graphs)"
    assert "head-size" in report.checks_run and not report.by_check("user-code-error")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_predict_is_deterministic_within_its_precision(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4)).to(dtype)
    noise = {"calls": 0}

    def predict(m, x):  # an autocast-like rounding difference between two identical calls
        noise["calls"] += 1
        with torch.no_grad():
            out = m.eval()(x)
        return out + (torch.finfo(dtype).eps * out.abs() if noise["calls"] % 2 else 0)

    report = tlaudit.audit(
        tlaudit.TransferSetup(model=model, num_classes=4, sample=torch.randn(4, 32).to(dtype), predict=predict),
        select=["eval-nondeterministic"],
    )
    assert report.checks_run == ("eval-nondeterministic",) and report.findings == ()
