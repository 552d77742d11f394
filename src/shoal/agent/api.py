"""The agent's own small HTTP API: what lives on the node and the server proxies to it —
container logs, exec (one command, output captured; or interactive, over a WebSocket: see
`attach.py`), resource stats, and deleting a named volume's data (`volumes.py`)."""

from __future__ import annotations

import hmac
import json
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from shoal.agent.attach import exec_options, relay
from shoal.agent.volumes import delete_endpoint, volumes_root
from shoal.model.errors import Conflict, Invalid, NotFound, ShoalError, Unavailable
from shoal.runtime.base import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, InteractiveExec, Runtime
from shoal.runtime.cgroups import CgroupStats

EXEC_OUTPUT_LIMIT = 1024 * 1024
"""Bytes of stdout and of stderr an exec answers with; the rest is cut (and said so)."""

_STATUS: list[tuple[type[ShoalError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 400),
    (Unavailable, 503),
]


class _ExecResult(Protocol):
    @property
    def exit_code(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


@runtime_checkable
class _Execs(Protocol):
    async def exec_in(self, id: str, argv: list[str], *, tty: bool = False) -> _ExecResult: ...


@runtime_checkable
class _Measures(Protocol):
    async def stats(self, id: str) -> CgroupStats: ...


def _error(exc: ShoalError) -> JSONResponse:
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    error: dict[str, Any] = {"kind": type(exc).__name__, "message": exc.message}
    if exc.hint:
        error["hint"] = exc.hint
    return JSONResponse({"error": error}, status)


def _cap(text: str, limit: int = EXEC_OUTPUT_LIMIT) -> tuple[str, bool]:
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text, False
    return data[:limit].decode(errors="ignore"), True


_RUNC_EXEC_FAILED = re.compile(r'level=error msg="exec failed: (?:[^:"]*: )*?(?P<why>exec: .*)"')


def _exec_failure(exit_code: int, stderr: str) -> tuple[int, str]:
    """runc answers 255 and a log line when the command cannot start; say it as a shell does:
    127 (not found) or 126 (cannot execute), with a readable message."""
    found = _RUNC_EXEC_FAILED.search(stderr) if exit_code == 255 else None
    if found is None:
        return exit_code, stderr
    why = found["why"].replace('\\"', '"')
    code = EXIT_NOT_FOUND if "not found" in why or "no such file" in why else EXIT_CANNOT_EXECUTE
    return code, f"{why}\n"


def proc_stats(pid: int) -> CgroupStats:
    """Usage of one host process from /proc (the process runtime has no cgroups): CPU of it and
    its reaped children, resident memory; no limits, and no count of its descendants."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        with open(f"/proc/{pid}/statm") as f:
            resident = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        raise Conflict(f"process {pid} is gone") from None
    # After "pid (comm)": fields[0] is state (field 3); utime..cstime are fields 14..17.
    ticks = sum(int(v) for v in fields[11:15])
    return CgroupStats(
        cpu_usage_ns=ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK"),
        memory_usage=resident * os.sysconf("SC_PAGE_SIZE"),
    )


def create_app(runtime: Runtime, token: str) -> Starlette:
    def authorized(request: HTTPConnection) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    def unauthorized() -> JSONResponse:
        return JSONResponse({"error": {"kind": "Unauthorized", "message": "bad token"}}, 401)

    async def logs(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        container_id = request.path_params["container_id"]
        follow = request.query_params.get("follow", "false") == "true"
        tail_raw = request.query_params.get("tail")
        tail = int(tail_raw) if tail_raw and tail_raw.isdigit() else None
        try:
            await runtime.state(container_id)
        except NotFound as exc:
            return JSONResponse({"error": {"kind": "NotFound", "message": exc.message}}, 404)

        async def lines() -> AsyncIterator[bytes]:
            async for line in runtime.logs(container_id, follow=follow, tail=tail):
                record = {"time": line.time, "stream": line.stream, "text": line.text}
                yield (json.dumps(record) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def read_argv(request: Request) -> list[str]:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise Invalid("the exec request body is not JSON") from None
        argv = body.get("argv") if isinstance(body, dict) else None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise Invalid('exec needs {"argv": ["command", "arg", …]}: a non-empty list of strings')
        return argv

    async def exec_(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        container_id = request.path_params["container_id"]
        try:
            argv = await read_argv(request)
            await runtime.state(container_id)  # NotFound before "cannot"
            if not isinstance(runtime, _Execs):
                raise Invalid(
                    f"the {runtime.name} runtime cannot exec into a task: it runs host processes",
                    hint="run the command on the node itself, or use the runc runtime",
                )
            result = await runtime.exec_in(container_id, argv)
        except ShoalError as exc:
            return _error(exc)
        exit_code, stderr = _exec_failure(result.exit_code, result.stderr)
        stdout, out_cut = _cap(result.stdout)
        stderr, err_cut = _cap(stderr)
        return JSONResponse(
            {
                "exit_code": exit_code,
                "stdout": stdout,
                "stderr": stderr,
                "stdout_truncated": out_cut,
                "stderr_truncated": err_cut,
            }
        )

    async def exec_session(websocket: WebSocket) -> None:
        """`shoal exec -i/-t`: a command with stdin and/or a terminal, relayed over `websocket`;
        failures to start it are HTTP answers, before the WebSocket is accepted."""
        if not authorized(websocket):
            await websocket.send_denial_response(unauthorized())
            return
        container_id = websocket.path_params["container_id"]
        try:
            options = exec_options(websocket.query_params)
            await runtime.state(container_id)  # NotFound before "cannot"
            if not isinstance(runtime, InteractiveExec):
                raise Invalid(
                    f"the {runtime.name} runtime cannot run an interactive exec",
                    hint="use the runc (or process) runtime",
                )
            session = await runtime.open_exec(
                container_id,
                options.argv,
                tty=options.tty,
                stdin=options.stdin,
                size=options.size,
            )
        except ShoalError as exc:
            await websocket.send_denial_response(_error(exc))
            return
        try:
            await relay(websocket, session)
        finally:
            await session.close()

    async def stats(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        container_id = request.path_params["container_id"]
        try:
            state = await runtime.state(container_id)
            if isinstance(runtime, _Measures):
                found = await runtime.stats(container_id)
                source = "cgroup"
            elif state.status == "running" and state.pid:
                found = proc_stats(state.pid)
                source = "proc"
            elif state.status != "running":
                raise Conflict(f"container {container_id!r} is not running")
            else:
                raise Invalid(f"the {runtime.name} runtime cannot report stats")
        except ShoalError as exc:
            return _error(exc)
        return JSONResponse({**found.model_dump(), "time": time.time(), "source": source})

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/health", health),
            Route("/v1/containers/{container_id}/logs", logs),
            Route("/v1/containers/{container_id}/exec", exec_, methods=["POST"]),
            WebSocketRoute("/v1/containers/{container_id}/exec", exec_session),
            Route("/v1/containers/{container_id}/stats", stats),
            Route(
                "/v1/volumes/{name}",
                delete_endpoint(volumes_root(runtime), authorized),
                methods=["DELETE"],
            ),
        ]
    )
