"""The plugin's options: command line and ini settings, the ``tlaudit`` marker, and their precedence."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tlaudit.options import FAIL_ON_HELP as _FAIL_ON
from tlaudit.options import LR_CAUTION_HELP as _LR_CAUTION
from tlaudit.options import LR_MAX_HELP as _LR_MAX
from tlaudit.options import (
    declared_check_ids,
    parse_check_ids,
    parse_fail_on,
    parse_lr_max,
    unknown_check_message,
    validate_check_ids,
)

__all__ = [
    "AuditOptions",
    "MarkerError",
    "Settings",
    "FAIL_ON_HELP",
    "LR_MAX_HELP",
    "REPORT_HELP",
    "MARKER_KEYWORDS",
    "MARKER_LINE",
    "SETUP_MARKER_LINE",
    "SUPPRESS_MARKER_LINE",
    "add_options",
    "read_settings",
    "marker_options",
    "marker_suppressions",
]

MARKER_KEYWORDS = ("lr_max", "lr_caution", "select", "ignore", "fail_on")

LR_MAX_HELP = f"{_LR_MAX} in tlaudit audits. A @pytest.mark.tlaudit(lr_max=...) marker overrides this."
LR_CAUTION_HELP = f"{_LR_CAUTION} in tlaudit audits. A @pytest.mark.tlaudit(lr_caution=...) marker overrides this."
FAIL_ON_HELP = f"tlaudit audits: {_FAIL_ON}. A @pytest.mark.tlaudit(fail_on=...) marker overrides this."
REPORT_HELP = (
    "write every tlaudit audit of the session to this JSON file, keyed by test node ID "
    "(a list where a test audited more than once); under pytest-xdist the controller merges the workers' audits."
)
MARKER_LINE = (
    "tlaudit(lr_max=None, lr_caution=None, select=None, ignore=None, fail_on=None): options for the tlaudit fixture's audits "
    "in this test; precedence: marker > --tlaudit-* options > tlaudit_* ini keys > defaults."
)
SUPPRESS_MARKER_LINE = (
    "tlaudit_suppress(check_id, reason): in this test's audits, report the check's findings as suppressed "
    "with the reason instead of failing on them (like TransferSetup(ignore=...)); one marker per check."
)
SETUP_MARKER_LINE = (
    "tlaudit_setup: collect this module-level function (no arguments, returns a tlaudit.TransferSetup) "
    "as one test item per audit check, e.g. test_models.py::resnet_setup[head-size]."
)


def add_options(parser: pytest.Parser) -> None:
    """The ``--tlaudit-*`` options and the ``tlaudit_*`` ini keys, with one help text each."""
    group = parser.getgroup("tlaudit", "transfer-learning audits (tlaudit)")
    group.addoption("--tlaudit-lr-max", dest="tlaudit_lr_max", metavar="LR", default=None, help=LR_MAX_HELP)
    group.addoption("--tlaudit-lr-caution", dest="tlaudit_lr_caution", metavar="LR", default=None, help=LR_CAUTION_HELP)
    group.addoption("--tlaudit-fail-on", dest="tlaudit_fail_on", metavar="error|warning", default=None, help=FAIL_ON_HELP)
    group.addoption("--tlaudit-report", dest="tlaudit_report", metavar="PATH", default=None, help=REPORT_HELP)
    parser.addini("tlaudit_lr_max", LR_MAX_HELP, default=None)
    parser.addini("tlaudit_lr_caution", LR_CAUTION_HELP, default=None)
    parser.addini("tlaudit_fail_on", FAIL_ON_HELP, default=None)
    parser.addini("tlaudit_report", REPORT_HELP, default=None)


@dataclasses.dataclass(frozen=True)
class Setting:
    value: Any
    source: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """The options from the command line and the ini file, validated; None where neither sets one."""

    lr_max: Setting | None = None
    lr_caution: Setting | None = None
    fail_on: Setting | None = None
    report: Path | None = None


def _parse_lr_caution(value: object, source: str) -> float:
    try:
        return parse_lr_max(value, source)
    except ValueError as err:
        raise ValueError(str(err).replace("invalid lr_max", "invalid lr_caution")) from None


def read_settings(config: pytest.Config) -> Settings:
    """The command line over the ini file; bad values stop the run with a usage error naming their source."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    ini_dir = config.inipath.parent if config.inipath is not None else config.rootpath
    for name, parse in (("lr_max", parse_lr_max), ("lr_caution", _parse_lr_caution), ("fail_on", parse_fail_on), ("report", None)):
        option, ini = f"--tlaudit-{name.replace('_', '-')}", f"tlaudit_{name}"
        raw = config.getoption(ini)
        source, base = option, config.invocation_params.dir
        if raw is None or raw == "":
            raw = config.getini(ini)
            source, base = f"{ini} in ini", ini_dir
        if raw is None or raw == "" or raw == []:
            continue
        if parse is None:
            values[name] = base / Path(str(raw).strip())
            continue
        try:
            values[name] = Setting(parse(raw, source), source)
        except ValueError as err:
            problems.append(f"tlaudit: {err}")
    if problems:
        raise pytest.UsageError(*problems)
    return Settings(**values)


@dataclasses.dataclass(frozen=True)
class AuditOptions:
    """The options in effect for a test's audits, and where each came from (``sources``).

    ``lr_max`` None means the setup's own ``lr_max`` (else the engine's default); ``select``/``ignore``
    None mean every check / none.
    """

    fail_on: str = "error"
    lr_max: float | None = None
    lr_caution: float | None = None
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    suppress: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Check ID -> reason from ``@pytest.mark.tlaudit_suppress``; added to the setup's ``ignore``."""

    def apply(self, setup: Any) -> Any:
        """``setup`` (a TransferSetup) with this test's ``lr_max``, ``lr_caution`` and suppressions, by
        the rule every override follows (:meth:`tlaudit.TransferSetup.with_overrides`; the marker's
        reason wins)."""
        return setup.with_overrides(lr_max=self.lr_max, lr_caution=self.lr_caution, ignore=self.suppress or None)


class MarkerError(ValueError):
    """A ``@pytest.mark.tlaudit`` marker with an unknown keyword, a bad value or an unknown check ID."""


def _marker_kwargs(marks: Iterable[pytest.Mark], where: str) -> dict[str, Any]:
    """The keywords of the ``tlaudit`` marks, closest first (the closest wins per keyword), validated."""
    merged: dict[str, Any] = {}
    for mark in marks:
        if mark.args:
            raise MarkerError(
                f"@pytest.mark.tlaudit takes keyword arguments only: {mark.args!r} ({where}); expected {', '.join(MARKER_KEYWORDS)}"
            )
        for key, value in mark.kwargs.items():
            if key not in MARKER_KEYWORDS:
                near = difflib.get_close_matches(key, MARKER_KEYWORDS, n=1)
                hint = f"; did you mean {near[0]}?" if near else ""
                raise MarkerError(f"@pytest.mark.tlaudit: unknown keyword: {key!r} ({where}); expected {', '.join(MARKER_KEYWORDS)}{hint}")
            if value is not None:  # None means "not set here": a farther marker or the options decide
                merged.setdefault(key, value)
    out: dict[str, Any] = {}
    for key, value in merged.items():
        try:
            if key in ("lr_max", "lr_caution"):
                parse = parse_lr_max if key == "lr_max" else _parse_lr_caution
                out[key] = parse(value, f"@pytest.mark.tlaudit({key}=...) on {where}")
            elif key == "fail_on":
                out[key] = parse_fail_on(value, f"@pytest.mark.tlaudit(fail_on=...) on {where}")
            else:
                out[key] = parse_check_ids(value, where)
        except ValueError as err:
            if key in ("select", "ignore"):
                raise MarkerError(
                    f"@pytest.mark.tlaudit: {key} must be check IDs (a list of str or a comma-separated str): {value!r} ({where})"
                ) from None
            raise MarkerError(f"tlaudit: {err}") from None
    if "select" in out or "ignore" in out:
        try:
            validate_check_ids(out.get("select"), out.get("ignore"), f"@pytest.mark.tlaudit on {where}")
        except ValueError as err:
            raise MarkerError(str(err)) from None
    return out


def marker_suppressions(marks: Iterable[pytest.Mark], where: str) -> dict[str, str]:
    """Check ID -> reason from ``@pytest.mark.tlaudit_suppress(check_id, reason)`` marks, closest first.

    Needs no torch: check IDs are looked up with :func:`tlaudit.options.declared_check_ids`.

    Raises:
        MarkerError: not exactly a check ID and a non-empty reason, or an unknown check ID.
    """
    known: dict[str, str] | None = None
    found: dict[str, str] = {}
    usage = '@pytest.mark.tlaudit_suppress("frozen-bn-train", reason="AdaBN on purpose")'
    for mark in marks:
        args = list(mark.args)
        kwargs = dict(mark.kwargs)
        if len(args) == 2 and "reason" not in kwargs:
            kwargs["reason"] = args.pop()
        reason = kwargs.pop("reason", None)
        if len(args) != 1 or not isinstance(args[0], str) or kwargs:
            raise MarkerError(
                f"@pytest.mark.tlaudit_suppress takes a check ID and a reason: {mark.args!r}, {mark.kwargs!r} ({where}); e.g. {usage}"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise MarkerError(f"@pytest.mark.tlaudit_suppress: a suppression needs a reason: {args[0]!r} ({where}); e.g. {usage}")
        known = known if known is not None else declared_check_ids()
        if args[0] not in known:
            raise MarkerError(f"@pytest.mark.tlaudit_suppress on {where}: {unknown_check_message(args[0], known, 'suppress')}")
        found.setdefault(known[args[0]], reason.strip())
    return found


def marker_options(
    settings: Settings, marks: Iterable[pytest.Mark], where: str, suppress_marks: Iterable[pytest.Mark] = ()
) -> AuditOptions:
    """The options for one test or setup: its ``tlaudit`` marks over the settings over the defaults,
    and the suppressions of its ``tlaudit_suppress`` marks.

    Raises:
        MarkerError: a mark with an unknown keyword, a bad value or an unknown check ID.
    """
    suppress = marker_suppressions(suppress_marks, where)
    marker = _marker_kwargs(marks, where)
    sources: dict[str, str] = {}
    resolved: dict[str, Any] = {}
    marker_source = f"@pytest.mark.tlaudit on {where}"
    for key, setting in (("fail_on", settings.fail_on), ("lr_max", settings.lr_max), ("lr_caution", settings.lr_caution)):
        if key in marker:
            resolved[key], sources[key] = marker[key], marker_source
        elif setting is not None:
            resolved[key], sources[key] = setting.value, setting.source
        else:
            sources[key] = "default" if key == "fail_on" else f"the setup's {key} (default)"
    for key in ("select", "ignore"):
        if key in marker:
            resolved[key], sources[key] = marker[key], marker_source
        else:
            sources[key] = "default"
    if suppress:
        sources["suppress"] = f"@pytest.mark.tlaudit_suppress on {where}"
    return AuditOptions(**resolved, sources=sources, suppress=suppress)
