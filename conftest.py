"""Collection rules for the whole repository: an integration module whose framework is not installed
is left out of the doctest run over the package (its tests skip through ``pytest.importorskip``), and
docs pages whose examples need a working directory of their own are run by their own test."""

from __future__ import annotations

import importlib.util

_INTEGRATIONS = {"tlaudit/integrations/lightning.py": "lightning", "tlaudit/integrations/huggingface.py": "transformers"}

collect_ignore = [path for path, framework in _INTEGRATIONS.items() if importlib.util.find_spec(framework) is None]
# its examples write folders: tests/test_extract_docs.py runs them in a temporary directory instead
collect_ignore.append("docs/extraction.md")
