"""The library's errors that need no torch to be raised or caught."""

from __future__ import annotations

__all__ = ["SetupError", "UsageError"]


class SetupError(ValueError):
    """The setup could not be used: a bad field, a file without ``setup()``, a model that cannot take the sample.

    ``field`` names the TransferSetup field (or ``"setup"`` for loading problems) when known.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


SetupError.__module__ = "tlaudit"  # tracebacks name the public path


class UsageError(Exception):
    """A bad option value found after parsing (a model name, an output path); the CLI exits 2 with the message."""
