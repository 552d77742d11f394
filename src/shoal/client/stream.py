"""The client's end of an interactive exec (`shoal exec -i/-t`): one WebSocket to the server.

`GET /v1/tasks/{id}/exec?cmd=…&tty=…&stdin=…&cols=…&rows=…` upgraded to a WebSocket (the
protocol is in `shoal.agent.attach`; the server relays it to the task's agent). An error before
the command starts is an HTTP answer, raised here as the same ShoalError as every other call.

`ExecStream.run` relays local fds: stdin (read only when it is readable, so nothing is read
ahead), binary frames to stdout, `{"stderr"}` frames to stderr; it returns the command's exit
code. SIGWINCH sends the terminal's new size; SIGINT, SIGTERM and SIGHUP end the session (the
command is killed on the node) with 128+N, as does the escape sequence Ctrl-P Ctrl-Q with 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import select
import signal
from urllib.parse import quote, urlencode

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from shoal.client.http import _KINDS, _raise_for, _unavailable, resolve_address, resolve_token
from shoal.model import errors as E

CHUNK = 64 * 1024
ESCAPE = b"\x10\x11"
"""Ctrl-P Ctrl-Q (Docker's detach keys): leave the session; the command is ended."""
Size = tuple[int, int]


class EscapeFilter:
    """Finds ESCAPE in typed input, across reads; a lone Ctrl-P waits for the next key."""

    def __init__(self, sequence: bytes = ESCAPE) -> None:
        self.sequence = sequence
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send on, whether the sequence was typed)."""
        data = self.held + data
        self.held = b""
        found = data.find(self.sequence)
        if found >= 0:
            return data[:found], True
        for keep in range(len(self.sequence) - 1, 0, -1):
            if data.endswith(self.sequence[:keep]):
                self.held = data[-keep:]
                return data[:-keep], False
        return data, False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # an inherited non-blocking stdout: wait, do not buffer
            select.select([], [fd], [])


async def _read_input(fd: int) -> bytes:
    """Up to CHUNK bytes of `fd` once it is readable; b"" at its end."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    try:
        loop.add_reader(fd, lambda: None if ready.done() else ready.set_result(None))
    except PermissionError:  # a regular file or /dev/null: epoll refuses them, reads never block
        return os.read(fd, CHUNK)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    try:
        return os.read(fd, CHUNK)
    except BlockingIOError:
        return await _read_input(fd)


def exec_url(
    addr: str, task_id: str, argv: list[str], tty: bool, stdin: bool, size: Size | None
) -> str:
    query: list[tuple[str, str]] = [("cmd", arg) for arg in argv]
    query += [("tty", str(tty).lower()), ("stdin", str(stdin).lower())]
    if size is not None:
        query += [("cols", str(size[0])), ("rows", str(size[1]))]
    base = addr.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")
    return f"{base}/v1/tasks/{quote(task_id, safe='')}/exec?{urlencode(query)}"


class ExecStream:
    """One interactive exec; `open` it, `run` it once."""

    def __init__(self, ws: ClientConnection, addr: str, tty: bool) -> None:
        self._ws = ws
        self.addr = addr
        self.tty = tty
        self._ended: asyncio.Future[int] | None = None
        self.escaped = False
        self._resizing: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls,
        task_id: str,
        argv: list[str],
        *,
        tty: bool,
        stdin: bool,
        size: Size | None = None,
        addr: str | None = None,
        token: str | None = None,
    ) -> ExecStream:
        """Start `argv` in the task; errors (no such task, not running, agent gone…) raise."""
        address = resolve_address(addr)
        try:
            ws = await connect(
                exec_url(address, task_id, argv, tty, stdin, size),
                additional_headers={"Authorization": f"Bearer {resolve_token(token)}"},
                compression=None,
                open_timeout=30,
                max_size=4 * CHUNK,
            )
        except websockets.InvalidStatus as exc:
            response = exc.response
            _raise_for(httpx.Response(response.status_code, content=bytes(response.body or b"")))
            raise _unavailable(address, exc) from None  # a 1xx-3xx refusal: not shoal's
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise _unavailable(address, exc) from None
        return cls(ws, address, tty)

    async def resize(self, size: Size) -> None:
        """Tell the command's terminal its new (columns, rows)."""
        with contextlib.suppress(websockets.ConnectionClosed):  # over: `_receive` says how
            await self._ws.send(json.dumps({"resize": list(size)}))

    def end(self, code: int) -> None:
        """End the session now, with `code` (the command is killed on the node)."""
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(code)

    async def run(
        self, *, stdin: int | None, stdout: int, stderr: int, terminal: int | None = None
    ) -> int:
        """Relay until the command's exit code arrives and return it. `stdin`: the fd to send
        (None: send nothing); `terminal`: the local tty whose size follows SIGWINCH."""
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        watched = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
        for signo in watched:
            loop.add_signal_handler(signo, self.end, 128 + signo)
        if terminal is not None:
            loop.add_signal_handler(signal.SIGWINCH, self._resized, terminal)
            watched.append(signal.SIGWINCH)
        try:
            async with asyncio.TaskGroup() as tg:
                receiving = tg.create_task(self._receive(stdout, stderr))
                feeding = tg.create_task(self._send_input(stdin)) if stdin is not None else None
                await asyncio.wait([receiving, self._ended], return_when=asyncio.FIRST_COMPLETED)
                for task in (receiving, feeding):
                    if task is not None:
                        task.cancel()
        except* E.ShoalError as group:
            raise group.exceptions[0] from None
        finally:
            for signo in watched:
                loop.remove_signal_handler(signo)
            await self._ws.close()
        if receiving.cancelled():
            return self._ended.result()
        return receiving.result()

    def _resized(self, terminal: int) -> None:
        try:
            columns, lines = os.get_terminal_size(terminal)
        except OSError:
            return
        task = asyncio.get_running_loop().create_task(self.resize((columns, lines)))
        self._resizing.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._resizing.discard)

    async def _send_input(self, fd: int) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):  # over: `_receive` says how
            await self._feed(fd)

    async def _feed(self, fd: int) -> None:
        escape = EscapeFilter() if self.tty and os.isatty(fd) else None
        while data := await _read_input(fd):
            typed = False
            if escape is not None:
                data, typed = escape.feed(data)
            if data:
                await self._ws.send(data)
            if typed:
                self.escaped = True
                self.end(0)
                return
        if not self.tty:
            await self._ws.send(json.dumps({"eof": True}))

    async def _receive(self, stdout: int, stderr: int) -> int:
        code: int | None = None
        try:
            async for frame in self._ws:
                if isinstance(frame, bytes):
                    _write_all(stdout, frame)
                    continue
                try:
                    control = json.loads(frame)
                except ValueError:
                    continue
                if not isinstance(control, dict):
                    continue
                if isinstance(control.get("stderr"), str):
                    _write_all(stderr, base64.b64decode(control["stderr"]))
                if isinstance(control.get("exit"), int):
                    code = control["exit"]
                if control.get("error"):
                    kind = _KINDS.get(str(control.get("kind")), E.Unavailable)
                    raise kind(str(control["error"]), hint=control.get("hint"))
        except BrokenPipeError:  # the reader left (`| head`): end as piped commands do
            return 128 + signal.SIGPIPE
        except OSError as exc:  # EIO: the terminal is gone (its window was closed)
            if exc.errno != errno.EIO:
                raise
            return 128 + signal.SIGHUP
        except websockets.ConnectionClosedError as exc:
            raise E.Unavailable(
                f"lost the connection to the shoal server at {self.addr}: {exc}"
            ) from None
        if code is None:
            raise E.Unavailable(
                "the exec session ended before the command's exit code arrived",
                hint="see the task with `shoal ps`",
            )
        return code
