"""Run an agent: its log API, registration, heartbeats and the task loop, in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from shoal.agent.agent import Agent
from shoal.agent.api import create_app
from shoal.agent.images import ImageProvider
from shoal.client.http import AsyncClient
from shoal.model.errors import Invalid
from shoal.runtime.base import Runtime


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def runc_usable() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("runc", "conmon"))


def make_runtime(name: str, data_dir: Path) -> Runtime:
    """`auto` is runc when it can run here (root, runc, conmon), else host processes."""
    if name == "auto":
        name = "runc" if runc_usable() else "process"
    if name == "process":
        from shoal.runtime.process import ProcessRuntime

        return ProcessRuntime(data_dir / "containers")
    if name == "runc":
        if not runc_usable():
            raise Invalid(
                "the runc runtime needs root and the runc and conmon programs",
                hint="apt-get install runc conmon tini, run as root, or use --runtime process",
            )
        from shoal.runtime.runc import RuncRuntime

        return RuncRuntime(data_dir / "runc")
    raise Invalid(f"unknown runtime {name!r}", hint="choose auto, runc or process")


async def run_agent(
    join: str,
    token: str,
    data_dir: Path,
    runtime_name: str,
    listen: str,
    stop: asyncio.Event,
    labels: dict[str, str] | None = None,
    dns_upstreams: list[str] | None = None,
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime = make_runtime(runtime_name, data_dir)
    host, _, port = listen.rpartition(":")
    server = _Server(
        uvicorn.Config(
            create_app(runtime, token),
            host=host or "127.0.0.1",
            port=int(port),
            log_level="warning",
            lifespan="off",
            ws="wsproto",  # uvicorn's websockets backend logs an error for every refused handshake
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    client = AsyncClient(join, token)
    images = ImageProvider(data_dir) if runtime.name == "runc" else None
    network = None
    if runtime.name == "runc":  # containers in their own namespaces: CNI networks and DNS
        from shoal.agent.networking import NodeNetwork

        network = NodeNetwork(
            client,
            data_dir,
            node_id=lambda: agent.node_id,
            token=token,
            upstreams=dns_upstreams or (),
        )
    agent = Agent(
        client,
        runtime,
        data_dir,
        addr=f"{host or '127.0.0.1'}:{port}",
        labels=labels,
        images=images,
        network=network,
    )
    try:
        async with asyncio.TaskGroup() as tg:
            http = tg.create_task(server.serve())
            work = tg.create_task(agent.run())
            await stop.wait()
            work.cancel()
            server.should_exit = True
            await http
    finally:
        if network is not None:
            await network.close()
        await client.aclose()
