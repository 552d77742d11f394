"""Entry point of the `shoal` command: a click group whose subcommands load on first use.

Subcommand modules are imported lazily so `shoal --help` stays fast (no pydantic, jsonschema or
HTTP client at start-up).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from shoal import __version__

# name → (module, attribute, one-line help shown by `shoal --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "config": ("shoal.cli.config", "config", "Validate a Compose project and print it normalised."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """shoal runs Compose applications on one machine or many, with real containers."""


def main(argv: list[str] | None = None) -> Any:
    from shoal.model.errors import ShoalError

    try:
        return cli.main(args=argv, prog_name="shoal", standalone_mode=True)
    except ShoalError as exc:  # pragma: no cover - commands report their own errors
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
