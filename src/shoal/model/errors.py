"""shoal's small error taxonomy.

Every error a user can cause is one of these, raised with context. Third-party exceptions are
translated at the boundary where they occur; the HTTP mapping lives in the server alone.
"""

from __future__ import annotations

from dataclasses import dataclass


class ShoalError(Exception):
    """Base of every error shoal raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class NotFound(ShoalError):
    """The named object does not exist."""


class Conflict(ShoalError):
    """The write lost a race (revision mismatch) or clashes with existing state."""


class Invalid(ShoalError):
    """The input is wrong; the message says what and where."""


class Unavailable(ShoalError):
    """A dependency (store, agent, registry) cannot be reached right now; retrying may help."""


class Unauthorized(ShoalError):
    """Missing or wrong credentials."""


class Forbidden(ShoalError):
    """The credentials are good but do not reach this (a token scoped to one stack)."""


class Gone(ShoalError):
    """What was asked for existed once and is no longer kept (a compacted revision)."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a Compose file a value was written."""

    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """`("services", "web", "ports", 1)` → `services.web.ports[1]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class ComposeError(Invalid):
    """A Compose file is wrong: names the file, line, column and key path when they are known.

    `path` is the key path inside the document (`("services", "web", "ports", 1)`); the loader
    fills in `location` from it when the raiser did not know the file.
    """

    def __init__(
        self,
        message: str,
        *,
        path: KeyPath = (),
        location: Location | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.location = location

    @property
    def path_str(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        where = str(self.location) if self.location else ""
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text
