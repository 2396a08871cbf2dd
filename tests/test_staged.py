"""Tests for tlaudit.staged: Stage and StagedUnfreezer."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.helpers import TINY_PARAMS, TinyCNN, flags, frozen_setup, params_by_id, trainable
from tlaudit import PatternError, Stage, StagedUnfreezer, freeze, freeze_backbone

SCHEDULE = {1: "layer2", 2: {"patterns": ["layer1"], "lr": 5e-3}}


def test_unfreezer_applies_stages_at_their_epoch():
    model, opt = frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, SCHEDULE, lr=2e-3)
    assert unfreezer.step(0) == []
    assert len(opt.param_groups) == 2
    assert unfreezer.step(1) == ["layer2.0.weight", "layer2.0.bias", "layer2.1.weight", "layer2.1.bias"]
    assert (opt.param_groups[-1]["name"], opt.param_groups[-1]["lr"]) == ("unfreeze:layer2", 2e-3)
    assert params_by_id(opt.param_groups[-1]["params"]).keys() == params_by_id(model.layer2.parameters()).keys()
    assert unfreezer.step(1) == [] and len(opt.param_groups) == 3
    assert len(unfreezer.step(2)) == 5
    assert (opt.param_groups[-1]["name"], opt.param_groups[-1]["lr"]) == ("unfreeze:layer1", 5e-3)
    assert trainable(model) == [n for n in TINY_PARAMS if not n.startswith("stem")]


def test_unfreezer_step_without_epoch_counts_up_and_catches_up():
    model, opt = frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, [Stage(3, ("layer1",)), Stage(1, ("layer2",))])
    assert [s.epoch for s in unfreezer.stages] == [1, 3]
    assert unfreezer.step() == [] and unfreezer.epoch == 0
    assert len(unfreezer.step()) == 4 and unfreezer.epoch == 1
    late, _ = frozen_setup()
    late_opt = torch.optim.SGD(late.fc.parameters(), lr=0.1)
    skipping = StagedUnfreezer(late, late_opt, {3: "layer1", 1: "layer2"})
    assert len(skipping.step(5)) == 9  # both stages, in epoch order
    assert [g["name"] for g in late_opt.param_groups[1:]] == ["unfreeze:layer2", "unfreeze:layer1"]


def test_unfreezer_default_lr_is_the_lowest_group_lr():
    model = TinyCNN()
    freeze_backbone(model)
    opt = torch.optim.SGD([{"params": [model.fc.weight], "lr": 0.1}, {"params": [model.fc.bias], "lr": 0.02}])
    StagedUnfreezer(model, opt, [(1, "layer2")]).step(1)
    assert opt.param_groups[-1]["lr"] == 0.02


def test_unfreezer_stage_lr_beats_unfreezer_lr():
    model, opt = frozen_setup()
    StagedUnfreezer(model, opt, [Stage(0, ("layer2",), lr=3e-4)], lr=1.0).step(0)
    assert opt.param_groups[-1]["lr"] == 3e-4


def _assert_no_duplicates(opt):
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))


def test_unfreezer_never_adds_a_parameter_the_optimizer_holds():
    model = TinyCNN()
    freeze_backbone(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # holds every parameter, frozen ones too
    unfreezer = StagedUnfreezer(model, opt, {1: "layer2", 2: ["layer1", "fc"]})
    assert len(unfreezer.step(1)) == 4
    assert len(unfreezer.step(2)) == 5
    assert len(opt.param_groups) == 1
    _assert_no_duplicates(opt)
    assert trainable(model) == [n for n in TINY_PARAMS if not n.startswith("stem")]


def test_unfreezer_overlapping_stages_add_each_parameter_once():
    model, opt = frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, {1: "layer1", 2: "layer1.3", 3: ["layer2", "fc"]})
    unfreezer.step(1)
    assert unfreezer.step(2) == [] and len(opt.param_groups) == 3
    unfreezer.step(3)
    assert len(opt.param_groups) == 4
    assert params_by_id(opt.param_groups[-1]["params"]).keys() == params_by_id(model.layer2.parameters()).keys()
    _assert_no_duplicates(opt)


def test_unfreezer_through_data_parallel():
    model, opt = frozen_setup()
    unfreezer = StagedUnfreezer(nn.DataParallel(model), opt, {1: "module.layer2"})
    assert unfreezer.step(1) == [n for n in TINY_PARAMS if n.startswith("layer2.")]
    assert params_by_id(opt.param_groups[-1]["params"]).keys() == params_by_id(model.layer2.parameters()).keys()


def _train_step(model, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 8, 8, generator=g)
    y = torch.randint(0, 5, (4,), generator=g)
    opt.zero_grad()
    F.cross_entropy(model.train()(x), y).backward()
    opt.step()


def test_unfreezer_state_dict_round_trip():
    model, opt = frozen_setup(seed=0)
    unfreezer = StagedUnfreezer(model, opt, SCHEDULE, lr=2e-3)
    for epoch in range(2):
        unfreezer.step(epoch)
        _train_step(model, opt, seed=epoch)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), unfreezer.state_dict()))
    assert saved[2] == {"epoch": 1, "applied": [0]}

    model2, opt2 = frozen_setup(seed=123)  # as at the start, different init
    unfreezer2 = StagedUnfreezer(model2, opt2, SCHEDULE, lr=2e-3)
    model2.load_state_dict(saved[0])
    unfreezer2.load_state_dict(saved[2])
    opt2.load_state_dict(saved[1])

    assert flags(model2) == flags(model)
    assert (unfreezer2.epoch, unfreezer2.applied) == (1, [0])
    assert len(opt2.param_groups) == len(opt.param_groups) == 3

    def describe_groups(o):
        return [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in o.param_groups]

    assert describe_groups(opt2) == describe_groups(opt)
    names = {id(p): n for n, p in model.named_parameters()}
    names2 = {id(p): n for n, p in model2.named_parameters()}
    for g1, g2 in zip(opt.param_groups, opt2.param_groups):
        assert [names[id(p)] for p in g1["params"]] == [names2[id(p)] for p in g2["params"]]
        for p1, p2 in zip(g1["params"], g2["params"]):
            s1, s2 = opt.state[p1], opt2.state[p2]
            assert s1.keys() == s2.keys() and s1, names[id(p1)]
            for key in s1:
                torch.testing.assert_close(s2[key], s1[key])

    # both continue identically: the next stage, one more step
    assert unfreezer.step() == unfreezer2.step()
    assert describe_groups(opt2) == describe_groups(opt)
    _train_step(model, opt, seed=7)
    _train_step(model2, opt2, seed=7)
    for (name, p1), p2 in zip(model.state_dict().items(), model2.state_dict().values()):
        torch.testing.assert_close(p2, p1, msg=name)


def test_unfreezer_errors():
    model, opt = frozen_setup()
    with pytest.raises(TypeError, match=re.escape("optimizer must be a torch.optim.Optimizer: list (optimizer)")):
        StagedUnfreezer(model, [], {1: "layer2"})
    with pytest.raises(TypeError, match=re.escape("schedule entry must be a Stage or epoch -> patterns: 5 (schedule)")):
        StagedUnfreezer(model, opt, [5])
    with pytest.raises(ValueError, match=re.escape("stage epoch must be an int >= 0: -1 (schedule)")):
        StagedUnfreezer(model, opt, {-1: "layer2"})
    with pytest.raises(ValueError, match=re.escape("stage epoch must be an int >= 0: True (schedule)")):
        StagedUnfreezer(model, opt, [Stage(True, ("layer2",))])
    with pytest.raises(ValueError, match=re.escape("stage at epoch 1 names no module (schedule)")):
        StagedUnfreezer(model, opt, {1: []})
    with pytest.raises(PatternError, match=r"pattern matches no module: 'layer9' \(schedule\[2\]\); closest: layer"):
        StagedUnfreezer(model, opt, {1: "layer2", 2: "layer9"})
    assert len(opt.param_groups) == 2 and trainable(model) == ["fc.weight", "fc.bias"]


def test_unfreezer_load_state_dict_errors():
    model, opt = frozen_setup()
    unfreezer = StagedUnfreezer(model, opt, {1: "layer2"})
    with pytest.raises(ValueError, match=re.escape("not a StagedUnfreezer state dict: {'epoch': 3} (state)")):
        unfreezer.load_state_dict({"epoch": 3})
    with pytest.raises(ValueError, match=re.escape("stage index out of range: 1 (state['applied'])")):
        unfreezer.load_state_dict({"epoch": 3, "applied": [1]})


# --- input checks -------------------------------------------------------------------------------------


def test_stage_accepts_a_single_pattern_string():
    assert Stage(1, "layer4").patterns == ("layer4",)


def test_staged_unfreezer_group_names_drop_wrapper_prefixes():
    model = nn.DataParallel(TinyCNN())
    freeze(model)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    unfreezer = StagedUnfreezer(model, optimizer, {0: "module.fc"})
    unfreezer.step(0)
    assert optimizer.param_groups[-1]["name"] == "unfreeze:fc"
