"""The ``tlaudit`` and ``tlaudit_bench`` fixtures; torch and the engine are imported by their methods, on first use."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tlaudit._options import AuditOptions, MarkerError, marker_options
from pytest_tlaudit._session import State, state
from tlaudit._text import count
from tlaudit.options import parse_fail_on

if TYPE_CHECKING:  # pragma: no cover - typing only; never imported at runtime
    import torch
    from torch import nn

    from tlaudit import Report, TransferSetup
    from tlaudit.bench.throughput import Throughput

__all__ = ["TlauditFixture", "ThroughputBench", "tlaudit", "tlaudit_bench"]


# -- the tlaudit fixture -------------------------------------------------------------------------


class TlauditFixture:
    """What the ``tlaudit`` fixture returns: audits and assertions about a transfer setup.

    Every method imports torch and the engine on first use. Assertions pass silently or raise
    ``AssertionError`` naming the offending module, parameter, group or value; :meth:`audit` fails
    the test with the readable report.
    """

    def __init__(self, node: pytest.Item, state: State) -> None:
        self._node = node
        self._state = state
        problem = None
        try:
            self.options: AuditOptions = marker_options(
                state.settings, node.iter_markers("tlaudit"), node.nodeid, node.iter_markers("tlaudit_suppress")
            )
        except MarkerError as err:
            problem = str(err)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        self.reports: list[Report] = []
        """The reports of this test's audits, in order."""

    def __repr__(self) -> str:
        return f"<tlaudit fixture: fail_on={self.options.fail_on!r}, lr_max={self.options.lr_max!r}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"the tlaudit fixture has no attribute {name!r}; inside a test that requests the `tlaudit` fixture "
            f"the name is the fixture, not the package: `from tlaudit import {name}`"
        )

    def audit(
        self,
        setup: TransferSetup | None = None,
        *,
        select: Iterable[str] | str | None = None,
        ignore: Iterable[str] | str | None = None,
        fail_on: str | None = None,
        **fields: Any,
    ) -> Report:
        """Audit ``setup`` (or a ``TransferSetup(**fields)``) and fail the test on findings at or above ``fail_on``.

        ``select``, ``ignore`` and ``fail_on`` given here override the marker and the options.
        Returns the :class:`~tlaudit.Report` when the test does not fail; every audit is recorded
        for ``--tlaudit-report`` and the terminal summary.

        Raises:
            TypeError: both a setup and fields, neither, or an unknown field.
            SetupError: the setup cannot be run (bad field, a model that cannot take the sample).
        """
        __tracebackhide__ = True
        from tlaudit import TransferSetup
        from tlaudit import audit as run_audit

        if setup is not None and fields:
            raise TypeError(f"tlaudit.audit(): pass a TransferSetup or its fields, not both: setup and {', '.join(fields)}")
        if setup is None:
            if not fields:
                raise TypeError("tlaudit.audit(): pass a TransferSetup or its fields, e.g. audit(model=model, num_classes=10)")
            setup = TransferSetup(**_known_fields(fields))
        elif not isinstance(setup, TransferSetup):
            raise TypeError(f"tlaudit.audit(): setup must be a tlaudit.TransferSetup, got {type(setup).__name__} (setup)")
        options = self.options
        level, level_source = options.fail_on, options.sources["fail_on"]
        if fail_on is not None:
            level_source = "tlaudit.audit(fail_on=...)"
            try:
                level = parse_fail_on(fail_on, level_source)
            except ValueError as err:
                raise ValueError(f"tlaudit: {err}") from None
        setup = options.apply(setup)  # lr_max and @pytest.mark.tlaudit_suppress
        chosen_select = options.select if select is None else select
        chosen_ignore = options.ignore if ignore is None else ignore
        report = run_audit(setup, chosen_select, chosen_ignore)
        self._record(report)
        failing = report.at_or_above(level)
        if failing:
            pytest.fail(
                f"tlaudit: {count(len(failing), 'finding')} at or above {level} (fail_on from {level_source})\n\n" + report.to_text(),
                pytrace=False,
            )
        return report

    def _record(self, report: Report) -> None:
        self.reports.append(report)
        self._state.record_test(self._node.nodeid, report)

    def assert_frozen(self, model: nn.Module, *patterns: str) -> None:
        """Every parameter under ``patterns`` (all with none) has ``requires_grad=False``."""
        __tracebackhide__ = True
        from tlaudit.auditing.assertions import assert_frozen

        assert_frozen(model, *patterns)

    def assert_trainable(self, model: nn.Module, *patterns: str) -> None:
        """Every parameter under ``patterns`` (all with none) has ``requires_grad=True``."""
        __tracebackhide__ = True
        from tlaudit.auditing.assertions import assert_trainable

        assert_trainable(model, *patterns)

    def assert_head(self, model: nn.Module, num_classes: int, sample: torch.Tensor | None = None, *, head: Any = None) -> None:
        """The head(s) (auxiliary included) have ``num_classes`` outputs; with ``sample``, every output too."""
        __tracebackhide__ = True
        from tlaudit.auditing.assertions import assert_head

        assert_head(model, num_classes, sample, head=head)

    def assert_eval_inference(self, predict: Callable[..., Any], model: nn.Module, sample: torch.Tensor) -> None:
        """``predict(model, sample)`` runs in eval mode, without gradients, deterministically (warnings fail)."""
        __tracebackhide__ = True
        from tlaudit.auditing.assertions import eval_inference_report, raise_for_eval_inference

        report = eval_inference_report(predict, model, sample)
        self._record(report)
        raise_for_eval_inference(report)

    def assert_normalization(self, transform: Any, weights: Any) -> None:
        """``transform`` normalizes once, with the mean/std ``weights`` expect."""
        __tracebackhide__ = True
        from tlaudit.auditing.assertions import assert_normalization

        assert_normalization(transform, weights)

    def assert_lr_below(
        self,
        optimizer: torch.optim.Optimizer,
        lr_max: float | None,
        *,
        exclude: Any = None,
        model: nn.Module | None = None,
        scheduler: Any = None,
    ) -> None:
        """Every optimizer group's LR (and its scheduled peak) is at most ``lr_max``, excluded parameters aside.

        ``exclude``: module-name patterns (resolved in ``model=``), modules or parameters, alone or in
        a list. ``lr_max=None`` takes the configured ``lr_max`` (marker, option or ini).
        """
        __tracebackhide__ = True
        from tlaudit.auditing.assertions import assert_lr_below

        if lr_max is None:
            lr_max = self.options.lr_max
            if lr_max is None:
                raise TypeError(
                    "tlaudit.assert_lr_below(): lr_max is None and none is configured "
                    "(@pytest.mark.tlaudit(lr_max=...), --tlaudit-lr-max or tlaudit_lr_max in ini)"
                )
        assert_lr_below(optimizer, lr_max, exclude=exclude, model=model, scheduler=scheduler)


def _known_fields(fields: dict[str, Any]) -> dict[str, Any]:
    from tlaudit import TransferSetup

    known = [f.name for f in dataclasses.fields(TransferSetup)]
    for name in fields:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]}?" if near else f"; TransferSetup fields: {', '.join(known)}"
            raise TypeError(f"tlaudit.audit(): unknown TransferSetup field: {name!r} (fields){hint}")
    return fields


@pytest.fixture
def tlaudit(request: pytest.FixtureRequest) -> TlauditFixture:
    """Audit transfer-learning setups and assert their parts; see :class:`TlauditFixture`."""
    return TlauditFixture(request.node, state(request.config))


# -- the tlaudit_bench fixture -------------------------------------------------------------------


class ThroughputBench:
    """What the ``tlaudit_bench`` fixture returns; call it once per test (pytest-benchmark's rule)."""

    def __init__(self, benchmark: Any) -> None:
        self.benchmark = benchmark

    def __call__(
        self,
        model: nn.Module,
        sample: torch.Tensor,
        *,
        rounds: int = 20,
        warmup_rounds: int = 2,
        iterations: int = 1,
    ) -> Throughput:
        """Time ``model(sample)`` in eval mode under ``torch.inference_mode()``; return the throughput.

        Records ``images_per_second`` (median-based), ``batch_size``, ``device`` and ``dtype`` in
        ``benchmark.extra_info``, which ``--benchmark-json`` writes out.
        """
        from tlaudit.bench.throughput import measure_throughput

        return measure_throughput(self.benchmark, model, sample, rounds=rounds, warmup_rounds=warmup_rounds, iterations=iterations)


@pytest.fixture
def tlaudit_bench(benchmark: Any) -> ThroughputBench:
    """Feature-extraction throughput on pytest-benchmark's ``benchmark``; see :class:`ThroughputBench`."""
    return ThroughputBench(benchmark)
