"""``python -m tlaudit``: the same as the ``tlaudit`` command."""

from __future__ import annotations

import sys

from tlaudit.cli import main

if __name__ == "__main__":
    sys.exit(main())
