"""Where the shared Compose corpus lives (../shared beside the checkout, read-only)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
CORPUS = SHARED / "compose-corpus"
SCHEMA = REPO / "src" / "shoal" / "compose" / "compose-spec.json"
