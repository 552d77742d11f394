"""The key/value API in-process: CRUD, prefixes, CAS, limits, leases, watches, scoped tokens.

The store runs on a fake clock, so lease expiry is decided by the test, not by sleeping. Watches
are driven over raw ASGI (httpx's ASGITransport waits for a whole body, and a watch never ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from shoal.client.http import SSEParser
from shoal.server.app import create_app
from shoal.server.auth import scoped_token
from shoal.server.cache import ClusterCache
from shoal.server.context import ServerContext
from shoal.server.routes_kv import MAX_KEY_BYTES, MAX_VALUE_BYTES
from shoal.store.memory import MemoryStore
from tests.server.harness import TOKEN, FakeClock

Body = dict[str, Any]


@dataclass
class KvServer:
    app: FastAPI
    ctx: ServerContext
    http: httpx.AsyncClient
    clock: FakeClock

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url="http://test",
            transport=httpx.ASGITransport(app=self.app),
            headers={"Authorization": f"Bearer {token}"},
        )

    async def put(self, key: str, value: bytes | str, **params: Any) -> int:
        r = await self.http.put(f"/v1/kv/{key}", content=value, params=params)
        assert r.status_code == 200, r.text
        revision: int = r.json()["revision"]
        return revision


@contextlib.asynccontextmanager
async def kv_server(tmp_path: Path) -> AsyncIterator[KvServer]:
    clock = FakeClock()
    async with MemoryStore.open(clock=clock) as store:
        cache = ClusterCache(store)
        await cache.load()
        ctx = ServerContext(store=store, cache=cache, token=TOKEN, data_dir=tmp_path, clock=clock)
        follower = asyncio.create_task(cache.run())
        app = create_app(ctx)
        server = KvServer(app, ctx, httpx.AsyncClient(), clock)
        server.http = server.client(TOKEN)
        try:
            yield server
        finally:
            await server.http.aclose()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


def run(tmp_path: Path, test: Callable[[KvServer], Awaitable[None]]) -> None:
    async def main() -> None:
        async with kv_server(tmp_path) as server:
            await test(server)

    asyncio.run(main())


def error(r: httpx.Response, status: int, kind: str | None = None) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    if kind:
        assert body["kind"] == kind
    return f"{body['message']} {body.get('hint', '')}"


class Watch:
    """One streaming GET driven over raw ASGI: status, headers, then SSE frames as they come."""

    def __init__(self, app: FastAPI, path: str, params: Body, token: str = TOKEN) -> None:
        self.app = app
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(params).encode(),
            "headers": [(b"authorization", f"Bearer {token}".encode()), (b"host", b"test")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        self.sent: asyncio.Queue[Body] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.parser = SSEParser()
        self.pending: list[tuple[str, Any]] = []
        self.buffer = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.asked = False

    async def _receive(self) -> Body:
        if not self.asked:
            self.asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self.sent.put(dict(message))

    async def __aenter__(self) -> Watch:
        self.task = asyncio.create_task(self.app(self.scope, self._receive, self._send))
        start = await asyncio.wait_for(self.sent.get(), 5)
        self.status = start["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        if self.status != 200:  # an error answer: collect its whole body
            while True:
                message = await asyncio.wait_for(self.sent.get(), 5)
                self.body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        return self

    async def __aexit__(self, *_: object) -> None:
        self.disconnected.set()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

    async def frame(self, timeout: float = 5.0) -> tuple[str, Any]:
        while not self.pending:
            message = await asyncio.wait_for(self.sent.get(), timeout)
            self.buffer += message.get("body", b"")
            *lines, rest = self.buffer.split(b"\n")
            self.buffer = rest
            for line in lines:
                parsed = self.parser.feed(line.decode())
                if parsed is not None:
                    self.pending.append(parsed)
        return self.pending.pop(0)

    async def events(self, n: int) -> list[tuple[str, str, int]]:
        out = []
        for _ in range(n):
            kind, data = await self.frame()
            out.append((kind, data["key"], data["mod_revision"]))
        return out


# --- CRUD, prefixes, encodings ---------------------------------------------------------------


def test_put_get_delete_one_key(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        rev = await s.put("app/config", "x=1")
        r = await s.http.get("/v1/kv/app/config")
        assert r.status_code == 200
        assert r.json() == {
            "key": "app/config",
            "value": "x=1",
            "encoding": "utf-8",
            "create_revision": rev,
            "mod_revision": rev,
            "version": 1,
            "lease": None,
        }
        assert int(r.headers["x-shoal-revision"]) >= rev
        rev2 = await s.put("app/config", "x=2")
        again = (await s.http.get("/v1/kv/app/config")).json()
        assert (again["value"], again["version"], again["create_revision"]) == ("x=2", 2, rev)
        assert again["mod_revision"] == rev2 > rev

        r = await s.http.delete("/v1/kv/app/config")
        assert r.json()["deleted"] == 1 and r.json()["revision"] > rev2
        assert "shoal kv ls app" in error(await s.http.get("/v1/kv/app/config"), 404, "NotFound")
        assert (await s.http.delete("/v1/kv/app/config")).json()["deleted"] == 0

    run(tmp_path, test)


def test_binary_values_are_base64_in_json_and_bare_with_raw(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        blob = bytes(range(256))
        await s.put("bin", blob)
        entry = (await s.http.get("/v1/kv/bin")).json()
        assert entry["encoding"] == "base64"
        import base64

        assert base64.b64decode(entry["value"]) == blob
        raw = await s.http.get("/v1/kv/bin", params={"raw": True})
        assert raw.content == blob
        assert raw.headers["content-type"] == "application/octet-stream"
        assert int(raw.headers["x-shoal-mod-revision"]) == entry["mod_revision"]

    run(tmp_path, test)


def test_prefix_lists_sorted_with_keys_only_and_limit(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        for key in ["a/c", "a/a", "ab", "a/b", "b"]:
            await s.put(key, key.upper())
        r = await s.http.get("/v1/kv/a/", params={"prefix": True})
        body = r.json()
        assert [i["key"] for i in body["items"]] == ["a/a", "a/b", "a/c"]  # not "ab"
        assert [i["value"] for i in body["items"]] == ["A/A", "A/B", "A/C"]
        assert body["revision"] == int(r.headers["x-shoal-revision"]) and body["more"] is False
        keys = (await s.http.get("/v1/kv/a/", params={"prefix": True, "keys_only": True})).json()
        assert all("value" not in i and i["mod_revision"] > 0 for i in keys["items"])
        page = (await s.http.get("/v1/kv/", params={"prefix": True, "limit": 2})).json()
        assert [i["key"] for i in page["items"]] == ["a/a", "a/b"] and page["more"] is True
        everything = (await s.http.get("/v1/kv/", params={"prefix": True})).json()
        assert len(everything["items"]) == 5 and everything["more"] is False

        r = await s.http.delete("/v1/kv/a/", params={"prefix": True})
        assert r.json()["deleted"] == 3
        left = (await s.http.get("/v1/kv/", params={"prefix": True})).json()
        assert [i["key"] for i in left["items"]] == ["ab", "b"]

    run(tmp_path, test)


def test_reading_the_past_with_revision(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        first = await s.put("k", "one")
        await s.put("k", "two")
        old = (await s.http.get("/v1/kv/k", params={"revision": first})).json()
        assert old["value"] == "one"
        last = await s.put("k", "three")
        await s.ctx.store.compact(last)
        r = await s.http.get("/v1/kv/k", params={"revision": first})
        assert f"oldest revision still available is {last}" in error(r, 410)

    run(tmp_path, test)


def test_user_keys_stay_under_the_kv_prefix(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        await s.put("nodes/x", "mine")
        kvs, _ = await s.ctx.store.range("/")
        assert [kv.key for kv in kvs if kv.value == b"mine"] == ["/kv/nodes/x"]
        # A listing of the whole space shows user keys only, never the cluster's objects.
        await s.put("zz", "z")
        assert await s.ctx.store.get("/kv/zz") is not None
        listed = (await s.http.get("/v1/kv/", params={"prefix": True})).json()["items"]
        assert [i["key"] for i in listed] == ["nodes/x", "zz"]

    run(tmp_path, test)


# --- compare-and-swap -------------------------------------------------------------------------


def test_cas_create_only_update_and_conflicts(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        created = await s.put("lock", "me", cas=0)
        r = await s.http.put("/v1/kv/lock", content="you", params={"cas": 0})
        message = error(r, 409, "Conflict")
        assert f"current mod_revision is {created}" in message
        assert (await s.http.get("/v1/kv/lock")).json()["value"] == "me"

        updated = await s.put("lock", "me again", cas=created)
        r = await s.http.put("/v1/kv/lock", content="stale", params={"cas": created})
        assert f"current mod_revision is {updated}" in error(r, 409, "Conflict")

        r = await s.http.put("/v1/kv/missing", content="x", params={"cas": 5})
        assert "does not exist" in error(r, 409, "Conflict")

        r = await s.http.delete("/v1/kv/lock", params={"cas": created})
        assert f"current mod_revision is {updated}" in error(r, 409, "Conflict")
        r = await s.http.delete("/v1/kv/lock", params={"cas": updated})
        assert r.status_code == 200 and r.json()["deleted"] == 1

    run(tmp_path, test)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params", "content", "needle"),
    [
        ("PUT", "/v1/kv/", {}, b"x", "must not be empty"),
        ("GET", "/v1/kv/", {}, b"", "must not be empty"),
        ("PUT", "/v1/kv/a/%2E%2E/b", {}, b"x", "'..'"),  # httpx folds a bare "/../"
        ("PUT", "/v1/kv/" + "k" * (MAX_KEY_BYTES + 1), {}, b"x", f"limit is {MAX_KEY_BYTES}"),
        ("PUT", "/v1/kv/big", {}, b"v" * (MAX_VALUE_BYTES + 1), "limit is 1048576 bytes"),
        ("DELETE", "/v1/kv/", {"prefix": True}, b"", "non-empty prefix"),
        ("DELETE", "/v1/kv/a", {"prefix": True, "cas": 1}, b"", "no ?cas="),
        ("GET", "/v1/kv/a", {"prefix": True, "raw": True}, b"", "one key"),
    ],
)
def test_invalid_requests_say_what_is_wrong(
    tmp_path: Path, method: str, path: str, params: Body, content: bytes, needle: str
) -> None:
    async def test(s: KvServer) -> None:
        r = await s.http.request(method, path, params=params, content=content)
        assert needle in error(r, 400, "Invalid")

    run(tmp_path, test)


def test_value_at_the_limits(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        key = "k" * MAX_KEY_BYTES
        await s.put(key, b"v" * MAX_VALUE_BYTES)
        raw = await s.http.get(f"/v1/kv/{key}", params={"raw": True})
        assert len(raw.content) == MAX_VALUE_BYTES
        await s.put("empty", b"")
        assert (await s.http.get("/v1/kv/empty")).json()["value"] == ""
        await s.put("a..b/c.d", "dots inside a segment are fine")

    run(tmp_path, test)


# --- leases -----------------------------------------------------------------------------------


async def grant(s: KvServer, ttl: float, http: httpx.AsyncClient | None = None) -> int:
    r = await (http or s.http).post("/v1/leases", json={"ttl": ttl})
    assert r.status_code == 200, r.text
    assert r.json()["ttl"] == ttl
    lease: int = r.json()["id"]
    return lease


def test_lease_expiry_deletes_its_keys(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        lease = await grant(s, 10)
        await s.put("svc/a", "1", lease=lease)
        await s.put("svc/b", "2", lease=lease)
        await s.put("svc/keep", "3")
        info = (await s.http.get(f"/v1/leases/{lease}")).json()
        assert info["keys"] == ["svc/a", "svc/b"] and info["ttl"] == 10
        assert 0 < info["remaining"] <= 10
        assert (await s.http.get("/v1/kv/svc/a")).json()["lease"] == lease

        s.clock.advance(6)
        r = await s.http.post(f"/v1/leases/{lease}/keepalive")
        assert r.json() == {"id": lease, "ttl": 10, "remaining": 10}
        s.clock.advance(6)  # 12 s after the grant, 6 after the renewal
        assert (await s.http.get("/v1/kv/svc/a")).status_code == 200

        s.clock.advance(5)
        error(await s.http.get("/v1/kv/svc/a"), 404, "NotFound")
        left = (await s.http.get("/v1/kv/svc/", params={"prefix": True})).json()["items"]
        assert [i["key"] for i in left] == ["svc/keep"]
        error(await s.http.get(f"/v1/leases/{lease}"), 404)
        error(await s.http.post(f"/v1/leases/{lease}/keepalive"), 404)
        r = await s.http.put("/v1/kv/svc/late", content="x", params={"lease": lease})
        error(r, 404, "NotFound")

    run(tmp_path, test)


def test_expiry_is_seen_by_watchers(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        lease = await grant(s, 5)
        rev = await s.put("svc/a", "1", lease=lease)
        async with Watch(s.app, "/v1/kv/svc/", {"watch": True, "prefix": True}) as w:
            s.clock.advance(6)
            await s.ctx.store.expire_leases()  # what the server's maintenance loop does
            kind, data = await w.frame()
            assert (kind, data["key"]) == ("delete", "svc/a") and data["mod_revision"] > rev

    run(tmp_path, test)


def test_revoke_deletes_keys_and_unknown_leases_are_404(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        lease = await grant(s, 60)
        await s.put("x", "1", lease=lease)
        r = await s.http.delete(f"/v1/leases/{lease}")
        assert r.status_code == 200 and r.json()["revoked"] is True
        error(await s.http.get("/v1/kv/x"), 404)
        error(await s.http.delete(f"/v1/leases/{lease}"), 404, "NotFound")
        error(await s.http.post("/v1/leases/999/keepalive"), 404, "NotFound")
        r = await s.http.put("/v1/kv/y", content="1", params={"lease": 999})
        error(r, 404, "NotFound")
        assert (await s.http.post("/v1/leases", json={"ttl": 0})).status_code == 422
        # A put without ?lease detaches the key from its lease, as in etcd.
        other = await grant(s, 60)
        await s.put("z", "1", lease=other)
        await s.put("z", "2")
        await s.http.delete(f"/v1/leases/{other}")
        assert (await s.http.get("/v1/kv/z")).json()["value"] == "2"

    run(tmp_path, test)


# --- watch ------------------------------------------------------------------------------------


def test_watch_resumes_from_a_revision_without_gap_or_repeat(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        r1 = await s.put("w/a", "1")
        r2 = await s.put("w/b", "2")
        await s.put("other", "not watched")
        async with Watch(s.app, "/v1/kv/w/", {"watch": True, "prefix": True, "revision": r1}) as w:
            assert w.status == 200 and w.headers["x-shoal-revision"] == str(r1)
            assert await w.events(1) == [("put", "w/b", r2)]  # after r1: not w/a again
            r3 = await s.put("w/c", "3")
            kind, data = await w.frame()
            assert (kind, data["key"], data["value"], data["mod_revision"]) == (
                "put",
                "w/c",
                "3",
                r3,
            )
        # Disconnected; meanwhile two changes. Resuming after r3 gives exactly those.
        r4 = await s.put("w/d", "4")
        await s.http.delete("/v1/kv/w/a")
        async with Watch(s.app, "/v1/kv/w/", {"watch": True, "prefix": True, "revision": r3}) as w:
            assert await w.events(2) == [("put", "w/d", r4), ("delete", "w/a", r4 + 1)]
            marker = await s.put("w/marker", "end")
            assert await w.events(1) == [("put", "w/marker", marker)]

    run(tmp_path, test)


def test_watch_of_one_key_and_from_now(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        await s.put("cfg", "old")
        async with Watch(s.app, "/v1/kv/cfg", {"watch": True}) as w:
            now = int(w.headers["x-shoal-revision"])
            assert now == await s.ctx.store.current_revision()
            await s.put("cfg2", "same prefix, other key")
            rev = await s.put("cfg", "new")
            kind, data = await w.frame()
            assert (kind, data["key"], data["value"], data["mod_revision"]) == (
                "put",
                "cfg",
                "new",
                rev,
            )

    run(tmp_path, test)


def test_watch_from_a_compacted_revision_is_410(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        for i in range(5):
            last = await s.put("c/k", str(i))
        await s.ctx.store.compact(last - 1)
        async with Watch(s.app, "/v1/kv/c/", {"watch": True, "prefix": True, "revision": 1}) as w:
            assert w.status == 410
            message = w.body.decode()
            assert f"oldest revision still available is {last - 1}" in message
            assert "list again with ?prefix" in message
        # The oldest available revision itself is still watchable.
        after = last - 2
        async with Watch(
            s.app, "/v1/kv/c/", {"watch": True, "prefix": True, "revision": after}
        ) as w:
            assert w.status == 200
            assert await w.events(2) == [("put", "c/k", last - 1), ("put", "c/k", last)]
        async with Watch(s.app, "/v1/kv/c/", {"watch": True, "revision": last + 5}) as w:
            assert w.status == 400 and b"in the future" in w.body

    run(tmp_path, test)


# --- stack-scoped tokens ----------------------------------------------------------------------


def test_scoped_token_format() -> None:
    token = scoped_token(TOKEN, "shop")
    assert re.fullmatch(r"stack\.shop\.[0-9a-f]{64}", token)
    assert token == scoped_token(TOKEN, "shop")
    assert token != scoped_token("another-admin-token", "shop")
    assert token != scoped_token(TOKEN, "shop2")


def test_scoped_token_reaches_only_its_stack(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        await s.put("stacks/other/secret", "theirs")
        async with s.client(scoped_token(TOKEN, "shop")) as shop:
            r = await shop.put("/v1/kv/stacks/shop/db/url", content="postgres://db")
            assert r.status_code == 200
            assert (await shop.get("/v1/kv/stacks/shop/db/url")).json()["value"] == "postgres://db"
            listed = await shop.get("/v1/kv/stacks/shop/", params={"prefix": True})
            assert [i["key"] for i in listed.json()["items"]] == ["stacks/shop/db/url"]
            assert (await shop.delete("/v1/kv/stacks/shop/db/url")).status_code == 200
            async with Watch(
                s.app,
                "/v1/kv/stacks/shop/",
                {"watch": True, "prefix": True},
                token=scoped_token(TOKEN, "shop"),
            ) as w:
                assert w.status == 200
            lease = await grant(s, 30, shop)
            r = await shop.put("/v1/kv/stacks/shop/alive", content="1", params={"lease": lease})
            assert r.status_code == 200
            info = (await shop.get(f"/v1/leases/{lease}")).json()
            assert info["keys"] == ["stacks/shop/alive"]
            assert (await shop.post(f"/v1/leases/{lease}/keepalive")).status_code == 200
            r = await shop.get("/v1/catalog/services/shop/web")
            assert r.status_code == 404  # allowed, merely absent

            forbidden = [
                ("GET", "/v1/kv/stacks/other/secret"),
                ("PUT", "/v1/kv/stacks/other/secret"),
                ("GET", "/v1/kv/stacks/shopx/y"),
                ("GET", "/v1/kv/stacks/shop"),  # the prefix must end with "/"
                ("GET", "/v1/kv/app/config"),
                ("GET", "/v1/stacks"),
                ("GET", "/v1/nodes"),
                ("GET", "/v1/catalog/services"),
                ("GET", "/v1/catalog/services/other/web"),
                ("POST", "/v1/stacks/shop/deploy"),
            ]
            for method, path in forbidden:
                r = await shop.request(method, path)
                assert r.status_code == 403, (method, path, r.text)
                assert "scoped to stack 'shop'" in r.json()["error"]["message"]
            # Keys are names: a '..' never climbs out of the stack's space.
            r = await shop.put("/v1/kv/stacks/shop/%2E%2E/other/secret", content="x")
            assert r.status_code == 400
            assert (await s.http.get("/v1/kv/stacks/other/secret")).json()["value"] == "theirs"

    run(tmp_path, test)


def test_leases_of_one_stack_are_invisible_to_another(tmp_path: Path) -> None:
    async def test(s: KvServer) -> None:
        async with (
            s.client(scoped_token(TOKEN, "shop")) as shop,
            s.client(scoped_token(TOKEN, "blog")) as blog,
        ):
            lease = await grant(s, 30, shop)
            await shop.put("/v1/kv/stacks/shop/a", content="1", params={"lease": lease})
            for request in (
                blog.delete(f"/v1/leases/{lease}"),
                blog.post(f"/v1/leases/{lease}/keepalive"),
                blog.get(f"/v1/leases/{lease}"),
                blog.put("/v1/kv/stacks/blog/x", content="1", params={"lease": lease}),
            ):
                error(await request, 404, "NotFound")
            admin_lease = await grant(s, 30)
            error(await shop.delete(f"/v1/leases/{admin_lease}"), 404)
            assert (await shop.get("/v1/kv/stacks/shop/a")).status_code == 200
            # The admin token reaches every lease.
            assert (await s.http.delete(f"/v1/leases/{lease}")).status_code == 200
            error(await shop.get("/v1/kv/stacks/shop/a"), 404)

    run(tmp_path, test)


@pytest.mark.parametrize(
    "token",
    [
        "stack.shop." + "0" * 64,  # forged MAC
        scoped_token("some-other-admin-token", "shop"),  # another cluster's
        scoped_token(TOKEN, "shop")[:-1],  # truncated
        "stack.shop",
        "stack..abc",
        "",
    ],
)
def test_forged_scoped_tokens_are_refused(tmp_path: Path, token: str) -> None:
    async def test(s: KvServer) -> None:
        async with s.client(token) as c:
            r = await c.get("/v1/kv/stacks/shop/x")
            assert r.status_code == 401, r.text
            assert r.json()["error"]["kind"] == "Unauthorized"

    run(tmp_path, test)
