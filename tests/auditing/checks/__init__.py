"""Tests of ``tlaudit/auditing/checks/``, one module per module there."""
