"""Tests for tests/realistic/table.py: each row's source is the link its transcription names."""

from __future__ import annotations

from tests.realistic import test_corpus_detection, test_corpus_ssl
from tests.realistic.table import source


def test_the_source_is_the_link_in_the_comment_above_the_builder():
    link = source(test_corpus_ssl.simclr_logistic_regression, test_corpus_ssl)
    assert link == "https://github.com/sthalles/SimCLR/blob/master/feature_eval/mini_batch_logistic_regression_evaluator.ipynb"


def test_without_a_link_above_the_builder_the_source_is_the_modules():
    link = source(test_corpus_detection.box_predictor_without_background, test_corpus_detection)
    assert link == "https://pytorch.org/tutorials/intermediate/torchvision_tutorial.html"
