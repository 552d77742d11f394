"""Markers for the Compose YAML tags `!reset` and `!override`.

The YAML reader turns `!reset X` into `Reset()` and `!override X` into `Override(X)`; the merge
step consumes them, so they never reach the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reset:
    """`!reset`: drop the value inherited from earlier files (or from `extends`)."""


@dataclass(frozen=True, slots=True)
class Override:
    """`!override V`: replace the inherited value with V instead of merging."""

    value: Any
