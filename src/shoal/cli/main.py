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
    "config": (
        "shoal.cli.secret",
        "config",
        "Validate a Compose project and print it normalised; manage configs.",
    ),
    "secret": ("shoal.cli.secret", "secret", "Secrets: create, ls, inspect, rm, rotate-key."),
    "deploy": ("shoal.cli.stack", "deploy", "Create or update a stack from Compose files."),
    "ls": ("shoal.cli.stack", "ls", "List stacks."),
    "rm": ("shoal.cli.stack", "rm", "Remove stacks and their workloads."),
    "services": ("shoal.cli.service", "services", "List services with their replicas."),
    "scale": ("shoal.cli.service", "scale", "Set replica counts: STACK/SERVICE=N."),
    "update": ("shoal.cli.service", "update", "Change a service's image or env; resume updates."),
    "rollback": ("shoal.cli.service", "rollback", "Put a service back on its previous version."),
    "service": ("shoal.cli.service", "service", "A service's version history."),
    "ps": ("shoal.cli.task", "ps", "List tasks, and why one is pending or failed."),
    "logs": ("shoal.cli.task", "logs", "Print a task's or a service's logs."),
    "inspect": ("shoal.cli.task", "inspect", "A task or a service in full, as JSON."),
    "events": ("shoal.cli.task", "events", "Print cluster events (-f to follow)."),
    "exec": ("shoal.cli.exec", "exec_", "Run a command in a running task."),
    "stats": ("shoal.cli.exec", "stats", "Show CPU, memory and pids usage of running tasks."),
    "nodes": ("shoal.cli.node", "nodes", "List nodes."),
    "node": ("shoal.cli.node", "node", "Inspect or update a node (labels, availability)."),
    "up": ("shoal.cli.daemon", "up", "Run a one-node cluster (server + agent)."),
    "down": ("shoal.cli.daemon", "down", "Remove every stack and stop `shoal up`."),
    "server": ("shoal.cli.daemon", "server", "Run the server alone."),
    "agent": ("shoal.cli.daemon", "agent", "Run an agent that joins a server."),
    "image": ("shoal.cli.image", "image", "Manage images here: import, ls, inspect, tag, rm."),
    "kv": ("shoal.cli.kv", "kv", "Read, write and watch keys; leases."),
    "catalog": ("shoal.cli.kv", "catalog", "Discover services: VIPs, ports, task endpoints."),
    "network": ("shoal.cli.network", "network", "List and inspect networks."),
    "volume": ("shoal.cli.volume", "volume", "List, inspect, remove and prune named volumes."),
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
