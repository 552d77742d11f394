"""`shoal nodes` and `shoal node inspect|update`."""

from __future__ import annotations

import json

import click

from shoal.cli.common import ago, client, handle_errors, output_option, print_rows
from shoal.cli.output import fail


@click.command("nodes")
@output_option
@handle_errors
def nodes(output: str) -> None:
    """List nodes: status, availability, resources, labels."""
    with client() as api:
        found = api.nodes()
    rows = []
    for n in found:
        rows.append(
            {
                **n.model_dump(mode="json"),
                "hostname": n.description.hostname,
                "state": n.status.state.value,
                "availability": n.spec.availability.value,
                "cpus": n.description.resources.nano_cpus / 1e9,
                "memory": f"{n.description.resources.memory_bytes / 2**30:.1f}GiB",
                "infra": n.description.engine_labels.get("infra", ""),
                "heartbeat": ago(n.status.heartbeat_at),
                "labels": ",".join(f"{k}={v}" for k, v in sorted(n.spec.labels.items())),
            }
        )
    print_rows(
        rows,
        [
            "id",
            "hostname",
            "state",
            "availability",
            "cpus",
            "memory",
            "infra",
            "heartbeat",
            "labels",
        ],
        output,
    )


@click.group("node")
def node() -> None:
    """Inspect or change one node."""


@node.command("inspect")
@click.argument("node_id")
@handle_errors
def inspect(node_id: str) -> None:
    """Print a node as JSON."""
    with client() as api:
        click.echo(json.dumps(api.node(node_id).model_dump(mode="json"), indent=2))


@node.command("update")
@click.argument("node_id")
@click.option("--label", "labels", multiple=True, help="k=v sets, k= removes (repeatable).")
@click.option("--availability", type=click.Choice(["active", "pause", "drain"]))
@handle_errors
def update(node_id: str, labels: tuple[str, ...], availability: str | None) -> None:
    """Set labels or availability (drain moves tasks away; pause takes no new ones)."""
    changes: dict[str, object] = {}
    if labels:
        parsed: dict[str, str | None] = {}
        for label in labels:
            key, sep, value = label.partition("=")
            if not sep or not key:
                fail(f"invalid label {label!r}: expected KEY=VALUE (or KEY= to remove)")
            parsed[key] = value or None
        changes["labels"] = parsed
    if availability:
        changes["availability"] = availability
    if not changes:
        fail("nothing to change: give --label or --availability")
    with client() as api:
        updated = api.update_node(node_id, **changes)
    click.echo(f"node {updated.id} ({updated.description.hostname}) updated")
