"""Tests for tlaudit._names: wrapper prefixes, pattern rules, "did you mean" hints."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tests.support.helpers import TiedHead, TinyCNN
from tlaudit._names import (
    PatternError,
    closest,
    match_names,
    named_parameters,
    pattern_matches,
    strip_wrapper_prefix,
    unwrap,
)

NAMES = ["features", "features.1", "features.10", "features.10.weight", "classifier", "classifier.6"]


def test_unwrap_data_parallel_and_compile():
    model = TinyCNN()
    assert unwrap(model) is model
    assert unwrap(nn.DataParallel(model)) is model
    compiled = torch.compile(model)
    assert unwrap(compiled) is model
    assert unwrap(nn.DataParallel(compiled)) is model
    assert unwrap(torch.compile(nn.DataParallel(model))) is model


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("layer1", "layer1"),
        ("module.layer1", "layer1"),
        ("_orig_mod.layer1.0", "layer1.0"),
        ("module._orig_mod.layer1", "layer1"),
        ("_orig_mod.module.fc.weight", "fc.weight"),
        ("module.module.fc", "fc"),
        ("modules.fc", "modules.fc"),  # no dot boundary: not a wrapper prefix
        ("my_module.fc", "my_module.fc"),
        ("module", "module"),
    ],
)
def test_strip_wrapper_prefix(name, expected):
    assert strip_wrapper_prefix(name) == expected


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("features", "features.10.weight", True),
        ("features.10", "features.10.weight", True),
        ("features.1", "features.1.weight", True),
        ("features.1", "features.10.weight", False),  # dot boundary
        ("features.1", "features.10", False),
        ("features.10.weight", "features.10.weight", True),
        ("features.10.weight", "features.10", False),  # a pattern deeper than the name
        ("feat", "features.1", False),
        ("layer*", "layer3.0.conv1.weight", True),
        ("layer[12]", "layer1.0.conv1.weight", True),
        ("layer[12]", "layer3.0.conv1.weight", False),
        ("*.bn2", "layer1.0.bn2.weight", True),
        ("*.bn2", "bn2.weight", False),
        ("features.1?", "features.10.weight", True),  # globs may cross the boundary on purpose
        ("Features", "features.1", False),  # case-sensitive
    ],
)
def test_pattern_matches(pattern, name, expected):
    assert pattern_matches(pattern, name) is expected


def test_closest():
    assert closest("featurs", NAMES)[0] == "features"
    assert closest("classifier.5", NAMES) == ["classifier.6", "classifier"]
    assert closest("zzz", NAMES) == []
    assert len(closest("features.1", NAMES, n=2)) == 2


def test_match_names_returns_every_matched_name_in_order():
    assert match_names(NAMES, ["features.10"]) == ["features.10", "features.10.weight"]
    assert match_names(NAMES, ["classifier", "features.1"]) == ["features.1", "classifier", "classifier.6"]
    assert match_names(NAMES, ["module._orig_mod.classifier.6"]) == ["classifier.6"]


def test_match_names_error_names_closest_and_field():
    with pytest.raises(PatternError, match=re.escape("pattern matches no module: 'classifier.7' (schedule[3]); closest: classifier.6")):
        match_names(NAMES, ["classifier", "classifier.7"], field="schedule[3]")


def test_match_names_error_without_close_names_lists_top_level():
    with pytest.raises(
        PatternError,
        match=re.escape("pattern matches no module: 'zzz' (patterns); top-level modules: features, classifier"),
    ):
        match_names(NAMES, ["zzz"])


@pytest.mark.parametrize("bad", ["", 7, None])
def test_match_names_rejects_non_str(bad):
    with pytest.raises(TypeError, match=re.escape(f"module-name pattern must be a non-empty str: {bad!r} (heads)")):
        match_names(NAMES, [bad], field="heads")


def test_match_names_accepts_nested_patterns():
    assert match_names(NAMES, ["features", "features.10"]) == NAMES[:4]


def test_named_parameters_unwraps_and_counts_shared_once():
    model = TiedHead()
    names = [n for n, _ in named_parameters(nn.DataParallel(model))]
    assert names == ["embed.weight", "norm.weight", "norm.bias", "fc.bias"]
    assert named_parameters(model)[0][1] is model.fc.weight
