"""What the audit restores, and the fingerprint the tests check it with (``tests/support/cases.py``).

Every case in ``tests/auditing/checks/`` runs a full audit between two fingerprints of everything the user owns;
the no-change guarantee is only as good as the fingerprint, so each kind of change must show up in it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy
import pytest
import torch

import tlaudit
from tests.support.cases import fingerprint, fingerprint_diff, make, model, size_of, warm_up

# -- the fingerprint itself sees every kind of change ----------------------------------------------


def _fingerprinted_setup() -> tlaudit.TransferSetup:
    m = model("vit_tiny")
    optimizer = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    warm_up(m, size_of("vit_tiny"), optimizer)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    m.eval()
    return make(m, size_of("vit_tiny"), optimizer=optimizer, scheduler=scheduler)


def _grad(s: tlaudit.TransferSetup) -> torch.Tensor:
    grad = s.model.heads.head.weight.grad
    assert grad is not None
    return grad


_MUTATIONS: dict[str, Any] = {
    "parameter-bit": lambda s: s.model.heads.head.weight.data.view(torch.int32)[0, 0].add_(1),
    "requires-grad": lambda s: s.model.conv_proj.weight.requires_grad_(False),
    "training-flag": lambda s: s.model.encoder.dropout.train(),
    "grad-value": lambda s: _grad(s).add_(1),
    "grad-identity": lambda s: setattr(s.model.heads.head.weight, "grad", _grad(s).clone()),
    "grad-none": lambda s: setattr(s.model.heads.head.weight, "grad", None),
    "buffer": lambda s: s.model.register_buffer("extra", torch.zeros(1)),
    "optimizer-state": lambda s: s.optimizer.state[s.model.heads.head.weight]["momentum_buffer"].mul_(2),
    "optimizer-lr": lambda s: s.optimizer.param_groups[0].update(lr=0.5),
    "scheduler": lambda s: setattr(s.scheduler, "last_epoch", 5),
    "forward-hook": lambda s: s.model.encoder.register_forward_hook(lambda *a: None),
    "tensor-hook": lambda s: s.model.heads.head.weight.register_hook(lambda g: g),
    "sample": lambda s: s.sample.mul_(2),
    "targets": lambda s: s.targets.add_(1),
    "torch-rng": lambda s: torch.rand(1),
    "python-rng": lambda s: random.random(),
    "numpy-rng": lambda s: numpy.random.rand(),
    "grad-mode": lambda s: torch.set_grad_enabled(False),
}


@pytest.mark.parametrize("mutation", list(_MUTATIONS))
def test_fingerprint_sees_every_kind_of_change(mutation: str) -> None:
    """The no-change guarantee is only as good as the fingerprint: each kind of change must show up."""
    setup = _fingerprinted_setup()
    before = fingerprint(setup)
    assert fingerprint_diff(before, fingerprint(setup)) == []
    grad_enabled = torch.is_grad_enabled()
    try:
        _MUTATIONS[mutation](setup)
        assert fingerprint_diff(before, fingerprint(setup)) != []
    finally:
        torch.set_grad_enabled(grad_enabled)


# -- where the copies live -------------------------------------------------------------------------


def test_copies_go_to_the_host_when_asked_or_when_the_device_is_short_of_memory():
    from tlaudit.auditing.engine.snapshot import copies_on_host

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert copies_on_host("auto", cuda, copy_bytes=10, free_bytes=100) is False
    assert copies_on_host("auto", cuda, copy_bytes=60, free_bytes=100) is True  # would leave less than a copy free
    assert copies_on_host("host", cuda, copy_bytes=1, free_bytes=None) is True
    assert copies_on_host("device", cuda, copy_bytes=60, free_bytes=100) is False
    assert copies_on_host("host", cpu, copy_bytes=1, free_bytes=None) is False  # on CPU the device is the host


def test_a_host_snapshot_restores_everything_and_a_bad_choice_names_the_option():
    m = model("resnet18")
    setup = make(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9))
    before = fingerprint(setup)
    report = tlaudit.audit(setup, snapshot="host")
    assert "frozen-changed" in report.checks_run  # the train step ran and was undone from host copies
    assert fingerprint_diff(before, fingerprint(setup)) == []
    with pytest.raises(tlaudit.SetupError, match=r"invalid snapshot: 'gpu' \(snapshot\); expected one of 'auto', 'device', 'host'") as info:
        tlaudit.audit(setup, snapshot="gpu")
    assert info.value.field == "snapshot"
