"""`shoal deploy`, `shoal ls`, `shoal rm`: stacks."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from shoal.cli.common import client, handle_errors, output_option, print_rows
from shoal.cli.output import fail, warn


@click.command("deploy")
@click.option("-f", "--file", "files", multiple=True, help="Compose file (repeatable).")
@click.option("-n", "--name", "name", help="Stack name (default: the project name).")
@click.option("--env-file", "env_files", multiple=True, help="Environment file (repeatable).")
@click.option("--profile", "profiles", multiple=True, help="Activate a profile (repeatable).")
@click.option("--wait", is_flag=True, help="Block until every service converged or failed.")
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="Seconds, with --wait."
)
@click.option("--dry-run", is_flag=True, help="Print the plan (field diff) and change nothing.")
@output_option
@handle_errors
def deploy(
    files: tuple[str, ...],
    name: str | None,
    env_files: tuple[str, ...],
    profiles: tuple[str, ...],
    wait: bool,
    timeout: float,
    dry_run: bool,
    output: str,
) -> None:
    """Create or update a stack from Compose files.

    With --wait it shows each changed service's progress (updated/total, healthy, failing
    tasks with their last error and log lines) until the deploy is decided, and exits 0 when
    every changed service converged and is healthy, 1 when one failed (its update paused or
    rolled back: the message says which), 2 on bad input (the Compose file, or a request the
    server refuses), 3 on timeout. `--output json` prints a report for machines: per service
    the versions before and after, task outcomes, timings and any rollback reason.
    """
    from shoal.cli.volume import check_storage_locally
    from shoal.compose.loader import LoadOptions, load_project
    from shoal.model.compose import to_compose_dict
    from shoal.model.errors import Conflict, Invalid

    started = time.time()
    try:
        loaded = load_project(
            LoadOptions(
                files=files,
                project_name=name,
                env_files=env_files or None,
                profiles=profiles or None,
            )
        )
        check_storage_locally(loaded)
    except Invalid as exc:
        fail(exc, BAD_INPUT)
    for warning in loaded.warnings:
        warn(warning)
    from shoal.cli.secret import read_values, without_values

    try:
        values = read_values(loaded.project)  # on this machine; sent with the deploy only
    except Invalid as exc:
        fail(exc, BAD_INPUT)
    if not dry_run:
        _build_images(loaded.project)
    stack = loaded.project.name or ""
    with client() as api:
        try:
            doc = without_values(to_compose_dict(loaded.project))
            result = api.deploy(stack, doc, dry_run=dry_run, secrets=values)
        except (Invalid, Conflict) as exc:  # refused: a name clash counts as bad input too
            fail(exc, BAD_INPUT)
        if output == "json" and not wait:
            click.echo(json.dumps(result, indent=2))
            return
        if output != "json":
            _print_plan(result["plan"], dry_run)
        if dry_run or not wait:
            return
        from shoal.cli.progress import wait_for_deploy

        code = wait_for_deploy(api, stack, result["plan"], timeout, output, started)
    sys.exit(code)


BAD_INPUT = 2


def _build_images(project: Any) -> None:
    """Compose `build:` sections, built into this machine's image store before deploying.

    The image is named by the service's `image:` or `<project>-<service>`, as Compose names it.
    (Nodes elsewhere need the image pushed to a registry they can pull from.)
    """
    from pathlib import Path

    from shoal.cli.image import local_store

    wanted = {n: s for n, s in project.services.items() if s.build is not None}
    if not wanted:
        return
    from shoal.images.build import build

    store = local_store()
    for name, svc in wanted.items():
        spec = svc.build
        context = Path(spec.context or ".")
        dockerfile = None
        if spec.dockerfile:
            dockerfile = Path(spec.dockerfile)
            dockerfile = dockerfile if dockerfile.is_absolute() else context / dockerfile
        tag = svc.image or f"{project.name}-{name}"
        click.echo(f"building {name} → {tag}", err=True)
        args = {k: v for k, v in (spec.args or {}).items() if v is not None}
        build(
            store,
            context,
            dockerfile,
            tag=tag,
            build_args=args,
            target=spec.target,
            log=lambda line: click.echo(f"  {line}", err=True),
        )
        svc.image = tag


def _print_plan(plan: dict[str, Any], dry_run: bool) -> None:
    verb = "would" if dry_run else "will"
    for svc in plan["services"]:
        action = svc["action"]
        if action == "unchanged":
            click.echo(f"  {svc['name']}: unchanged (version {svc['version']})")
            continue
        click.echo(
            f"  {svc['name']}: {verb} {action}"
            + (f" → version {svc['version']}" if action == "update" else "")
        )
        for change in svc["changes"]:
            click.echo(
                f"      {change['path']}: {json.dumps(change['old'])} → {json.dumps(change['new'])}"
            )


@click.command("ls")
@output_option
@handle_errors
def ls(output: str) -> None:
    """List stacks."""
    with client() as api:
        rows = api.stacks()
    for row in rows:
        row["state"] = "removing" if row.get("removing") else "active"
    print_rows(rows, ["name", "service_count", "running_tasks", "state"], output)


@click.command("rm")
@click.argument("stacks", nargs=-1, required=True)
@click.option("--wait", is_flag=True, help="Block until every task is gone.")
@click.option("--volumes", is_flag=True, help="Also delete the named volumes they own.")
@handle_errors
def rm(stacks: tuple[str, ...], wait: bool, volumes: bool) -> None:
    """Remove stacks: stop their tasks and delete their services. Named volumes stay (a
    redeploy finds their data) unless --volumes: then they go once their tasks are gone."""
    from shoal.cli.volume import owned_volumes

    with client() as api:
        for name in stacks:
            if volumes:
                api.request("DELETE", f"/v1/stacks/{name}", params={"volumes": "true"})
            else:
                api.remove_stack(name)
            click.echo(f"removing stack {name}")
        if wait:
            deadline = time.monotonic() + 120
            while any(s["name"] in stacks for s in api.stacks()) or (
                volumes and owned_volumes(api, stacks)
            ):
                if time.monotonic() > deadline:
                    fail("stacks still present after 120s")
                time.sleep(0.25)
