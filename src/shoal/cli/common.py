"""What every client-side command shares: the client, output formats, error reporting."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click

from shoal.cli.output import fail

F = TypeVar("F", bound=Callable[..., Any])

output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format (json for scripts).",
)


def client() -> Any:
    from shoal.client import Client

    return Client()


def handle_errors(fn: F) -> F:
    """Turn ShoalErrors into `error: …` on stderr and exit status 1 (no tracebacks)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from shoal.model.errors import ShoalError

        try:
            return fn(*args, **kwargs)
        except ShoalError as exc:
            fail(exc)

    return wrapper  # type: ignore[return-value]


def ago(timestamp: float | None, now: float | None = None) -> str:
    if not timestamp:
        return "-"
    import time

    seconds = max(0.0, (now or time.time()) - timestamp)
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], output: str, title: str | None = None
) -> None:
    """Rows as a rich table, or as a JSON list (every key, not only the columns)."""
    if output == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column.upper().replace("_", " "))
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console(width=200).print(table)
