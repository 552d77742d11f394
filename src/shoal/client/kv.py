"""Client side of the key/value API, leases and the service catalog, over `Client`.

`KV.follow` is the watch a program wants: it reconnects after a dropped stream (server restart,
network cut) and resumes from the last revision it saw, so the caller sees every change once
and in order. Resuming *at* the last revision (and skipping the keys of it already seen) rather
than after it keeps a prefix delete that was cut mid-revision from losing its other keys.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from shoal.client.http import Client, SSEParser, _raise_for, _unavailable
from shoal.model.errors import Conflict, ShoalError, Unavailable

WATCH_READ_TIMEOUT = 45.0
"""The server sends a keep-alive every 15 s: longer silence means a dead connection."""


class HistoryGone(Conflict):
    """The revision to watch from is compacted: list again, then watch from the list's revision."""


def value_bytes(entry: dict[str, Any]) -> bytes:
    """The value of a key or put event as bytes, whatever its JSON encoding."""
    value = entry.get("value") or ""
    if entry.get("encoding") == "base64":
        return base64.b64decode(value)
    return str(value).encode()


@dataclass
class Cursor:
    """Where a watch is: the newest revision seen, and the keys of it already delivered."""

    revision: int | None = None
    keys: set[str] = field(default_factory=set)

    def resume_after(self) -> int | None:
        """The `?revision=` to reconnect with (events after it are sent)."""
        if self.revision is None:
            return None
        return self.revision - 1 if self.keys else self.revision

    def accept(self, event: dict[str, Any]) -> bool:
        """Whether `event` is new (and remember it)."""
        revision, key = int(event["mod_revision"]), str(event["key"])
        if self.revision is not None and (
            revision < self.revision or (revision == self.revision and key in self.keys)
        ):
            return False
        if revision != self.revision:
            self.revision, self.keys = revision, set()
        self.keys.add(key)
        return True


class KV:
    """Keys, leases and the catalog. `api` stays owned by the caller."""

    def __init__(self, api: Client) -> None:
        self.api = api

    @staticmethod
    def path(key: str) -> str:
        return "/v1/kv/" + quote(key, safe="/")

    # --- keys -----------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("GET", self.path(key))
        return result

    def get_raw(self, key: str) -> bytes:
        try:
            response = self.api.http.get(self.path(key), params={"raw": True})
        except httpx.TransportError as exc:
            raise _unavailable(self.api.addr, exc) from None
        _raise_for(response)
        return response.content

    def list(
        self, prefix: str, keys_only: bool = False, limit: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"prefix": True, "keys_only": keys_only}
        if limit is not None:
            params["limit"] = limit
        result: dict[str, Any] = self.api.request("GET", self.path(prefix), params=params)
        return result

    def put(
        self, key: str, value: bytes, lease: int | None = None, cas: int | None = None
    ) -> dict[str, Any]:
        params = {k: v for k, v in (("lease", lease), ("cas", cas)) if v is not None}
        result: dict[str, Any] = self.api.request(
            "PUT", self.path(key), content=value, params=params
        )
        return result

    def delete(self, key: str, prefix: bool = False, cas: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"prefix": prefix}
        if cas is not None:
            params["cas"] = cas
        result: dict[str, Any] = self.api.request("DELETE", self.path(key), params=params)
        return result

    # --- watch ----------------------------------------------------------------------------
    def watch(
        self, key: str, prefix: bool = False, after: int | None = None
    ) -> Iterator[tuple[str, Any]]:
        """One watch connection: ("start", revision) first, then ("put" | "delete", event).

        Ends when the server ends the stream; raises `Unavailable` when the connection fails
        and `HistoryGone` when `after` is compacted.
        """
        params: dict[str, Any] = {"watch": True, "prefix": prefix}
        if after is not None:
            params["revision"] = after
        timeout = httpx.Timeout(10, read=WATCH_READ_TIMEOUT)
        try:
            with self.api.http.stream("GET", self.path(key), params=params, timeout=timeout) as r:
                if r.status_code == 410:
                    r.read()
                    raise HistoryGone(r.json()["error"]["message"])
                if r.status_code >= 400:
                    r.read()
                    _raise_for(r)
                yield "start", int(r.headers.get("x-shoal-revision", after or 0))
                parser = SSEParser()
                for line in r.iter_lines():
                    frame = parser.feed(line)
                    if frame is None:
                        continue
                    if frame[0] == "error":
                        raise _stream_error(frame[1])
                    yield frame
        except httpx.TransportError as exc:
            raise _unavailable(self.api.addr, exc) from None

    def follow(
        self,
        key: str,
        prefix: bool = False,
        after: int | None = None,
        on_retry: Callable[[ShoalError, float], None] | None = None,
        max_backoff: float = 2.0,
    ) -> Iterator[dict[str, Any]]:
        """Every change after `after` (default: now), forever, across reconnections.

        `on_retry(error, delay)` hears about each reconnection. `HistoryGone` ends it (the
        caller must list again); so does any error other than `Unavailable`.
        """
        cursor = Cursor(after)
        backoff = 0.1
        while True:
            try:
                for kind, data in self.watch(key, prefix, cursor.resume_after()):
                    if kind == "start":
                        cursor.revision = data if cursor.revision is None else cursor.revision
                        backoff = 0.1
                    elif kind in ("put", "delete") and cursor.accept(data):
                        yield data
                error: ShoalError = Unavailable("the server ended the watch")
            except Unavailable as exc:
                error = exc
            if on_retry is not None:
                on_retry(error, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    # --- leases ---------------------------------------------------------------------------
    def grant(self, ttl: float) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("POST", "/v1/leases", json={"ttl": ttl})
        return result

    def keepalive(self, lease: int) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("POST", f"/v1/leases/{lease}/keepalive")
        return result

    def revoke(self, lease: int) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("DELETE", f"/v1/leases/{lease}")
        return result

    def lease(self, lease: int) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("GET", f"/v1/leases/{lease}")
        return result

    # --- catalog --------------------------------------------------------------------------
    def catalog(
        self,
        target: str = "",
        ready: bool = False,
        index: int | None = None,
        wait: float = 30.0,
    ) -> tuple[Any, int]:
        """(the answer, the index to block on next) for "", "STACK" or "STACK/SERVICE"."""
        path = "/v1/catalog/services" + (f"/{quote(target, safe='/')}" if target else "")
        params: dict[str, Any] = {"ready": True} if ready and "/" in target else {}
        if index is not None:
            params |= {"index": index, "wait": f"{int(wait * 1000)}ms"}
        try:
            response = self.api.http.get(path, params=params, timeout=wait + 10)
        except httpx.TransportError as exc:
            raise _unavailable(self.api.addr, exc) from None
        _raise_for(response)
        return response.json(), int(response.headers.get("x-shoal-index", "0"))


def _stream_error(data: Any) -> ShoalError:
    message = str(data.get("message", "the watch failed")) if isinstance(data, dict) else ""
    if isinstance(data, dict) and data.get("status") == 410:
        return HistoryGone(message)
    return Unavailable(message or "the watch failed")
