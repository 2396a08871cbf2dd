"""Tests of ``tlaudit/auditing/engine/``, one module per module there."""
