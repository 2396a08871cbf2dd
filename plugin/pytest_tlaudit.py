"""pytest plugin for tlaudit. Loads without importing torch; see the fixtures for the features."""
from __future__ import annotations
