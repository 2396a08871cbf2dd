"""Callbacks for training frameworks, each an optional extra: ``tlaudit.integrations.lightning``
(``tlaudit[lightning]``). They audit on the same engine path as :func:`tlaudit.watch`."""
