"""`shoal network ls | inspect`: the networks stacks declared, their subnets and users."""

from __future__ import annotations

import json

import click

from shoal.cli.common import client, handle_errors, output_option, print_rows


@click.group("network")
def network() -> None:
    """List and inspect networks (they come and go with the stacks that declare them)."""


@network.command("ls")
@output_option
@handle_errors
def ls(output: str) -> None:
    """List networks: subnet, gateway, internal, services and live tasks on each."""
    with client() as api:
        found = api.request("GET", "/v1/networks")
    rows = [
        {**n, "internal": "yes" if n["internal"] else "", "services": ",".join(n["services"])}
        for n in found
    ]
    columns = ["name", "stack", "subnet", "gateway", "bridge", "internal", "services", "tasks"]
    print_rows(rows if output == "table" else found, columns, output)


@network.command("inspect")
@click.argument("name")
@handle_errors
def inspect(name: str) -> None:
    """One network as JSON, with every live task's address and aliases on it."""
    with client() as api:
        click.echo(json.dumps(api.request("GET", f"/v1/networks/{name}"), indent=2))
