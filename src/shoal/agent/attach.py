"""The agent's end of `shoal exec -i/-t`: one WebSocket relayed to one runtime `ExecSession`.

`GET /v1/containers/{id}/exec` upgraded to a WebSocket, with the query `cmd` (repeated: the
command and its arguments), `tty` and `stdin` (`true`/`false`), and `cols` and `rows` (the
terminal's size when it starts). Errors before the command starts are HTTP answers (denial
responses: 400, 401, 404, 409, 503 with the usual error body). Then:

    client → agent   binary: stdin bytes       text: {"resize": [cols, rows]} | {"eof": true}
    agent → client   binary: output bytes      text: {"stderr": "<base64>"} (no tty) |
                                                     {"exit": code}, then a normal close

Nothing is read ahead of the peer: a slow client stalls the command, not the agent's memory.
When the client goes away first, the command is killed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from shoal.model.errors import Invalid
from shoal.runtime.base import ExecSession

DRAIN_AFTER_EXIT = 1.0
"""Seconds to keep relaying output once the command has exited (its leftovers may hold the
terminal open forever: then the rest is dropped)."""
MAX_SIZE = 10_000


@dataclass(frozen=True)
class ExecOptions:
    argv: list[str]
    tty: bool
    stdin: bool
    size: tuple[int, int] | None


def _flag(params: QueryParams, name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise Invalid(f"{name}={value!r}: expected true or false")
    return value in ("true", "1")


def exec_options(params: QueryParams) -> ExecOptions:
    """The query of an exec WebSocket, checked."""
    argv = params.getlist("cmd")
    if not argv or not argv[0]:
        raise Invalid("exec needs a command: ?cmd=sh&cmd=-c&cmd=… (one per argument)")
    size = None
    if "cols" in params or "rows" in params:
        cols, rows = params.get("cols", ""), params.get("rows", "")
        if not (cols.isdigit() and rows.isdigit()) or not (
            0 < int(cols) <= MAX_SIZE and 0 < int(rows) <= MAX_SIZE
        ):
            raise Invalid(f"terminal size cols={cols!r} rows={rows!r}: expected 1-{MAX_SIZE}")
        size = (int(cols), int(rows))
    return ExecOptions(argv, _flag(params, "tty"), _flag(params, "stdin"), size)


def _size(value: Any) -> tuple[int, int] | None:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and 0 < v <= MAX_SIZE for v in value)
    ):
        return value[0], value[1]
    return None


async def first_of(*coros: Coroutine[Any, Any, None]) -> None:
    """Run `coros` until the first of them ends, then cancel the rest; errors propagate."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c) for c in coros]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()


async def _feed(ws: WebSocket, session: ExecSession) -> None:
    """The client's frames into the command, until the client leaves."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await session.write(message["bytes"])
            continue
        try:
            control = json.loads(message.get("text") or "null")
        except ValueError:
            continue  # not ours to guess: ignored, as an unknown key is
        if not isinstance(control, dict):
            continue
        size = _size(control.get("resize"))
        if size is not None:
            session.resize(size)
        if control.get("eof") is True:
            session.close_stdin()


async def _copy(
    read: Callable[[], Awaitable[bytes]], send: Callable[[bytes], Awaitable[None]]
) -> None:
    while chunk := await read():
        await send(chunk)


async def _report(ws: WebSocket, session: ExecSession) -> None:
    """The command's output to the client, then its exit code and a normal close."""

    async def stderr(chunk: bytes) -> None:
        await ws.send_text(json.dumps({"stderr": base64.b64encode(chunk).decode()}))

    try:
        pumps = asyncio.gather(
            _copy(session.read_output, ws.send_bytes), _copy(session.read_errors, stderr)
        )
        try:
            code = await session.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pumps), DRAIN_AFTER_EXIT)
        finally:
            pumps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumps
        if session.message:
            await stderr(session.message.encode())
        await ws.send_text(json.dumps({"exit": code}))
        await ws.close()
    except WebSocketDisconnect:
        return  # the client left: `_feed` sees it too


async def relay(ws: WebSocket, session: ExecSession) -> None:
    """Accept `ws` and relay it to `session` until the command ends or the client leaves."""
    await ws.accept()
    await first_of(_feed(ws, session), _report(ws, session))
