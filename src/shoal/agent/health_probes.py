"""Running one health probe for the agent: a command in the container (`exec`), or a
connection made by the agent itself (`http`, `tcp`) from inside the task's network namespace —
the task's own view of its address, whatever the node's firewall does with traffic from the host.

A probe past its timeout is cancelled: the command's whole process tree is killed (the runtime's
`open_exec` session), a connection is closed. See `health` for what the results mean.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable

from shoal.agent.health import OUTPUT_LIMIT, Check, make_result, timed_out
from shoal.model.cluster import HealthResult
from shoal.model.errors import Unavailable
from shoal.runtime.base import InteractiveExec, Runtime
from shoal.runtime.runc import RuncRuntime

_CLONE_NEWNET = 0x40000000


async def probe(
    check: Check,
    runtime: Runtime,
    container_id: str,
    address: str = "127.0.0.1",
    netns: str | None = None,
    clock: Callable[[], float] = time.time,
) -> HealthResult:
    """Run `check` once: a command in the container, or a connection to `address` from inside
    the network namespace at `netns` (the task's own view, whatever the node's firewall says).
    A probe past its timeout is cancelled (its command killed)."""
    start = clock()
    try:
        async with asyncio.timeout(check.timeout):
            if check.kind == "exec":
                code, output = await _exec(check, runtime, container_id)
            elif check.kind == "http":
                code, output = await _http(check, address, netns)
            else:
                code, output = await _tcp(check, address, netns)
    except TimeoutError:
        return timed_out(start, clock(), check.timeout)
    return make_result(start, clock(), code, output)


async def _exec(check: Check, runtime: Runtime, container_id: str) -> tuple[int, str]:
    if isinstance(runtime, RuncRuntime):  # the cheap path: one `runc exec`, killed on timeout
        result = await runtime.exec_in(container_id, list(check.argv), timeout=check.timeout)
        output = (result.stdout + result.stderr)[:OUTPUT_LIMIT]
        return result.exit_code, output
    if not isinstance(runtime, InteractiveExec):
        raise Unavailable(f"the {runtime.name} runtime cannot run health check commands")
    session = await runtime.open_exec(container_id, list(check.argv))
    try:
        if session.message is not None:
            return await session.wait(), session.message
        out, err, code = await asyncio.gather(
            _drain(session.read_output), _drain(session.read_errors), session.wait()
        )
        return code, (out + err).decode(errors="replace")
    finally:
        await session.close()  # kills what is left of it (after a timeout: all of it)


async def _drain(read: Callable[[], Awaitable[bytes]]) -> bytes:
    """Everything up to OUTPUT_LIMIT bytes; the rest is read and dropped (never stall it)."""
    kept = b""
    while chunk := await read():
        kept = (kept + chunk)[:OUTPUT_LIMIT]
    return kept


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _why(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


def _make_socket(netns: str | None, family: int) -> socket.socket:
    """A TCP socket of the network namespace at `netns` (None: the agent's own).

    setns(2) moves only the calling thread, so a fresh thread enters the namespace, makes the
    socket and ends: the socket keeps its namespace, and no other thread ever changes its own.
    """
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    made: list[socket.socket | OSError] = []

    def enter_and_make() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc().setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"cannot enter {netns}")
            finally:
                os.close(fd)
            made.append(socket.socket(family, socket.SOCK_STREAM))
        except OSError as exc:
            made.append(exc)

    thread = threading.Thread(target=enter_and_make, name="health-netns", daemon=True)
    thread.start()
    thread.join()
    if isinstance(made[0], OSError):
        raise made[0]
    return made[0]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


async def _connect(
    address: str, port: int, netns: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = await asyncio.to_thread(_make_socket, netns, family)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def _http(check: Check, address: str, netns: str | None) -> tuple[int, str]:
    authority = f"{_host(address)}:{check.port}"
    said = f"GET http://{authority}{check.path}"
    try:
        reader, writer = await _connect(address, check.port, netns)
    except OSError as exc:
        return 1, f"{said}: {_why(exc)}"
    request = (
        f"GET {check.path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: shoal-health\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    )
    try:
        writer.write(request.encode())
        await writer.drain()
        line = await reader.readline()
    except OSError as exc:
        return 1, f"{said}: {_why(exc)}"
    finally:
        writer.close()
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return 1, f"{said}: no HTTP answer ({line[:60]!r})"
    code, reason = int(parts[1]), parts[2].strip() if len(parts) > 2 else ""
    passed = code == check.status if check.status is not None else 200 <= code < 400
    wanted = "" if passed else f" (wanted {check.status or '200-399'})"
    return (0 if passed else 1), f"{said}: {code} {reason}{wanted}"


async def _tcp(check: Check, address: str, netns: str | None) -> tuple[int, str]:
    target = f"{_host(address)}:{check.port}"
    try:
        _, writer = await _connect(address, check.port, netns)
    except OSError as exc:
        return 1, f"connect to {target}: {_why(exc)}"
    writer.close()
    return 0, f"connected to {target}"
