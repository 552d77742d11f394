"""`shoal up`, `shoal server`, `shoal agent`, `shoal down`: running the cluster's processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from shoal.cli.output import fail

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_LISTEN = "127.0.0.1:7480"
DEFAULT_AGENT_LISTEN = "127.0.0.1:7481"


def _data_dir(value: str | None) -> Path:
    from shoal.client.http import default_data_dir

    chosen = value or os.environ.get("SHOAL_DATA_DIR")
    return Path(chosen).absolute() if chosen else default_data_dir()


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _run(main: object) -> None:
    """Run `main(stop)` with SIGTERM/SIGINT setting `stop` (a clean shutdown)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)  # type: ignore[operator]

    from shoal.model.errors import ShoalError

    try:
        asyncio.run(runner())
    except BaseExceptionGroup as group:
        first = _first_leaf(group)
        if isinstance(first, ShoalError | OSError):
            fail(f"cannot run: {first}")
        raise
    except (ShoalError, OSError) as exc:
        fail(f"cannot run: {exc}")


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


data_dir_option = click.option(
    "--data-dir", help="State directory (default /var/lib/shoal as root; $SHOAL_DATA_DIR)."
)
secrets_key_option = click.option(
    "--secrets-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key that encrypts secrets at rest: 32 bytes (raw, hex or base64), mode 0600 "
    "(default: <data-dir>/secrets.key, made at first start).",
)


def node_options(fn: F) -> F:
    """The options of whatever runs an agent: its runtime, node labels and DNS upstreams."""
    fn = click.option(
        "--label", "labels", multiple=True, help="Node label KEY=VALUE (repeatable)."
    )(fn)
    fn = click.option(
        "--dns-upstream",
        "dns_upstreams",
        multiple=True,
        help="Resolver (IP[:PORT]) for names that are not shoal's, for containers without "
        "`dns:` (repeatable; default: none — such names get NXDOMAIN).",
    )(fn)
    return click.option(
        "--runtime",
        default="auto",
        show_default=True,
        help="auto (runc if usable, else process), runc or process.",
    )(fn)


@click.command("up")
@data_dir_option
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="API address.")
@click.option("--agent-listen", default=DEFAULT_AGENT_LISTEN, show_default=True)
@secrets_key_option
@node_options
def up(
    data_dir: str | None,
    listen: str,
    agent_listen: str,
    secrets_key_file: Path | None,
    runtime: str,
    labels: tuple[str, ...],
    dns_upstreams: tuple[str, ...],
) -> None:
    """Run a one-node cluster: server and agent in one process (the agent still speaks HTTP).

    Ready when /v1/health answers. SIGTERM stops shoal and leaves workloads running, to be
    re-adopted at the next start; `shoal down` stops the workloads too.
    """
    from shoal.agent.main import run_agent
    from shoal.server.main import serve

    directory = _data_dir(data_dir)
    node_labels = _labels(labels)

    async def main(stop: asyncio.Event) -> None:
        ready = asyncio.Event()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (directory / "up.pid").write_text(f"{os.getpid()}\n")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(serve(directory, listen, stop, ready, secrets_key_file))
                await ready.wait()
                token = (directory / "token").read_text().strip()
                click.echo(f"shoal is up: API http://{listen}, data {directory}", err=True)
                tg.create_task(
                    run_agent(
                        f"http://{listen}",
                        token,
                        directory / "agent",
                        runtime,
                        agent_listen,
                        stop,
                        node_labels,
                        list(dns_upstreams),
                    )
                )
        finally:
            (directory / "up.pid").unlink(missing_ok=True)

    _run(main)


@click.command("server")
@data_dir_option
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="API address.")
@secrets_key_option
def server(data_dir: str | None, listen: str, secrets_key_file: Path | None) -> None:
    """Run the server alone (API, store, controllers, scheduler)."""
    from shoal.server.main import serve

    directory = _data_dir(data_dir)

    async def main(stop: asyncio.Event) -> None:
        await serve(directory, listen, stop, asyncio.Event(), secrets_key_file)

    _run(main)


@click.command("agent")
@click.option("--join", required=True, help="The server's API address.")
@click.option("--token", envvar="SHOAL_TOKEN", required=True, help="Token ($SHOAL_TOKEN).")
@data_dir_option
@click.option("--listen", default=DEFAULT_AGENT_LISTEN, show_default=True, help="Agent API.")
@node_options
def agent(
    join: str,
    token: str,
    data_dir: str | None,
    listen: str,
    runtime: str,
    labels: tuple[str, ...],
    dns_upstreams: tuple[str, ...],
) -> None:
    """Run an agent that joins a server and runs its tasks."""
    from shoal.agent.main import run_agent

    directory = _data_dir(data_dir) / "agent"
    node_labels = _labels(labels)

    async def main(stop: asyncio.Event) -> None:
        address = join if "://" in join else f"http://{join}"
        await run_agent(
            address, token, directory, runtime, listen, stop, node_labels, list(dns_upstreams)
        )

    _run(main)


@click.command("down")
@data_dir_option
@click.option("--timeout", type=float, default=60, show_default=True)
def down(data_dir: str | None, timeout: float) -> None:
    """Remove every stack (stopping its workloads), then stop `shoal up`."""
    from shoal.client import Client
    from shoal.model.errors import ShoalError

    directory = _data_dir(data_dir)
    pid_file = directory / "up.pid"
    if not pid_file.exists():
        fail(f"no `shoal up` running for {directory} (no {pid_file})")
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + timeout
    try:
        with Client(token=_token(directory)) as api:
            stacks = [s["name"] for s in api.stacks()]
            for name in stacks:
                api.remove_stack(name)
            while api.stacks() and time.monotonic() < deadline:
                time.sleep(0.2)
            if api.stacks():
                click.echo("warning: some stacks are still being removed", err=True)
            click.echo(f"removed {len(stacks)} stack(s)", err=True)
        # Task records go first; the agent then deletes containers and unmounts their rootfs.
        while _node_leftovers(directory) and time.monotonic() < deadline:
            time.sleep(0.1)
    except ShoalError as exc:
        click.echo(f"warning: could not remove stacks: {exc}", err=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            click.echo("shoal is down", err=True)
            return
        time.sleep(0.1)
    sys.exit("shoal up did not stop within 15 s")


def _node_leftovers(directory: Path) -> list[Path]:
    """Containers and rootfs directories the agent of this data dir still has."""
    agent = directory / "agent"
    found: list[Path] = []
    for sub in ("containers", "runc", "rootfs"):
        if (agent / sub).is_dir():
            found += [p for p in (agent / sub).iterdir() if not p.name.startswith(".")]
    return found


def _token(directory: Path) -> str | None:
    path = directory / "token"
    return path.read_text().strip() if path.exists() else None
