"""Audit a setup file: load the ``setup()`` a spec names, apply the caller's overrides, audit, and point
every finding at the line of the setup file that built the offending object.

What ``tlaudit audit PATH`` does for each file, and what a folder audit does for every file in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tlaudit.auditing.report import Report
from tlaudit.errors import SetupError

if TYPE_CHECKING:
    from tlaudit.auditing.checks import Check

__all__ = ["audit_file"]


def audit_file(
    spec: str,
    *,
    select: Iterable[str | Check] | str | None = None,
    ignore: Iterable[str | Check] | str | None = None,
    progress: Callable[[str], None] | None = None,
    **overrides: Any,
) -> Report:
    """Load the setup ``spec`` names (see :func:`tlaudit.load_setup`), apply ``overrides``
    (:meth:`tlaudit.TransferSetup.with_overrides`) and audit it; findings get locations in the file
    (see :mod:`tlaudit.auditing.locations`).

    Raises:
        SetupError: the setup could not be loaded or run; the message names the file, function and field.
    """
    from tlaudit.auditing.engine import audit
    from tlaudit.auditing.locations import locate, source_file
    from tlaudit.auditing.setup import load_setup, split_spec

    setup = load_setup(spec)
    target, func = split_spec(spec)
    where = f"{target}:{func}()"
    try:
        setup = setup.with_overrides(**overrides)
        report = audit(setup, select, ignore, progress=progress)
        return locate(report, setup, source_file(spec), func)
    except SetupError as err:
        raise SetupError(f"{where}: {err}", field=err.field) from err
    except Exception as err:  # a crash must not read as "findings" (exit 1) or as a clean run
        raise SetupError(f"{where}: the audit raised {type(err).__name__}: {err}") from err
