"""``python -m xaikit``: the command line (see :mod:`xaikit.cli`)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
