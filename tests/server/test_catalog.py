"""The service catalog in-process: listings, one service, the ready filter, blocking queries.

Endpoints objects are written straight into the store, as the endpoints controller will.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from shoal.model.codec import encode
from shoal.model.network import EndpointMode, Endpoints, EndpointTask, PublishedPort
from shoal.server import objects
from shoal.store import DeleteOp, PutOp
from tests.server.harness import Server, running_server

Body = dict[str, Any]


def run(tmp_path: Path, test: Callable[[Server], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_server(tmp_path) as server:
            await test(server)

    asyncio.run(main())


def task(n: int, ready: bool = True) -> EndpointTask:
    return EndpointTask(
        id=f"task{n:03d}",
        node_id=f"node-{n % 2}",
        slot=n,
        addresses={"shop_front": f"10.1.0.{n + 10}", "shop_back": f"10.2.0.{n + 10}"},
        hostname=f"web.{n}",
        ready=ready,
    )


def web(*tasks: EndpointTask, stack: str = "shop", service: str = "web") -> Endpoints:
    return Endpoints(
        stack=stack,
        service=service,
        vips={"shop_front": "10.1.0.2"},
        ports=[PublishedPort(target=80, published=8080)],
        target_ports=[80, 443],
        tasks=list(tasks),
    )


async def publish(s: Server, ep: Endpoints) -> int:
    key = objects.endpoints_key(ep.stack, ep.service)
    return await s.ctx.commit([], [PutOp(key, encode(ep))], f"endpoints {key}")


async def remove(s: Server, stack: str, service: str) -> int:
    key = objects.endpoints_key(stack, service)
    return await s.ctx.commit([], [DeleteOp(key)], f"endpoints {key}")


async def get(s: Server, path: str, **params: Any) -> httpx.Response:
    r = await s.http.get(path, params=params)
    assert r.status_code == 200, r.text
    return r


def test_list_summarises_every_service(tmp_path: Path) -> None:
    async def test(s: Server) -> None:
        await publish(s, web(task(1), task(2, ready=False), task(3)))
        db = Endpoints(stack="shop", service="db", mode=EndpointMode.DNSRR, tasks=[task(4)])
        await publish(s, db)
        await publish(s, web(stack="blog"))
        body = (await get(s, "/v1/catalog/services")).json()
        assert [(e["stack"], e["service"]) for e in body] == [
            ("blog", "web"),
            ("shop", "db"),
            ("shop", "web"),
        ]
        shop_web = body[2]
        assert shop_web == {
            "stack": "shop",
            "service": "web",
            "mode": "vip",
            "vips": {"shop_front": "10.1.0.2"},
            "ports": [
                {
                    "target": 80,
                    "published": 8080,
                    "protocol": "tcp",
                    "mode": "ingress",
                    "host_ip": "",
                    "name": "",
                }
            ],
            "ready": 2,
            "total": 3,
        }
        assert body[1]["mode"] == "dnsrr" and (body[1]["ready"], body[1]["total"]) == (1, 1)
        of_stack = (await get(s, "/v1/catalog/services/shop")).json()
        assert [e["service"] for e in of_stack] == ["db", "web"]

    run(tmp_path, test)


def test_one_service_with_endpoints_and_ready_filter(tmp_path: Path) -> None:
    async def test(s: Server) -> None:
        revision = await publish(s, web(task(1), task(2, ready=False)))
        r = await get(s, "/v1/catalog/services/shop/web")
        body = r.json()
        assert body["revision"] == revision
        assert int(r.headers["x-shoal-index"]) >= revision
        assert (body["stack"], body["service"], body["mode"]) == ("shop", "web", "vip")
        assert body["vips"] == {"shop_front": "10.1.0.2"} and body["ports"][0]["published"] == 8080
        assert body["endpoints"][0] == {
            "task": "task001",
            "node": "node-1",
            "slot": 1,
            "hostname": "web.1",
            "address": "10.1.0.11",  # on the first network
            "addresses": {"shop_front": "10.1.0.11", "shop_back": "10.2.0.11"},
            "port": 80,
            "ports": [80, 443],
            "ready": True,
        }
        assert [e["ready"] for e in body["endpoints"]] == [True, False]
        ready = (await get(s, "/v1/catalog/services/shop/web", ready=True)).json()
        assert [e["task"] for e in ready["endpoints"]] == ["task001"]

    run(tmp_path, test)


def test_unknown_services_name_what_exists(tmp_path: Path) -> None:
    async def test(s: Server) -> None:
        r = await s.http.get("/v1/catalog/services/shop/web")
        assert r.status_code == 404 and "catalog is empty" in r.json()["error"]["hint"]
        await publish(s, web())
        await publish(s, web(stack="blog", service="api"))
        for path in ("/v1/catalog/services/shop/nope", "/v1/catalog/services/nope"):
            r = await s.http.get(path)
            assert r.status_code == 404, r.text
            error = r.json()["error"]
            assert error["kind"] == "NotFound" and "nope" in error["message"]
            assert "blog/api, shop/web" in error["hint"]

    run(tmp_path, test)


def test_blocking_query_wakes_on_a_change_of_its_service(tmp_path: Path) -> None:
    async def test(s: Server) -> None:
        first = await publish(s, web(task(1, ready=False)))
        await publish(s, web(service="other"))
        index = int((await get(s, "/v1/catalog/services/shop/web")).headers["x-shoal-index"])

        async def change_later() -> int:
            await asyncio.sleep(0.05)
            await publish(s, web(task(9), service="other"))  # another service: no wake-up
            await asyncio.sleep(0.05)
            return await publish(s, web(task(1, ready=True)))

        started = time.monotonic()
        r, changed = await asyncio.gather(
            s.http.get("/v1/catalog/services/shop/web", params={"index": index, "wait": "5s"}),
            change_later(),
        )
        elapsed = time.monotonic() - started
        assert r.status_code == 200 and elapsed < 2, elapsed
        body = r.json()
        assert body["revision"] == changed > first
        assert body["endpoints"][0]["ready"] is True
        assert int(r.headers["x-shoal-index"]) >= changed

        # An index older than the service's revision answers at once.
        r = await s.http.get("/v1/catalog/services/shop/web", params={"index": first, "wait": "5s"})
        assert r.json()["revision"] == changed

    run(tmp_path, test)


def test_blocking_query_times_out_with_the_current_state(tmp_path: Path) -> None:
    async def test(s: Server) -> None:
        revision = await publish(s, web(task(1)))
        index = int((await get(s, "/v1/catalog/services/shop/web")).headers["x-shoal-index"])
        started = time.monotonic()
        r = await get(s, "/v1/catalog/services/shop/web", index=index, wait="300ms")
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 2, elapsed
        assert r.json()["revision"] == revision and len(r.json()["endpoints"]) == 1
        r = await s.http.get("/v1/catalog/services", params={"index": 1, "wait": "forever"})
        assert r.status_code == 400 and "not a duration" in r.json()["error"]["message"]

    run(tmp_path, test)


def test_blocking_list_wakes_when_a_service_goes_away(tmp_path: Path) -> None:
    async def test(s: Server) -> None:
        await publish(s, web())
        await publish(s, web(service="db"))
        index = int((await get(s, "/v1/catalog/services")).headers["x-shoal-index"])

        async def remove_later() -> None:
            await asyncio.sleep(0.05)
            await remove(s, "shop", "db")

        r, _ = await asyncio.gather(
            s.http.get("/v1/catalog/services", params={"index": index, "wait": "5s"}),
            remove_later(),
        )
        assert [e["service"] for e in r.json()] == ["web"]
        # A removal that happened before the query, after the index, answers at once too.
        await publish(s, web(service="db"))
        index = int((await get(s, "/v1/catalog/services")).headers["x-shoal-index"])
        await remove(s, "shop", "db")
        started = time.monotonic()
        r = await get(s, "/v1/catalog/services", index=index, wait="5s")
        assert time.monotonic() - started < 1 and [e["service"] for e in r.json()] == ["web"]

    run(tmp_path, test)


def test_blocking_on_one_service_answers_404_when_it_is_removed(tmp_path: Path) -> None:
    async def test(s: Server) -> None:
        await publish(s, web())
        index = int((await get(s, "/v1/catalog/services/shop/web")).headers["x-shoal-index"])

        async def remove_later() -> None:
            await asyncio.sleep(0.05)
            await remove(s, "shop", "web")

        r, _ = await asyncio.gather(
            s.http.get("/v1/catalog/services/shop/web", params={"index": index, "wait": "5s"}),
            remove_later(),
        )
        assert r.status_code == 404

    run(tmp_path, test)
