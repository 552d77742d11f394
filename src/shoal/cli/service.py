"""`shoal services` and `shoal scale`."""

from __future__ import annotations

import click

from shoal.cli.common import ago, client, handle_errors, output_option, print_rows
from shoal.cli.output import fail


@click.command("services")
@click.argument("stack", required=False)
@output_option
@handle_errors
def services(stack: str | None, output: str) -> None:
    """List services (of one stack, or all), with running/desired replicas."""
    with client() as api:
        found = api.services(stack)
        tasks = api.tasks(stack, all=True)
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
        rows.append(
            {
                "id": svc.id,
                "stack": svc.stack,
                "name": svc.name,
                "mode": svc.mode.value,
                "replicas": f"{running}/{desired}",
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
