"""Run an agent: its log API, registration, heartbeats and the task loop, in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from shoal.agent.agent import Agent
from shoal.agent.api import create_app
from shoal.client.http import AsyncClient
from shoal.model.errors import Invalid
from shoal.runtime.base import Runtime


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_runtime(name: str, data_dir: Path) -> Runtime:
    if name == "process":
        from shoal.runtime.process import ProcessRuntime

        return ProcessRuntime(data_dir / "containers")
    raise Invalid(f"unknown runtime {name!r}", hint="available here: process")


async def run_agent(
    join: str,
    token: str,
    data_dir: Path,
    runtime_name: str,
    listen: str,
    stop: asyncio.Event,
    labels: dict[str, str] | None = None,
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
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    client = AsyncClient(join, token)
    agent = Agent(client, runtime, data_dir, addr=f"{host or '127.0.0.1'}:{port}", labels=labels)
    try:
        async with asyncio.TaskGroup() as tg:
            http = tg.create_task(server.serve())
            work = tg.create_task(agent.run())
            await stop.wait()
            work.cancel()
            server.should_exit = True
            await http
    finally:
        await client.aclose()
