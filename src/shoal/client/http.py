"""HTTP client for shoal's API, sync (CLI) and async (agent), with errors rebuilt as ShoalErrors.

Address: `SHOAL_ADDR` (default http://127.0.0.1:7480). Token: `SHOAL_TOKEN`, else the token
file of a server on this machine (`$SHOAL_DATA_DIR/token`, `./.shoal/token`, the default data
directory's `token`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from shoal.model import errors as E
from shoal.model.cluster import (
    Event,
    Node,
    NodeDescription,
    NodeStatus,
    Service,
    Stack,
    Task,
    TaskStatus,
)

M = TypeVar("M")

DEFAULT_ADDR = "http://127.0.0.1:7480"
_KINDS: dict[str, type[E.ShoalError]] = {
    "NotFound": E.NotFound,
    "Conflict": E.Conflict,
    "Invalid": E.Invalid,
    "Unauthorized": E.Unauthorized,
    "Unavailable": E.Unavailable,
    "Forbidden": E.Forbidden,
    "Gone": E.Gone,
}


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/shoal")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "shoal"


def resolve_address(addr: str | None = None) -> str:
    addr = addr or os.environ.get("SHOAL_ADDR") or DEFAULT_ADDR
    return addr if "://" in addr else f"http://{addr}"


def resolve_token(token: str | None = None) -> str:
    if token:
        return token
    if os.environ.get("SHOAL_TOKEN"):
        return os.environ["SHOAL_TOKEN"]
    candidates = []
    if os.environ.get("SHOAL_DATA_DIR"):
        candidates.append(Path(os.environ["SHOAL_DATA_DIR"]) / "token")
    candidates += [Path(".shoal") / "token", default_data_dir() / "token"]
    for path in candidates:
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return ""


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    kind = _KINDS.get(error.get("kind", ""), E.ShoalError)
    if not error:
        kind = E.Unavailable if response.status_code >= 500 else E.Invalid
    message = error.get("message") or f"HTTP {response.status_code}: {response.text[:200]}"
    raise kind(message, hint=error.get("hint"))


def _unavailable(addr: str, exc: Exception) -> E.Unavailable:
    return E.Unavailable(
        f"cannot reach the shoal server at {addr}: {exc}",
        hint="start one with `shoal up`, or set SHOAL_ADDR",
    )


def _parse(cls: Any, data: Any) -> Any:
    return TypeAdapter(cls).validate_python(data)


class SSEParser:
    """Server-Sent Events, one line at a time: `feed` returns (event, JSON data) at frame ends."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, Any] | None:
        if not line:
            frame = (self.event, json.loads("\n".join(self.data))) if self.data else None
            self.event, self.data = "message", []
            return frame
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].strip())
        return None  # comments (keep-alives) and ids


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    parser = SSEParser()
    for line in lines:
        frame = parser.feed(line)
        if frame is not None:
            yield frame


class Client:
    """Synchronous client (CLI)."""

    def __init__(self, addr: str | None = None, token: str | None = None, timeout: float = 30):
        self.addr = resolve_address(addr)
        self.http = httpx.Client(
            base_url=self.addr,
            headers={"Authorization": f"Bearer {resolve_token(token)}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise _unavailable(self.addr, exc) from None
        _raise_for(response)
        return response.json()

    def stream_lines(self, path: str, **kw: Any) -> Iterator[str]:
        try:
            with self.http.stream("GET", path, timeout=httpx.Timeout(10, read=None), **kw) as r:
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r)
                yield from r.iter_lines()
        except httpx.TransportError as exc:
            raise _unavailable(self.addr, exc) from None

    # --- resources --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/health")
        return result

    def deploy(
        self,
        stack: str,
        project: dict[str, Any],
        dry_run: bool = False,
        secrets: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """`secrets`: the values of the project's secrets and configs, `{kind, name, data}`
        with `data` base64 (read here, on the client: the server never sees the files)."""
        body: dict[str, Any] = {"project": project, "dry_run": dry_run}
        if secrets:
            body["secrets"] = secrets
        result: dict[str, Any] = self.request("POST", f"/v1/stacks/{stack}/deploy", json=body)
        return result

    def stacks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/v1/stacks")
        return result

    def stack(self, name: str) -> Stack:
        return Stack.model_validate(self.request("GET", f"/v1/stacks/{name}"))

    def stack_status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/stacks/{name}/status")
        return result

    def remove_stack(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/v1/stacks/{name}")
        return result

    def services(self, stack: str | None = None) -> list[Service]:
        params = {"stack": stack} if stack else {}
        return _parse(list[Service], self.request("GET", "/v1/services", params=params))  # type: ignore[no-any-return]

    def service(self, stack: str, name: str) -> Service:
        return Service.model_validate(self.request("GET", f"/v1/services/{stack}/{name}"))

    def scale(self, stack: str, name: str, replicas: int) -> Service:
        data = self.request(
            "POST", f"/v1/services/{stack}/{name}/scale", json={"replicas": replicas}
        )
        return Service.model_validate(data)

    def service_update(self, stack: str, name: str, body: dict[str, Any]) -> Service:
        data = self.request("POST", f"/v1/services/{stack}/{name}/update", json=body)
        return Service.model_validate(data)

    def service_rollback(self, stack: str, name: str) -> Service:
        data = self.request("POST", f"/v1/services/{stack}/{name}/rollback")
        return Service.model_validate(data)

    def tasks(
        self,
        stack: str | None = None,
        service: str | None = None,
        node: str | None = None,
        all: bool = False,
    ) -> list[Task]:
        params: dict[str, Any] = {"all": all}
        for key, value in (("stack", stack), ("service", service), ("node", node)):
            if value:
                params[key] = value
        return _parse(list[Task], self.request("GET", "/v1/tasks", params=params))  # type: ignore[no-any-return]

    def task(self, task_id: str) -> Task:
        return Task.model_validate(self.request("GET", f"/v1/tasks/{task_id}"))

    def logs(
        self, task_id: str, follow: bool = False, tail: int | None = None
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"follow": follow}
        if tail is not None:
            params["tail"] = tail
        for line in self.stream_lines(f"/v1/tasks/{task_id}/logs", params=params):
            if line.strip():
                yield json.loads(line)

    def exec(self, task_id: str, argv: list[str]) -> dict[str, Any]:
        """Run `argv` in a running task: exit_code, stdout, stderr (and *_truncated flags)."""
        result: dict[str, Any] = self.request(
            "POST", f"/v1/tasks/{task_id}/exec", json={"argv": argv}, timeout=None
        )
        return result

    def task_stats(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/tasks/{task_id}/stats")
        return result

    def stats(self, stack: str | None = None) -> list[dict[str, Any]]:
        """One sample of every running task's (of `stack`) usage, each with its agent's `time`."""
        params = {"stack": stack} if stack else {}
        result: list[dict[str, Any]] = self.request("GET", "/v1/stats", params=params)
        return result

    def events(self, since: int = 0) -> list[Event]:
        return _parse(list[Event], self.request("GET", "/v1/events", params={"since": since}))  # type: ignore[no-any-return]

    def watch_events(self, since: int | None = None) -> Iterator[Event]:
        params = {"since": since} if since is not None else {}
        for kind, data in _sse_events(self.stream_lines("/v1/events/watch", params=params)):
            if kind == "event":
                yield Event.model_validate(data)
            elif kind == "error":
                raise E.Unavailable(f"event stream ended: {data.get('message')}")

    def nodes(self) -> list[Node]:
        return _parse(list[Node], self.request("GET", "/v1/nodes"))  # type: ignore[no-any-return]

    def node(self, node_id: str) -> Node:
        return Node.model_validate(self.request("GET", f"/v1/nodes/{node_id}"))

    def update_node(self, node_id: str, **changes: Any) -> Node:
        return Node.model_validate(self.request("PATCH", f"/v1/nodes/{node_id}", json=changes))


class AsyncClient:
    """Asynchronous client (agent)."""

    def __init__(self, addr: str | None = None, token: str | None = None, timeout: float = 10):
        self.addr = resolve_address(addr)
        self.http = httpx.AsyncClient(
            base_url=self.addr,
            headers={"Authorization": f"Bearer {resolve_token(token)}"},
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise _unavailable(self.addr, exc) from None
        _raise_for(response)
        return response.json()

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/v1/health")
        return result

    async def register(self, description: NodeDescription, node_id: str | None, addr: str) -> Node:
        body = {
            "node_id": node_id,
            "description": description.model_dump(mode="json"),
            "addr": addr,
        }
        return Node.model_validate(await self.request("POST", "/v1/nodes", json=body))

    async def heartbeat(self, node_id: str, addr: str) -> NodeStatus:
        data = await self.request("POST", f"/v1/nodes/{node_id}/heartbeat", json={"addr": addr})
        return NodeStatus.model_validate(data)

    async def tasks(self, node: str) -> list[Task]:
        data = await self.request("GET", "/v1/tasks", params={"node": node, "all": True})
        return _parse(list[Task], data)  # type: ignore[no-any-return]

    async def report(self, task_id: str, node_id: str, status: TaskStatus) -> Task:
        body = {"node_id": node_id, "status": status.model_dump(mode="json")}
        return Task.model_validate(
            await self.request("PUT", f"/v1/tasks/{task_id}/status", json=body)
        )

    async def watch_tasks(self, node: str) -> AsyncIterator[tuple[str, Any]]:
        """(`snapshot` | `put` | `delete`, data) from the server's task watch for `node`."""
        async for item in self.watch("/v1/watch/tasks", {"node": node}):
            yield item

    async def watch_network(self) -> AsyncIterator[tuple[str, Any]]:
        """(`snapshot` | `put` | `delete`, data): networks and endpoints records."""
        async for item in self.watch("/v1/watch/network", {}):
            yield item

    async def watch(self, path: str, params: dict[str, Any]) -> AsyncIterator[tuple[str, Any]]:
        """The (event, data) frames of one SSE watch, until the server ends it."""
        try:
            async with self.http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(10, read=None)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                parser = SSEParser()
                async for line in response.aiter_lines():
                    frame = parser.feed(line)
                    if frame is not None:
                        yield frame
        except httpx.TransportError as exc:
            raise _unavailable(self.addr, exc) from None


__all__ = ["AsyncClient", "BaseModel", "Client"]
