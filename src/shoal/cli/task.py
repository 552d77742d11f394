"""`shoal ps` and `shoal logs`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from shoal.cli.common import ago, client, handle_errors, output_option, print_rows
from shoal.model.cluster import Task


def task_row(task: Task, nodes: dict[str, str]) -> dict[str, Any]:
    status = task.status
    return {
        "id": task.id,
        "name": task.name,
        "stack": task.stack,
        "service": task.service,
        "slot": task.slot,
        "node": nodes.get(task.node_id, task.node_id) if task.node_id else "",
        "node_id": task.node_id,
        "state": status.state.value,
        "desired_state": task.desired_state.value,
        "image": task.spec.image or "",
        "container_id": status.container_id,
        "addresses": status.addresses,
        "ports": [p.model_dump() for p in status.ports],
        "health": status.health,
        "failing_streak": status.failing_streak,
        "health_log": [r.model_dump() for r in status.health_log],
        "exit_code": status.exit_code,
        "error": status.error,
        "message": status.message,
        "pending_reasons": task.pending_reasons,
        "attempt": task.attempt,
        "spec_version": task.spec_version,
        "updated_at": task.updated_at,
    }


def _why(row: dict[str, Any]) -> str:
    if row["error"]:
        return str(row["error"])
    if row["health"] == "unhealthy" and row["health_log"]:
        return f"health check: {row['health_log'][-1]['output'].strip()}"
    if row["state"] == "pending" and row["pending_reasons"]:
        return "; ".join(f"{k}: {v}" for k, v in row["pending_reasons"].items())
    return str(row["message"] or "")


@click.command("ps")
@click.argument("stack", required=False)
@click.option("-a", "--all", "show_all", is_flag=True, help="Include finished tasks (history).")
@output_option
@handle_errors
def ps(stack: str | None, show_all: bool, output: str) -> None:
    """List tasks, with why a task is pending or failed."""
    target_stack, _, service = (stack or "").partition("/")
    with client() as api:
        tasks = api.tasks(target_stack or None, service or None, all=show_all)
        nodes = {n.id: n.description.hostname for n in api.nodes()}
    rows = [task_row(t, nodes) for t in tasks]
    if output == "table":
        for row in rows:
            row["id"] = row["id"][:12]
            health = f" ({row['health']})" if row["health"] else ""
            row["state"] = f"{row['state']}{health} {ago(row['updated_at'])}"
            row["why"] = _why(row)
    print_rows(rows, ["id", "name", "node", "desired_state", "state", "why"], output)


@click.command("logs")
@click.argument("target")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=int, default=None, help="Only the last N lines (per task).")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@handle_errors
def logs(target: str, follow: bool, tail: int | None, timestamps: bool) -> None:
    """Print a task's logs, or every task's of STACK/SERVICE (prefixed by task name)."""
    with client() as api:
        if "/" in target:
            stack, _, service = target.partition("/")
            tasks = api.tasks(stack, service, all=True)
            tasks = [t for t in tasks if t.node_id and t.status.container_id]
            if follow:
                tasks = [t for t in tasks if not t.status.state.terminal] or tasks[-1:]
        else:
            tasks = [api.task(target)]
        prefix = len(tasks) > 1
        for task in tasks:
            for line in api.logs(task.id, follow=follow, tail=tail):
                text = line.get("text", "")
                if timestamps:
                    when = datetime.fromtimestamp(line.get("time", 0)).isoformat(
                        timespec="milliseconds"
                    )
                    text = f"{when} {text}"
                if prefix:
                    text = f"{task.name} | {text}"
                click.echo(text, err=line.get("stream") == "stderr")


@click.command("events")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--since", type=int, default=0, help="Only events after this revision.")
@output_option
@handle_errors
def events(follow: bool, since: int, output: str) -> None:
    """Print the cluster's events (every change and failure, with its revision)."""

    def show(event: Any) -> None:
        if output == "json":
            click.echo(json.dumps(event.model_dump(mode="json")))
            return
        when = datetime.fromtimestamp(event.time).strftime("%H:%M:%S")
        subject = f"{event.stack}/{event.service}" if event.service else event.id
        click.echo(
            f"{event.revision:>8} {when} {event.type}.{event.action} {subject} "
            f"{event.message}".rstrip()
        )

    with client() as api:
        last = since
        for event in api.events(since):
            show(event)
            last = max(last, event.revision)
        if follow:
            for event in api.watch_events(last):
                show(event)


@click.command("inspect")
@click.argument("target")
@handle_errors
def inspect(target: str) -> None:
    """Everything about a task (TASK id or prefix: status, health log, addresses, spec) or a
    service (STACK/SERVICE: spec, version, VIPs, ports, update status, its tasks' states), as
    JSON."""
    with client() as api:
        stack, slash, name = target.partition("/")
        if slash:
            svc = api.service(stack, name)
            body = svc.model_dump(mode="json")
            body["tasks"] = [
                {
                    "id": t.id,
                    "name": t.name,
                    "state": t.status.state.value,
                    "health": t.status.health,
                }
                for t in api.tasks(stack)
                if t.service_id == svc.id
            ]
        else:
            body = api.task(target).model_dump(mode="json")
    click.echo(json.dumps(body, indent=2))
