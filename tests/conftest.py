"""Shared pytest set-up: the repository root importable, and where tests may write."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # The packages are installed editable by scripts/setup.sh; this keeps a plain checkout
    # (pytest run from the repository root without installing) working too.
    sys.path.insert(0, str(REPO_ROOT))
