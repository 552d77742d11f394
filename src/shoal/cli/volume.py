"""`shoal volume ls | inspect | rm | prune`: named volumes, the node each lives on, who uses it.

Volumes are created by `shoal deploy` (one per top-level `volumes:` entry) and outlive `shoal
rm STACK` unless `--volumes` is given; `prune` removes the ones no stack declares any more.
Also here: the storage checks `shoal deploy` runs before sending a project, with the error
located in the Compose file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from shoal.cli.common import ago, client, handle_errors, output_option, print_rows
from shoal.cli.output import fail
from shoal.model.errors import ComposeError, KeyPath, Location


def locate(files: Sequence[Path], path: KeyPath) -> Location | None:
    """Where `path` was written in the Compose files (the last file that says it wins), or
    its nearest written ancestor."""
    from shoal.compose.yamlsrc import load_documents

    sources = []
    for file in files:
        try:
            sources += [d.source for d in load_documents(file.read_text("utf-8-sig"), str(file))]
        except (OSError, UnicodeDecodeError, ComposeError):
            continue
    for source in reversed(sources):
        if path in source.positions:
            return source.locate(path)
    for source in reversed(sources):
        found = source.locate(path)
        if found is not None:
            return found
    return None


def check_storage_locally(loaded: Any) -> None:
    """The storage checks the server would make (tmpfs sizes, driver_opts, volume names),
    made here so the error names the file and line."""
    from shoal.model.volume import check_storage

    try:
        check_storage(loaded.document)
    except ComposeError as exc:
        if exc.location is None:
            exc.location = locate(loaded.files, exc.path)
        raise


def owned_volumes(api: Any, stacks: Sequence[str]) -> list[str]:
    """The volumes the given stacks own (still there)."""
    found = api.request("GET", "/v1/volumes")
    return [v["name"] for v in found if v["stack"] in stacks]


@click.group("volume")
def volume() -> None:
    """Named volumes: list, inspect, remove, prune."""


@volume.command("ls")
@click.option("--stack", help="Only the volumes this stack owns.")
@output_option
@handle_errors
def ls(stack: str | None, output: str) -> None:
    """List volumes: owner stack, driver, node, state (in use, unused, removing)."""
    with client() as api:
        found = api.request("GET", "/v1/volumes", params={"stack": stack} if stack else None)
    rows = [
        {
            **v,
            "node": v["node"] or v["node_id"][:12] or "-",
            "tasks": len(v["tasks"]),
            "created": ago(v["created_at"]),
            "options": ",".join(f"{k}={val}" for k, val in v["driver_opts"].items()),
        }
        for v in found
    ]
    columns = ["name", "stack", "driver", "options", "node", "state", "tasks", "created"]
    print_rows(rows if output == "table" else found, columns, output)


@volume.command("inspect")
@click.argument("name")
@handle_errors
def inspect(name: str) -> None:
    """One volume as JSON: record, node, the tasks using it, the stacks declaring it."""
    with client() as api:
        click.echo(json.dumps(api.request("GET", f"/v1/volumes/{name}"), indent=2))


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@handle_errors
def rm(names: tuple[str, ...]) -> None:
    """Delete volumes and their data (refused while a task that has not finished uses one)."""
    with client() as api:
        for name in names:
            api.request("DELETE", f"/v1/volumes/{name}")
            click.echo(name)


@volume.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def prune(force: bool) -> None:
    """Delete every volume no stack declares and no task uses, with its data."""
    if not force:
        click.confirm("Delete every volume no stack declares, with its data?", abort=True)
    with client() as api:
        result = api.request("POST", "/v1/volumes/prune")
    for name in result["removed"]:
        click.echo(name)
    for name, why in sorted(result["failed"].items()):
        click.echo(f"error: {name}: {why}", err=True)
    if result["failed"]:
        fail(f"{len(result['failed'])} volume(s) not removed")
