"""`shoal services`, `shoal scale`, `shoal update`, `shoal rollback`, `shoal service history`."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from shoal.cli.common import ago, client, handle_errors, output_option, print_rows
from shoal.cli.output import fail
from shoal.controllers.autoscale import bounds, read_config
from shoal.model.cluster import Service
from shoal.model.errors import Invalid


def _autoscale(svc: Service, deployed_at: dict[str, float]) -> str:
    """`1-5`: the replica range autoscaling keeps (after `shoal scale` moved it), or ""."""
    try:
        config = read_config(svc.spec, svc.name)
    except Invalid:
        return "invalid"
    if config is None:
        return ""
    low, high = bounds(config, svc.autoscale, deployed_at.get(svc.stack, 0.0))
    return f"{low}-{high}"


@click.command("services")
@click.argument("stack", required=False)
@output_option
@handle_errors
def services(stack: str | None, output: str) -> None:
    """List services (of one stack, or all), with running/desired replicas."""
    with client() as api:
        found = api.services(stack)
        tasks = api.tasks(stack, all=True)
        autoscaled = any(s.spec.extensions.get("x-shoal") for s in found)
        stacks = api.stacks() if autoscaled else []
    deployed_at = {s["name"]: float(s.get("updated_at", 0.0)) for s in stacks}
    rows = []
    for svc in found:
        mine = [t for t in tasks if t.service_id == svc.id]
        running = sum(1 for t in mine if t.status.state == "running")
        desired = "global" if svc.mode.value.startswith("global") else str(svc.replicas)
        if svc.mode.value.endswith("job"):  # jobs count completions, not running tasks
            running = sum(
                1 for t in mine if t.status.state == "complete" and t.spec_version == svc.version
            )
            desired += " done"
        autoscale = _autoscale(svc, deployed_at)
        rows.append(
            {
                "id": svc.id,
                "stack": svc.stack,
                "name": svc.name,
                "mode": svc.mode.value,
                "replicas": f"{running}/{desired}" + (f" (auto {autoscale})" if autoscale else ""),
                "autoscale": autoscale,
                "image": svc.spec.image or "(build)",
                "version": svc.version,
                "updated": ago(svc.updated_at),
                "removing": svc.removing,
            }
        )
    print_rows(rows, ["stack", "name", "mode", "replicas", "image", "version", "updated"], output)


@click.command("scale")
@click.argument("targets", nargs=-1, required=True)
@handle_errors
def scale(targets: tuple[str, ...]) -> None:
    """Set replica counts: `shoal scale STACK/SERVICE=N …`."""
    parsed = []
    for target in targets:
        name, sep, count = target.partition("=")
        stack, slash, service = name.partition("/")
        if not sep or not slash or not count.isdigit():
            fail(f"invalid target {target!r}: expected STACK/SERVICE=N (e.g. shop/web=3)")
        parsed.append((stack, service, int(count)))
    with client() as api:
        for stack_name, service_name, replicas in parsed:
            api.scale(stack_name, service_name, replicas)
            click.echo(f"{stack_name}/{service_name} scaled to {replicas}")


def _target(value: str) -> tuple[str, str]:
    stack, slash, service = value.partition("/")
    if not slash or not stack or not service:
        fail(f"invalid service {value!r}: expected STACK/SERVICE (e.g. shop/web)")
    return stack, service


def _follow(api: Any, stack: str, service: Any, action: str, timeout: float) -> None:
    from shoal.cli.progress import wait_for_deploy

    plan = {"services": [{"name": service.name, "action": action, "version": service.version}]}
    sys.exit(wait_for_deploy(api, stack, plan, timeout, "table", time.time()))


@click.command("update")
@click.argument("target")
@click.option("--image", help="New image reference.")
@click.option("--env", "env", multiple=True, help="Set an environment variable KEY=VALUE.")
@click.option("--resume", is_flag=True, help="Resume a paused update or rollback.")
@click.option("--force", is_flag=True, help="Roll a new version even if nothing changed.")
@click.option("--wait", is_flag=True, help="Follow the rollout; exit like `deploy --wait`.")
@click.option("--timeout", type=float, default=300.0, show_default=True)
@handle_errors
def update(
    target: str,
    image: str | None,
    env: tuple[str, ...],
    resume: bool,
    force: bool,
    wait: bool,
    timeout: float,
) -> None:
    """Change one service without its Compose file: `shoal update shop/web --image web:2`.

    A new version rolls out with the service's update_config (and rolls back or pauses on
    failure as it says); `--resume` continues a paused update.
    """
    stack, name = _target(target)
    variables = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"invalid --env {item!r}: expected KEY=VALUE")
        variables[key] = value
    if not (image or variables or resume or force):
        fail("nothing to change: give --image, --env, --resume or --force")
    body = {"image": image, "env": variables, "resume": resume, "force": force}
    with client() as api:
        updated = api.service_update(stack, name, body)
        verb = "resumed" if resume else f"version {updated.version} rolling out"
        click.echo(f"{stack}/{name}: {verb}", err=True)
        if wait:
            _follow(api, stack, updated, "update", timeout)


@click.command("rollback")
@click.argument("target")
@click.option("--wait", is_flag=True, help="Follow the rollback until it is done.")
@click.option("--timeout", type=float, default=300.0, show_default=True)
@handle_errors
def rollback(target: str, wait: bool, timeout: float) -> None:
    """Put a service back on its previous version's spec (rolled with rollback_config)."""
    stack, name = _target(target)
    with client() as api:
        rolled = api.service_rollback(stack, name)
        click.echo(
            f"{stack}/{name}: rolling back: version {rolled.version} has the spec that ran "
            f"before version {rolled.previous_version}",
            err=True,
        )
        if wait:
            _follow(api, stack, rolled, "rollback", timeout)


@click.group("service")
def service() -> None:
    """Inspect one service: its version history, update state."""


@service.command("history")
@click.argument("target")
@output_option
@handle_errors
def history(target: str, output: str) -> None:
    """Every recorded version of a service, newest first, with what changed."""
    stack, name = _target(target)
    with client() as api:
        current = api.service(stack, name)
        versions = api.request("GET", f"/v1/services/{stack}/{name}/versions")
    rows = []
    previous: dict[str, Any] | None = None
    for entry in versions:
        spec = entry["spec"]
        changed = _changed_keys(previous, spec) if previous is not None else ["(first)"]
        rows.append(
            {
                "version": entry["version"],
                "current": "*" if entry["version"] == current.version else "",
                "image": spec.get("image", ""),
                "changed": ", ".join(changed) or "(nothing)",
                "spec": spec,
            }
        )
        previous = spec
    rows.reverse()
    print_rows(rows, ["version", "current", "image", "changed"], output)
    status = current.update_status
    if output != "json" and status is not None:
        click.echo(f"last update: {status.state.value} {status.message}".rstrip())


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
