"""Run the server: store, cache, control loops and the HTTP API, in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from shoal.secrets import store as secret_store
from shoal.secrets.crypto import SecretKeys
from shoal.server.app import create_app
from shoal.server.auth import load_or_create_token
from shoal.server.autoscaler import run_autoscaler
from shoal.server.cache import ClusterCache
from shoal.server.context import ServerContext
from shoal.server.loops import run_loops
from shoal.store.maintenance import run_maintenance
from shoal.store.sqlite import SqliteStore


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(
    data_dir: Path,
    listen: str,
    stop: asyncio.Event,
    ready: asyncio.Event,
    secrets_key_file: Path | None = None,
) -> None:
    """Serve until `stop` is set; `ready` is set once /v1/health answers. The secrets key is
    `secrets_key_file`, else `<data_dir>/secrets.key` (made at first start)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = load_or_create_token(data_dir)
    keys = SecretKeys.open(data_dir, secrets_key_file)
    async with SqliteStore.open(data_dir / "state.db") as store:
        cache = ClusterCache(store)
        await cache.load()
        await secret_store.startup(store, keys)
        ctx = ServerContext(
            store=store, cache=cache, token=token, data_dir=data_dir, secret_keys=keys
        )
        host, port = split_listen(listen)
        config = uvicorn.Config(
            create_app(ctx),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            ws="wsproto",  # uvicorn's websockets backend logs an error for every refused handshake
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = _Server(config)
        async with asyncio.TaskGroup() as tg:
            background = [
                tg.create_task(cache.run()),
                tg.create_task(run_loops(ctx)),
                tg.create_task(run_autoscaler(ctx)),  # x-shoal.autoscale
                tg.create_task(run_maintenance(store)),  # lease expiry, twice a second
            ]
            http = tg.create_task(server.serve())

            async def announce() -> None:
                while not server.started:
                    if http.done():
                        return
                    await asyncio.sleep(0.01)
                ready.set()

            tg.create_task(announce())
            await stop.wait()
            server.should_exit = True
            await http
            for task in background:
                task.cancel()
