"""Callbacks for training frameworks, each an optional extra: ``tlaudit.integrations.lightning``
(``tlaudit[lightning]``) and ``tlaudit.integrations.huggingface`` (``tlaudit[huggingface]``). They
audit on the same engine path as :func:`tlaudit.watch`."""
