"""`shoal exec` (run a command in a running task) and `shoal stats` (its resource usage)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from shoal.cli.common import client, handle_errors, output_option, print_rows


def resolve_task(api: Any, target: str) -> str:
    """A task id (or prefix) as given, or STACK/SERVICE's first running task (lowest slot)."""
    if "/" not in target:
        return target
    from shoal.model.cluster import TaskState
    from shoal.model.errors import Conflict, Invalid

    stack, _, service = target.partition("/")
    if not stack or not service or "/" in service:
        raise Invalid(
            f"{target!r} is neither a task id nor STACK/SERVICE",
            hint="list tasks with `shoal ps`",
        )
    tasks = [t for t in api.tasks(stack, service) if t.status.state == TaskState.RUNNING]
    if not tasks:
        api.service(stack, service)  # NotFound, with its hint, when there is no such service
        raise Conflict(
            f"service {stack}/{service} has no running task",
            hint=f"see why with `shoal ps {stack}`",
        )
    tasks.sort(key=lambda t: (t.slot or 0, t.node_id, t.created_at))
    task_id: str = tasks[0].id
    return task_id


@click.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("-i", "--interactive", is_flag=True, help="Send stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Run the command on a terminal.")
@click.argument("target")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def exec_(interactive: bool, tty: bool, target: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a running task and exit with its exit code.

    TARGET is a task id (or a unique prefix of one), or STACK/SERVICE for that service's first
    running task: `shoal exec web/api -- sh -c 'ls /'`. Without -i/-t the output is captured,
    not streamed (up to 1 MiB per stream), and there is no stdin.

    `shoal exec -it TARGET [-- COMMAND…]` (default `sh`) is a terminal into the task; -i alone
    streams stdin and output through pipes (`echo data | shoal exec -i web/api cat`). The
    session ends when the command does; Ctrl-P Ctrl-Q, or ending `shoal exec`, leaves it early
    and kills the command.
    """
    from shoal.model.errors import Invalid

    argv = list(command)
    if argv[:1] == ["--"]:  # click keeps the separator once arguments stopped being parsed
        argv = argv[1:]
    if interactive or tty:
        _interactive(target, argv or ["sh"], interactive, tty)
    if not argv:
        raise Invalid("exec needs a command", hint="shoal exec TASK -- CMD [ARGS…]")
    with client() as api:
        result = api.exec(resolve_task(api, target), argv)
    if result.get("stdout"):
        click.echo(result["stdout"], nl=False)
    if result.get("stderr"):
        click.echo(result["stderr"], nl=False, err=True)
    for stream in ("stdout", "stderr"):
        if result.get(f"{stream}_truncated"):
            click.echo(f"warning: {stream} was cut at 1 MiB", err=True)
    sys.exit(int(result.get("exit_code", 1)))


@contextlib.contextmanager
def raw_terminal(fd: int | None) -> Iterator[None]:
    """Keys go to the remote terminal as typed (Ctrl-C included); the mode is restored after.
    TCSANOW: what was typed ahead is kept, not flushed."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):  # a terminal that hung up has no mode left
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _interactive(target: str, argv: list[str], interactive: bool, tty: bool) -> NoReturn:
    from shoal.model.errors import Invalid

    stdin_tty = os.isatty(0)
    if interactive and tty and not stdin_tty:
        raise Invalid(
            "the input device is not a TTY",
            hint="drop -t to pipe input into the command: `… | shoal exec -i TASK CMD`",
        )
    terminal = next((fd for fd in (1, 0) if os.isatty(fd)), None) if tty else None
    size = os.get_terminal_size(terminal) if terminal is not None else None
    with client() as api:
        task_id = resolve_task(api, target)
    code = asyncio.run(_session(task_id, argv, interactive, tty, size, terminal))
    sys.exit(code)


async def _session(
    task_id: str,
    argv: list[str],
    interactive: bool,
    tty: bool,
    size: os.terminal_size | None,
    terminal: int | None,
) -> int:
    from shoal.client.stream import ExecStream

    stream = await ExecStream.open(
        task_id,
        argv,
        tty=tty,
        stdin=interactive,
        size=(size.columns, size.lines) if size else None,
    )
    with raw_terminal(0 if interactive and tty else None):
        code = await stream.run(
            stdin=0 if interactive else None, stdout=1, stderr=2, terminal=terminal
        )
    if stream.escaped:
        click.echo("\nleft the session (ctrl-p ctrl-q): the command was ended", err=True)
    return code


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            text = f"{size:.0f}" if unit == "B" else f"{size:.1f}".removesuffix(".0")
            return text + unit
        size /= 1024
    return f"{value}B"  # pragma: no cover - the loop always returns


def cpu_percent(before: dict[str, Any] | None, after: dict[str, Any]) -> float | None:
    """CPU used between two samples, in % of one CPU (200% = two CPUs busy, as Docker shows)."""
    if before is None or before.get("cpu_usage_ns") is None or after.get("cpu_usage_ns") is None:
        return None
    elapsed: float = after.get("time", 0.0) - before.get("time", 0.0)
    if elapsed <= 0:
        return None
    used: int = after["cpu_usage_ns"] - before["cpu_usage_ns"]
    return round(max(0, used) / (elapsed * 1e9) * 100, 2)


def stats_rows(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    earlier = {row["task_id"]: row for row in first if "error" not in row}
    rows = []
    for row in second:
        usage, limit = row.get("memory_usage"), row.get("memory_limit")
        rows.append(
            {
                "task_id": row["task_id"],
                "name": row["name"],
                "stack": row["stack"],
                "service": row["service"],
                "node_id": row["node_id"],
                "cpu_percent": cpu_percent(earlier.get(row["task_id"]), row),
                "cpu_usage_ns": row.get("cpu_usage_ns"),
                "memory_usage": usage,
                "memory_limit": limit,
                "memory_percent": round(usage / limit * 100, 2) if usage and limit else None,
                "pids_current": row.get("pids_current"),
                "pids_limit": row.get("pids_limit"),
                "oom_kills": row.get("oom_kills"),
                "error": row.get("error"),
            }
        )
    return rows


@click.command("stats")
@click.argument("stack", required=False)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=0.5,
    show_default=True,
    help="Seconds between the two samples CPU % is computed from.",
)
@output_option
@handle_errors
def stats(stack: str | None, interval: float, output: str) -> None:
    """Show CPU, memory and pids usage of the running tasks (of STACK)."""
    with client() as api:
        first = api.stats(stack)
        if first:
            time.sleep(interval)
            second = api.stats(stack)
        else:
            second = first
    rows = stats_rows(first, second)
    if output == "table":
        for row in rows:
            cpu = row["cpu_percent"]
            limit = row["memory_limit"]
            row["id"] = row["task_id"][:12]
            row["cpu_%"] = "-" if cpu is None else f"{cpu:.2f}%"
            row["mem_usage_/_limit"] = (
                f"{human_bytes(row['memory_usage'])} / "
                f"{human_bytes(limit) if limit else 'unlimited'}"
            )
            row["mem_%"] = "-" if row["memory_percent"] is None else f"{row['memory_percent']}%"
            current, most = row["pids_current"], row["pids_limit"]
            row["pids"] = "-" if current is None else f"{current}" + (f" / {most}" if most else "")
            row["note"] = row["error"] or (
                f"{row['oom_kills']} OOM kills" if row["oom_kills"] else ""
            )
        if not rows:
            click.echo("no running tasks" + (f" in stack {stack}" if stack else ""), err=True)
            return
    print_rows(rows, ["name", "id", "cpu_%", "mem_usage_/_limit", "mem_%", "pids", "note"], output)
