"""Tests of ``tlaudit/auditing/``, mirroring its modules."""
