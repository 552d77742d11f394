"""The project (stack) name: where it comes from and what it may look like."""

from __future__ import annotations

import re

from shoal.model.errors import ComposeError

_VALID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DROP = re.compile(r"[^a-z0-9_-]")


def from_directory(dirname: str) -> str:
    """`UNNORMALIZED PATH` → `unnormalizedpath`: a project named after its directory."""
    name = _DROP.sub("", dirname.lower())
    return name.lstrip("_-")


def check(name: str) -> str:
    if not name:
        raise ComposeError(
            "project name must not be empty",
            hint="add `name:` to the Compose file or pass -n NAME",
        )
    if not _VALID.match(name):
        raise ComposeError(
            f'invalid project name "{name}": must consist only of lowercase alphanumeric '
            "characters, hyphens, and underscores as well as start with a letter or number"
        )
    return name
