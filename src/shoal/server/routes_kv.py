"""The users' key/value space (`/v1/kv/<key>`) with compare-and-swap, watches and leases.

The store already has etcd's semantics; this module maps user keys into `objects.KV` (and
refuses keys that could leave it or grow without bound), encodes values for JSON, turns store
errors into messages about the user's key, and keeps stack-scoped tokens to their own leases.
Each lease gets a server-owned record `/leases/<id>` (granted TTL, owning stack) attached to
the lease itself, so it survives restarts and vanishes with the lease.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from shoal.model.errors import Conflict, Gone, Invalid, NotFound
from shoal.server import objects
from shoal.server.auth import context, request_stack
from shoal.server.context import ServerContext
from shoal.server.sse import frame, stream
from shoal.store import (
    Compacted,
    Compare,
    DeleteOp,
    Event,
    EventType,
    GetOp,
    KeyValue,
    RevisionMismatch,
)

router = APIRouter(prefix="/v1")

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 1024 * 1024
MAX_INT = 2**63 - 1  # SQLite's integers
LEASES = "/leases/"
REVISION_HEADER = "X-Shoal-Revision"


class KvItem(BaseModel):
    key: str
    value: str | None = Field(None, description="absent with keys_only")
    encoding: str | None = Field(None, description='"utf-8", or "base64" when not valid UTF-8')
    create_revision: int
    mod_revision: int
    version: int
    lease: int | None = None


class KvList(BaseModel):
    revision: int
    items: list[KvItem]
    more: bool = Field(description="true when `limit` cut the list")


class LeaseRequest(BaseModel):
    ttl: float = Field(ge=0.5, le=30 * 86400, description="seconds the lease lives unrenewed")


def check_key(key: str, *, prefix: bool = False) -> str:
    """The store key of a user key (or prefix); Invalid if it is empty, too long or has `..`."""
    if not key and not prefix:
        raise Invalid("a key must not be empty", hint="e.g. PUT /v1/kv/app/config")
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        raise Invalid(f"the key is {size} bytes long: the limit is {MAX_KEY_BYTES} bytes")
    if ".." in key.split("/"):
        raise Invalid(f"key {key!r} has a '..' segment: keys are names, not paths")
    return objects.KV + key


def encode_value(value: bytes) -> tuple[str, str]:
    try:
        return value.decode(), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), "base64"


def item(kv: KeyValue, keys_only: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"key": kv.key[len(objects.KV) :]}
    if not keys_only:
        out["value"], out["encoding"] = encode_value(kv.value)
    out |= {
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }
    return out


def _conflict(key: str, expected: int, actual: int) -> Conflict:
    wanted = "the key to be absent (cas=0)" if expected == 0 else f"mod_revision {expected}"
    found = "it does not exist" if actual == 0 else f"its current mod_revision is {actual}"
    return Conflict(
        f"{key}: compare-and-swap failed: expected {wanted}, but {found}",
        hint="someone else wrote it first: read it again and retry with ?cas=<its mod_revision>",
    )


def _gone(after: int, compact_revision: int) -> Gone:
    return Gone(
        f"revision {after} is compacted: the oldest revision still available is "
        f"{compact_revision}; list again with ?prefix=true then watch from its revision",
    )


async def read_value(request: Request) -> bytes:
    """The request body, refused (without reading it all) beyond MAX_VALUE_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_VALUE_BYTES:
        raise _too_big(f"{int(declared)} bytes")
    value = bytearray()
    async for chunk in request.stream():
        value += chunk
        if len(value) > MAX_VALUE_BYTES:
            raise _too_big(f"more than {MAX_VALUE_BYTES} bytes")
    return bytes(value)


def _too_big(size: str) -> Invalid:
    return Invalid(
        f"the value is {size} long: the limit is {MAX_VALUE_BYTES} bytes (1 MiB)",
        hint="keep large data elsewhere (a volume, a config) and store a reference to it",
    )


# --- keys -------------------------------------------------------------------------------------

_GET_DOC = """One key as JSON; `?prefix=true` every key under the prefix (sorted, `keys_only`,
`limit`, `revision` to read the past); `?raw=true` the bare value bytes. Header
`X-Shoal-Revision` is the store revision of the read.

**Watch**: `?watch=true[&prefix=true][&revision=N]` answers a Server-Sent Events stream: one
`put` or `delete` event per change (data: key, value, encoding, mod_revision, …; id: the
revision), starting *after* revision N (the last one the client saw; default: now). Resume a
dropped watch with the last revision seen. A compacted N answers 410 Gone."""


@router.get(
    "/kv/{key:path}",
    summary="Read a key, list a prefix, or watch",
    description=_GET_DOC,
    tags=["kv"],
    response_model=None,
    responses={200: {"model": KvItem | KvList, "description": "the key, or the list"}},
)
async def get_kv(
    request: Request,
    key: str,
    prefix: bool = Query(False, description="every key starting with `key`"),
    keys_only: bool = Query(False, description="omit the values"),
    limit: int | None = Query(None, ge=1, le=100_000, description="at most this many keys"),
    raw: bool = Query(False, description="answer the bare value bytes"),
    revision: int | None = Query(None, ge=0, le=MAX_INT, description="read at this revision"),
    watch: bool = Query(False, include_in_schema=False),  # endless: kept out of fuzzing
    ctx: ServerContext = Depends(context),
) -> Response:
    store_key = check_key(key, prefix=prefix)
    if watch:
        return await _watch(ctx, store_key, prefix, revision, keys_only)
    await ctx.store.expire_leases()  # never answer a key whose lease ran out
    try:
        return await _read(ctx, key, store_key, prefix, keys_only, limit, raw, revision)
    except Compacted as exc:
        raise _gone(exc.requested, exc.compact_revision) from None


async def _read(
    ctx: ServerContext,
    key: str,
    store_key: str,
    prefix: bool,
    keys_only: bool,
    limit: int | None,
    raw: bool,
    revision: int | None,
) -> Response:
    if prefix:
        if raw:
            raise Invalid("?raw=true reads one key, not a prefix")
        kvs, read_at = await ctx.store.range(
            store_key, limit=None if limit is None else limit + 1, revision=revision
        )
        more = limit is not None and len(kvs) > limit
        body = {"revision": read_at, "items": [item(kv, keys_only) for kv in kvs[:limit]]}
        return JSONResponse(body | {"more": more}, headers={REVISION_HEADER: str(read_at)})
    # A one-key range reads the key and the revision it was read at together.
    kvs, read_at = await ctx.store.range(store_key, limit=1, revision=revision)
    if not kvs or kvs[0].key != store_key:
        command = f"shoal kv ls {key.rpartition('/')[0]}".strip()
        raise NotFound(f"no key {key!r}", hint=f"list what exists with `{command}`")
    headers = {REVISION_HEADER: str(read_at), "X-Shoal-Mod-Revision": str(kvs[0].mod_revision)}
    if raw:
        return Response(kvs[0].value, media_type="application/octet-stream", headers=headers)
    return JSONResponse(item(kvs[0], keys_only), headers=headers)


def _event_data(event: Event, keys_only: bool) -> dict[str, Any]:
    if event.type is EventType.PUT:
        return {"type": "put"} | item(event.kv, keys_only)
    return {
        "type": "delete",
        "key": event.kv.key[len(objects.KV) :],
        "mod_revision": event.revision,
    }


async def _watch(
    ctx: ServerContext, store_key: str, prefix: bool, after: int | None, keys_only: bool
) -> StreamingResponse:
    current = await ctx.store.current_revision()
    if after is None:
        after = current
    elif after > current:
        raise Invalid(
            f"revision {after} is in the future: the store is at revision {current}",
            hint="watch from the last revision you saw (X-Shoal-Revision of a read)",
        )
    elif after < current:
        try:  # fail now, with a status, rather than inside the stream
            await ctx.store.range(store_key, revision=after + 1, limit=1)
        except Compacted as exc:
            raise _gone(after, exc.compact_revision) from None
    events = ctx.store.watch(store_key, start_revision=after + 1)

    async def source() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                if prefix or event.kv.key == store_key:
                    data = _event_data(event, keys_only)
                    yield frame(data["type"], data, event.revision)
        except Compacted as exc:  # a slow watcher overtaken by compaction
            yield frame(
                "error",
                {"status": 410, "message": _gone(exc.requested - 1, exc.compact_revision).message},
            )

    response = stream(source())
    response.headers[REVISION_HEADER] = str(after)
    return response


_BINARY_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    "/kv/{key:path}",
    summary="Write a key (body: the raw value)",
    tags=["kv"],
    openapi_extra=_BINARY_BODY,
    response_model=None,
)
async def put_kv(
    request: Request,
    key: str,
    lease: int | None = Query(None, ge=1, le=MAX_INT, description="attach to this lease"),
    cas: int | None = Query(
        None,
        ge=0,
        le=MAX_INT,
        description="write only if the key is at this mod_revision (0: absent)",
    ),
    ctx: ServerContext = Depends(context),
) -> JSONResponse:
    """Write the request body (≤ 1 MiB) as the key's value; answers `{key, revision}`."""
    store_key = check_key(key)
    value = await read_value(request)
    if lease is not None:
        await _lease_record(ctx, lease, request_stack(request))
    try:
        revision = await ctx.store.put(store_key, value, expect_mod_revision=cas, lease=lease)
    except RevisionMismatch as exc:
        raise _conflict(key, exc.expected, exc.actual) from None
    return JSONResponse(
        {"key": key, "revision": revision}, headers={REVISION_HEADER: str(revision)}
    )


@router.delete("/kv/{key:path}", summary="Delete a key or a prefix", tags=["kv"])
async def delete_kv(
    key: str,
    prefix: bool = Query(False, description="delete every key starting with `key`"),
    cas: int | None = Query(None, ge=0, le=MAX_INT, description="only if at this mod_revision"),
    ctx: ServerContext = Depends(context),
) -> JSONResponse:
    """Answers `{deleted: n, revision}` (deleting nothing is not an error)."""
    if prefix and (cas is not None or not key):
        raise Invalid("a prefix delete needs a non-empty prefix and takes no ?cas=")
    store_key = check_key(key, prefix=prefix)
    compares = [] if cas is None else [Compare.mod_revision(store_key, "==", cas)]
    result = await ctx.store.txn(compares, [DeleteOp(store_key, prefix)], [GetOp(store_key)])
    if not result.succeeded:
        found = result.responses[0].kvs
        raise _conflict(key, cas or 0, found[0].mod_revision if found else 0)
    body = {"deleted": len(result.responses[0].prev_kvs), "revision": result.revision}
    return JSONResponse(body, headers={REVISION_HEADER: str(result.revision)})


# --- leases -----------------------------------------------------------------------------------


class LeaseTimes:
    """When each lease granted or renewed here runs out (the Store protocol does not say)."""

    def __init__(self) -> None:
        self.deadlines: dict[int, float] = {}

    def renewed(self, lease: int, ttl: float) -> None:
        now = time.monotonic()
        self.deadlines = {k: d for k, d in self.deadlines.items() if d > now}
        self.deadlines[lease] = now + ttl

    def remaining(self, lease: int) -> float | None:
        deadline = self.deadlines.get(lease)
        return None if deadline is None else round(max(0.0, deadline - time.monotonic()), 3)


def _times(request: Request) -> LeaseTimes:
    times: LeaseTimes | None = getattr(request.app.state, "lease_times", None)
    if times is None:
        times = request.app.state.lease_times = LeaseTimes()
    return times


async def _lease_record(ctx: ServerContext, lease: int, stack: str | None) -> dict[str, Any]:
    """The lease's record; NotFound if it is gone or (for a scoped token) another stack's."""
    await ctx.store.expire_leases()
    kv = await ctx.store.get(f"{LEASES}{lease}")
    record: dict[str, Any] = json.loads(kv.value) if kv is not None else {}
    if kv is None or (stack is not None and record.get("stack") != stack):
        raise NotFound(f"lease {lease} not found (expired or revoked)", hint="grant a new one")
    return record


LeaseId = PathParam(ge=1, le=MAX_INT, description="the lease id")


@router.post("/leases", summary="Grant a lease", tags=["leases"])
async def grant_lease(
    body: LeaseRequest, request: Request, ctx: ServerContext = Depends(context)
) -> dict[str, Any]:
    """A lease that lives `ttl` seconds unless kept alive; keys written with `?lease=<id>`
    vanish when it ends. Answers `{id, ttl}`."""
    lease = await ctx.store.lease_grant(body.ttl)
    record = {"ttl": body.ttl, "stack": request_stack(request)}
    await ctx.store.put(f"{LEASES}{lease}", json.dumps(record).encode(), lease=lease)
    _times(request).renewed(lease, body.ttl)
    return {"id": lease, "ttl": body.ttl}


@router.post("/leases/{lease_id}/keepalive", summary="Renew a lease", tags=["leases"])
async def keepalive_lease(
    request: Request, lease_id: int = LeaseId, ctx: ServerContext = Depends(context)
) -> dict[str, Any]:
    """Restart the lease's TTL; answers `{id, ttl, remaining}`. 404 once it expired."""
    await _lease_record(ctx, lease_id, request_stack(request))
    ttl = await ctx.store.lease_keepalive(lease_id)
    _times(request).renewed(lease_id, ttl)
    return {"id": lease_id, "ttl": ttl, "remaining": ttl}


@router.delete("/leases/{lease_id}", summary="Revoke a lease (its keys vanish)", tags=["leases"])
async def revoke_lease(
    request: Request, lease_id: int = LeaseId, ctx: ServerContext = Depends(context)
) -> dict[str, Any]:
    await _lease_record(ctx, lease_id, request_stack(request))
    await ctx.store.lease_revoke(lease_id)
    return {"id": lease_id, "revoked": True, "revision": await ctx.store.current_revision()}


@router.get("/leases/{lease_id}", summary="A lease's TTL, time left and keys", tags=["leases"])
async def get_lease(
    request: Request, lease_id: int = LeaseId, ctx: ServerContext = Depends(context)
) -> dict[str, Any]:
    """`remaining` is null when the lease was last renewed before this server started."""
    stack = request_stack(request)
    record = await _lease_record(ctx, lease_id, stack)
    visible = objects.KV + (f"stacks/{stack}/" if stack else "")
    kvs, _ = await ctx.store.range(visible)
    return {
        "id": lease_id,
        "ttl": record["ttl"],
        "remaining": _times(request).remaining(lease_id),
        "keys": [kv.key[len(objects.KV) :] for kv in kvs if kv.lease == lease_id],
    }
