"""Where a finding points in the setup file: the line that built the offending object.

When the audit runs from a setup file (``tlaudit audit file.py``), :func:`locate` gives every finding
a :class:`~tlaudit.auditing.findings.Location`. Locations are found without running anything again:

1. A check declares what its findings point at (``points_to`` on ``@register``, a
   :class:`~tlaudit.auditing.checks.PointsTo`). Findings that point at ``predict``
   (``eval-mode``, ``eval-nondeterministic``, ``grad-inference``) point at the ``def`` line of
   the function passed as ``predict=``, found from its code object, in whatever file defines it.
2. Otherwise the setup file is parsed (:mod:`ast`) and searched for what built the object the
   finding points at, first in the setup function, then in the rest of the file (helpers such as ``build()``):

   * ``optimizer``: the construction of the optimizer passed as ``optimizer=`` (the assignment of
     the name passed, or the inline call), the scheduler's for a finding about the scheduler;
   * ``freeze``: the freeze statement, a line touching ``requires_grad`` (``p.requires_grad = False``,
     or the comparison ``==`` written by mistake) or calling
     ``freeze``/``freeze_backbone``/``freeze_batchnorm``/``eval_frozen_batchnorm``;
   * ``head``: the assignment of the head (``TransferSetup.head``, else ``find_heads``) such as
     ``model.fc = ...`` or ``model.classifier[1] = ...``, or the ``replace_head`` call; ``subject``:
     the assignment of the module the finding names; either else the construction of ``model=``;
   * ``transform``: the ``Normalize(...)`` call, else the construction of ``transform=``;
   * ``sample``, ``targets``: the construction of ``sample=`` / ``targets=``;
   * ``weights``: the ``load_state_dict`` call, else the construction of ``weights=``.

3. When none of these is found (a setup built elsewhere, a name assigned in another module), the
   finding points at the setup function's ``def`` line (anchor ``"setup function"``).

Paths are relative to the current directory when the file is inside it (as code scanning expects,
run from the repository root), absolute otherwise.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlaudit.auditing.checks._registry import PointsTo
from tlaudit.auditing.findings import Finding, Location

if TYPE_CHECKING:
    from tlaudit.auditing.report import Report
    from tlaudit.auditing.setup import TransferSetup

__all__ = ["locate", "source_file", "display_path"]

_FREEZE_CALLS = {"freeze", "freeze_backbone", "freeze_batchnorm", "eval_frozen_batchnorm", "requires_grad_"}


def source_file(spec: str) -> Path | None:
    """The Python file a setup spec (``file.py``, ``file.py:function``, ``module:function``) names."""
    from tlaudit.auditing.setup import split_spec

    target, _ = split_spec(spec)
    if target.endswith(".py") or Path(target).exists():
        return Path(target)
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    origin = getattr(found, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def display_path(path: Path | str) -> str:
    """``path`` relative to the current directory when inside it (POSIX separators), else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


class _Source:
    """The parsed setup file and its setup function, searched setup function first."""

    def __init__(self, path: Path, function: str) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.function: ast.FunctionDef | ast.AsyncFunctionDef | None = next(
            (node for node in self.tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function),
            None,
        )

    def scopes(self) -> Iterator[ast.AST]:
        """The setup function, then every other top-level function, then the module."""
        if self.function is not None:
            yield self.function
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is not self.function:
                yield node
        yield self.tree

    def first(self, match: Callable[[ast.AST], bool]) -> int | None:
        for scope in self.scopes():
            lines = [node.lineno for node in ast.walk(scope) if isinstance(node, ast.stmt | ast.expr) and match(node)]
            if lines:
                return min(lines)
        return None

    def field_line(self, field: str) -> int | None:
        """The line that built what the setup passes as ``field=``: the last assignment of the name
        passed before the ``TransferSetup(...)`` call, or the keyword's own line for an inline value."""
        for scope in self.scopes():
            for node in ast.walk(scope):
                if not (isinstance(node, ast.Call) and _callee(node) == "TransferSetup"):
                    continue
                for keyword in node.keywords:
                    if keyword.arg != field:
                        continue
                    value = keyword.value
                    if isinstance(value, ast.Name):
                        assigned = [
                            stmt.lineno
                            for stmt in ast.walk(scope)
                            if isinstance(stmt, (ast.Assign, ast.AnnAssign))
                            and stmt.lineno <= node.lineno
                            and any(
                                isinstance(t, ast.Name) and t.id == value.id
                                for target in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
                                for t in (target.elts if isinstance(target, ast.Tuple) else [target])
                            )
                        ]
                        if assigned:
                            return max(assigned)
                    return value.lineno
        return None


def _touches_requires_grad(node: ast.AST) -> bool:
    if isinstance(node, ast.Call):
        return _callee(node) in _FREEZE_CALLS
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Expr)):
        return any(isinstance(n, ast.Attribute) and n.attr == "requires_grad" for n in ast.walk(node))
    return False


def _assigns_module(name: str) -> Callable[[ast.AST], bool]:
    last = name.rsplit(".", 1)[-1]

    def match(node: ast.AST) -> bool:
        if isinstance(node, ast.Call):
            return _callee(node) == "replace_head"
        if not isinstance(node, ast.Assign):
            return False
        for target in node.targets:
            if isinstance(target, ast.Attribute) and target.attr == last:
                return True
            if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                if str(target.slice.value) == last:
                    return True
        return False

    return match


def _calls(*names: str) -> Callable[[ast.AST], bool]:
    return lambda node: isinstance(node, ast.Call) and _callee(node) in names


def _heads(setup: TransferSetup) -> list[str]:
    """The head module names: the setup's ``head``, else what :func:`tlaudit.find_heads` finds."""
    if setup.head:
        return list(setup.head)
    from tlaudit.surgery import find_heads

    try:
        return find_heads(setup.model)
    except (ValueError, TypeError):
        return []


def _code_location(func: Any, anchor: str) -> Location | None:
    call = next((vars(k)["__call__"] for k in type(func).__mro__ if "__call__" in vars(k)), None)  # a callable object's method
    code = getattr(func, "__code__", None) or getattr(call, "__code__", None)
    if code is None or not code.co_filename.endswith(".py") or not Path(code.co_filename).is_file():
        return None
    return Location(display_path(Path(code.co_filename)), code.co_firstlineno, anchor)


def _points_to(check_id: str) -> PointsTo:
    from tlaudit.auditing.checks import REGISTRY

    check = REGISTRY.get(check_id)
    return check.points_to if check is not None else PointsTo.SETUP


def _find(finding: Finding, setup: TransferSetup, source: _Source | None) -> Location | None:
    target = _points_to(finding.check)
    if target is PointsTo.PREDICT and setup.predict is not None:
        return _code_location(setup.predict, "predict function")
    if source is None:
        return None

    def at(line: int | None, anchor: str) -> Location | None:
        return Location(display_path(source.path), line, anchor) if line is not None else None

    if target is PointsTo.OPTIMIZER:
        if "scheduler" in finding.message:
            found = at(source.field_line("scheduler"), "scheduler construction")
            if found is not None:
                return found
        return at(source.field_line("optimizer"), "optimizer construction")
    if target is PointsTo.FREEZE:
        return at(source.first(_touches_requires_grad), "freeze statement") or at(
            source.field_line("frozen") or source.field_line("strategy"), "frozen part declared"
        )
    if target in (PointsTo.HEAD, PointsTo.SUBJECT):
        modules = [finding.subject] if target is PointsTo.SUBJECT else _heads(setup)
        for module in filter(None, modules):
            found = at(source.first(_assigns_module(module)), "module assignment")
            if found is not None:
                return found
        return at(source.field_line("model"), "model construction")
    if target is PointsTo.TRANSFORM:
        return at(source.first(_calls("Normalize")), "Normalize transform") or at(source.field_line("transform"), "transform construction")
    if target in (PointsTo.SAMPLE, PointsTo.TARGETS):
        return at(source.field_line(target.value), f"{target.value} construction")
    if target is PointsTo.WEIGHTS:
        return at(source.first(_calls("load_state_dict")), "load_state_dict call") or at(source.field_line("weights"), "weights declared")
    return None


def locate(report: Report, setup: TransferSetup, path: Path | str | None, function: str = "setup") -> Report:
    """``report`` with a :class:`~tlaudit.auditing.findings.Location` on every finding (suppressed ones too).

    ``path`` is the setup file and ``function`` the setup function in it. A finding whose object
    cannot be found points at the ``def`` line of the setup function; without a readable ``path``
    (or without that function in it) such findings keep no location.
    """
    source: _Source | None = None
    fallback: Location | None = None
    if path is not None and Path(path).is_file():
        try:
            source = _Source(Path(path), function)
        except (SyntaxError, UnicodeDecodeError, OSError):
            source = None
        if source is not None and source.function is not None:
            fallback = Location(display_path(source.path), source.function.lineno, "setup function")

    def place(finding: Finding) -> Finding:
        if finding.location is not None:
            return finding
        location = _find(finding, setup, source) or fallback
        return dataclasses.replace(finding, location=location) if location is not None else finding

    return dataclasses.replace(
        report,
        findings=tuple(place(f) for f in report.findings),
        suppressed=tuple(dataclasses.replace(s, finding=place(s.finding)) for s in report.suppressed),
    )
