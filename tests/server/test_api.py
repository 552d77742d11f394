"""The HTTP API in-process (ASGI transport) over a MemoryStore and a live ClusterCache."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.model.cluster import TaskState
from tests.server.harness import TOKEN, Server, running_server, settle, web

Body = dict[str, Any]


def run(tmp_path: Path, test: Callable[[Server], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_server(tmp_path) as server:
            await test(server)

    asyncio.run(main())


def error_of(response: httpx.Response, status: int, kind: str) -> Body:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: Body = body["error"]
    assert error["kind"] == kind
    assert isinstance(error["message"], str) and error["message"]
    return error


async def deploy(server: Server, services: Body, stack: str = "st", **kw: Any) -> Body:
    r = await server.http.post(
        f"/v1/stacks/{stack}/deploy", json={"project": {"services": services}, **kw}
    )
    assert r.status_code == 200, r.text
    result: Body = r.json()
    return result


async def register(server: Server, node_id: str = "node-1", hostname: str = "h1") -> Body:
    r = await server.http.post(
        "/v1/nodes", json={"node_id": node_id, "description": {"hostname": hostname}}
    )
    assert r.status_code == 200, r.text
    result: Body = r.json()
    return result


# --- auth -----------------------------------------------------------------------------------------


def test_health_needs_no_token(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        async with server.client() as anonymous:
            r = await anonymous.get("/v1/health")
        assert r.status_code == 200
        assert r.json()["status"] == "ok"
        assert r.json()["revision"] == server.ctx.cache.revision

    run(tmp_path, test)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
def test_401_without_the_right_token(tmp_path: Path, headers: dict[str, str]) -> None:
    async def test(server: Server) -> None:
        async with server.client(headers) as client:
            for method, path in [
                ("GET", "/v1/stacks"),
                ("GET", "/v1/nodes"),
                ("POST", "/v1/stacks/st/deploy"),
                ("PUT", "/v1/tasks/x/status"),
            ]:
                r = await client.request(method, path, json={})
                error = error_of(r, 401, "Unauthorized")
                assert "token" in error["message"]
                assert "SHOAL_TOKEN" in error["hint"]

    run(tmp_path, test)


def test_token_in_query_is_accepted(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        async with server.client() as client:
            assert (await client.get("/v1/stacks", params={"token": TOKEN})).status_code == 200
            r = await client.get("/v1/stacks", params={"token": "nope"})
            error_of(r, 401, "Unauthorized")

    run(tmp_path, test)


# --- stacks and services --------------------------------------------------------------------------


def test_deploy_then_list(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        result = await deploy(server, {"web": web(2), "db": {"image": "postgres"}})
        assert result["applied"] is True
        assert result["revision"] == await server.ctx.store.current_revision()
        assert [(s["name"], s["action"]) for s in result["plan"]["services"]] == [
            ("web", "create"),
            ("db", "create"),
        ]

        stacks = (await server.http.get("/v1/stacks")).json()
        assert [(s["name"], s["services"], s["service_count"]) for s in stacks] == [
            ("st", ["db", "web"], 2)
        ]
        stack = (await server.http.get("/v1/stacks/st")).json()
        assert stack["name"] == "st" and not stack["removing"]

        services = (await server.http.get("/v1/services", params={"stack": "st"})).json()
        assert [(s["name"], s["version"]) for s in services] == [("db", 1), ("web", 1)]
        svc = (await server.http.get("/v1/services/st/web")).json()
        assert svc["spec"]["deploy"]["replicas"] == 2
        versions = (await server.http.get("/v1/services/st/web/versions")).json()
        assert [v["version"] for v in versions] == [1]

        again = await deploy(server, {"web": web(2), "db": {"image": "postgres"}})
        assert [s["action"] for s in again["plan"]["services"]] == ["unchanged", "unchanged"]

        changed = await deploy(server, {"web": web(2, image="busybox:2")})
        assert [(s["name"], s["action"], s["version"]) for s in changed["plan"]["services"]] == [
            ("web", "update", 2),
            ("db", "remove", 1),
        ]
        versions = (await server.http.get("/v1/services/st/web/versions")).json()
        assert [v["version"] for v in versions] == [1, 2]
        db = (await server.http.get("/v1/services/st/db")).json()
        assert db["removing"] is True

    run(tmp_path, test)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        before = await server.ctx.store.current_revision()
        result = await deploy(server, {"web": web(2)}, dry_run=True)
        assert result["applied"] is False and result["revision"] == 0
        assert [(s["name"], s["action"]) for s in result["plan"]["services"]] == [("web", "create")]
        assert await server.ctx.store.current_revision() == before
        assert (await server.http.get("/v1/stacks")).json() == []
        error_of(await server.http.get("/v1/stacks/st"), 404, "NotFound")

        await deploy(server, {"web": web(2)})
        before = await server.ctx.store.current_revision()
        preview = await deploy(server, {"web": web(2, image="other")}, dry_run=True)
        [change] = preview["plan"]["services"]
        assert change["action"] == "update"
        assert change["changes"] == [{"path": "image", "old": "busybox", "new": "other"}]
        assert await server.ctx.store.current_revision() == before
        svc = (await server.http.get("/v1/services/st/web")).json()
        assert (svc["version"], svc["spec"]["image"]) == (1, "busybox")

    run(tmp_path, test)


def test_scale(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        await deploy(server, {"web": web(2), "agent": {"image": "a", "deploy": {"mode": "global"}}})
        r = await server.http.post("/v1/services/st/web/scale", json={"replicas": 5})
        assert r.status_code == 200, r.text
        assert r.json()["spec"]["deploy"]["replicas"] == 5
        svc = (await server.http.get("/v1/services/st/web")).json()
        assert (svc["version"], svc["spec"]["deploy"]["replicas"]) == (1, 5)
        events = (await server.http.get("/v1/events")).json()
        assert [e["message"] for e in events if e["action"] == "scale"] == ["replicas 2 → 5"]

        r = await server.http.post("/v1/services/st/agent/scale", json={"replicas": 2})
        assert "global" in error_of(r, 400, "Invalid")["message"]

        r = await server.http.post("/v1/services/st/nope/scale", json={"replicas": 2})
        assert "st/nope" in error_of(r, 404, "NotFound")["message"]

        r = await server.http.post("/v1/services/st/web/scale", json={"replicas": -1})
        assert error_of(r, 422, "Invalid")["field"] == "body.replicas"

    run(tmp_path, test)


def test_stack_status(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        await deploy(server, {"web": web(2)})
        status = (await server.http.get("/v1/stacks/st/status")).json()
        assert status["stack"] == "st"
        assert status["state"] == "progressing"
        assert [(s["name"], s["ready"], s["desired"]) for s in status["services"]] == [
            ("web", 0, 2)
        ]
        r = await server.http.get("/v1/stacks/ghost/status")
        assert "ghost" in error_of(r, 404, "NotFound")["message"]

    run(tmp_path, test)


def test_remove_stack(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        await deploy(server, {"web": web(1)})
        r = await server.http.delete("/v1/stacks/st")
        assert r.status_code == 200 and r.json()["removing"] is True
        assert (await server.http.get("/v1/services/st/web")).json()["removing"] is True
        r = await server.http.post("/v1/stacks/st/deploy", json={"project": {"services": {}}})
        assert "being removed" in error_of(r, 409, "Conflict")["message"]
        error_of(await server.http.delete("/v1/stacks/ghost"), 404, "NotFound")

    run(tmp_path, test)


# --- validation ----------------------------------------------------------------------------------


def test_request_validation_is_422_with_field(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        r = await server.http.post("/v1/stacks/st/deploy", json={})
        error = error_of(r, 422, "Invalid")
        assert error["field"] == "body.project"
        assert error["message"].startswith("body.project: ")

        r = await server.http.get("/v1/events", params={"limit": 0})
        assert error_of(r, 422, "Invalid")["field"] == "query.limit"

        r = await server.http.post("/v1/nodes", json={"node_id": "Bad Id!", "description": {}})
        assert error_of(r, 422, "Invalid")["field"].startswith("body.")

    run(tmp_path, test)


def test_bad_stack_or_service_name_is_400(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        r = await server.http.post(
            "/v1/stacks/Bad!/deploy", json={"project": {"services": {"web": web()}}}
        )
        error = error_of(r, 400, "Invalid")
        assert "Bad!" in error["message"] and error["hint"]
        r = await server.http.post(
            "/v1/stacks/st/deploy", json={"project": {"services": {"we b": web()}}}
        )
        assert "we b" in error_of(r, 400, "Invalid")["message"]

    run(tmp_path, test)


def test_invalid_project_is_400_naming_the_key(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        bad = {"web": {"image": "x", "deploy": {"replicas": -2}}}
        r = await server.http.post("/v1/stacks/st/deploy", json={"project": {"services": bad}})
        error = error_of(r, 400, "Invalid")
        assert "services.web.deploy.replicas" in error["message"]
        assert await server.ctx.store.current_revision() == 0

    run(tmp_path, test)


def test_invalid_project_error_has_a_field(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        bad = {"web": {"image": "x", "deploy": {"replicas": -2}}}
        r = await server.http.post("/v1/stacks/st/deploy", json={"project": {"services": bad}})
        assert error_of(r, 400, "Invalid").get("field", "").endswith("services.web.deploy.replicas")

    run(tmp_path, test)


def test_404s_name_what_is_missing(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        cases = [
            ("/v1/stacks/ghost", "ghost"),
            ("/v1/services/st/ghost", "st/ghost"),
            ("/v1/services/st/ghost/versions", "st/ghost"),
            ("/v1/nodes/ghost", "ghost"),
            ("/v1/tasks/ghost", "ghost"),
        ]
        for path, name in cases:
            error = error_of(await server.http.get(path), 404, "NotFound")
            assert name in error["message"], (path, error)
            assert error["hint"]
        error_of(await server.http.get("/v1/no-such-route"), 404, "NotFound")

    run(tmp_path, test)


# --- nodes ---------------------------------------------------------------------------------------


def test_node_register_heartbeat_update(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        clock = server.clock
        node = await register(server)
        assert node["id"] == "node-1"
        assert node["status"]["state"] == "ready"
        assert node["status"]["heartbeat_at"] == clock()
        created = node["created_at"]

        clock.advance(5)
        again = await register(server, hostname="h1-renamed")
        assert again["id"] == "node-1" and again["created_at"] == created
        assert again["description"]["hostname"] == "h1-renamed"
        assert [n["id"] for n in (await server.http.get("/v1/nodes")).json()] == ["node-1"]

        clock.advance(5)
        r = await server.http.post("/v1/nodes/node-1/heartbeat", json={"addr": "10.0.0.1:7481"})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "state": "ready",
            "addr": "10.0.0.1:7481",
            "heartbeat_at": clock(),
            "message": "",
        }
        r = await server.http.post("/v1/nodes/ghost/heartbeat", json={})
        assert "ghost" in error_of(r, 404, "NotFound")["message"]

        r = await server.http.patch(
            "/v1/nodes/node-1", json={"availability": "drain", "labels": {"zone": "a", "ssd": "1"}}
        )
        assert r.status_code == 200, r.text
        spec = (await server.http.get("/v1/nodes/node-1")).json()["spec"]
        assert spec == {
            "labels": {"zone": "a", "ssd": "1"},
            "availability": "drain",
            "role": "worker",
        }

        r = await server.http.patch("/v1/nodes/node-1", json={"labels": {"ssd": None, "rack": "3"}})
        assert r.status_code == 200, r.text
        spec = (await server.http.get("/v1/nodes/node-1")).json()["spec"]
        assert spec["labels"] == {"zone": "a", "rack": "3"}
        assert spec["availability"] == "drain"  # untouched by a labels-only update

        r = await server.http.patch("/v1/nodes/node-1", json={"availability": "active"})
        spec = (await server.http.get("/v1/nodes/node-1")).json()["spec"]
        assert spec["availability"] == "active" and spec["labels"] == {"zone": "a", "rack": "3"}

        r = await server.http.patch("/v1/nodes/node-1", json={"availability": "sleepy"})
        assert error_of(r, 422, "Invalid")["field"] == "body.availability"
        r = await server.http.patch("/v1/nodes/node-1", json={"labels": {"": "x"}})
        error_of(r, 400, "Invalid")
        r = await server.http.patch("/v1/nodes/ghost", json={"availability": "drain"})
        error_of(r, 404, "NotFound")

        actions = [e["action"] for e in (await server.http.get("/v1/events")).json()]
        assert actions == ["register", "register", "update", "update", "update"]

    run(tmp_path, test)


def test_heartbeat_of_an_unknown_node_does_not_touch_another(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        await register(server, node_id="node-10", hostname="h10")
        r = await server.http.post("/v1/nodes/node-1/heartbeat", json={"addr": "1.2.3.4:1"})
        error_of(r, 404, "NotFound")

    run(tmp_path, test)


# --- task status reports -------------------------------------------------------------------------


async def one_assigned_task(server: Server) -> Body:
    await register(server)
    await deploy(server, {"web": web(1)})
    await settle(server.ctx)
    [task] = (await server.http.get("/v1/tasks", params={"node": "node-1"})).json()
    assert (task["status"]["state"], task["node_id"]) == ("assigned", "node-1")
    return task  # type: ignore[no-any-return]


def test_report_by_the_wrong_node_is_409(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        task = await one_assigned_task(server)
        before = await server.ctx.store.current_revision()
        report = {"node_id": "node-2", "status": {"state": "running"}}
        r = await server.http.put(f"/v1/tasks/{task['id']}/status", json=report)
        error = error_of(r, 409, "Conflict")
        assert "node-1" in error["message"] and "node-2" in error["message"]
        assert await server.ctx.store.current_revision() == before

        r = await server.http.put("/v1/tasks/ghost/status", json={**report, "node_id": "node-1"})
        error_of(r, 404, "NotFound")
        r = await server.http.put(f"/v1/tasks/{task['id']}/status", json={"status": {}})
        assert error_of(r, 422, "Invalid")["field"] == "body.node_id"

    run(tmp_path, test)


def test_a_terminal_task_is_not_resurrected_by_a_late_report(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        task = await one_assigned_task(server)
        url = f"/v1/tasks/{task['id']}/status"
        running = {"state": "running", "started_at": server.clock(), "container_id": task["id"]}
        r = await server.http.put(url, json={"node_id": "node-1", "status": running})
        assert r.status_code == 200 and r.json()["status"]["state"] == "running"

        failed = {"state": "failed", "exit_code": 3, "error": "exited with code 3"}
        r = await server.http.put(url, json={"node_id": "node-1", "status": failed})
        assert r.json()["status"]["state"] == "failed"
        [event] = [e for e in (await server.http.get("/v1/events")).json() if e["type"] == "task"]
        assert (event["action"], event["attributes"], event["message"]) == (
            "failed",
            {"exit_code": "3"},
            "exited with code 3",
        )

        before = await server.ctx.store.current_revision()
        r = await server.http.put(url, json={"node_id": "node-1", "status": running})
        assert r.status_code == 200
        assert r.json()["status"]["state"] == "failed"
        assert await server.ctx.store.current_revision() == before
        stored = (await server.http.get(f"/v1/tasks/{task['id']}")).json()
        assert (stored["status"]["state"], stored["status"]["exit_code"]) == ("failed", 3)
        assert TaskState(stored["status"]["state"]).terminal

    run(tmp_path, test)


def test_a_malformed_health_check_is_refused_at_deploy(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        bad = {"web": {"image": "x", "x-shoal": {"healthcheck": {"http": {"port": "nope"}}}}}
        r = await server.http.post("/v1/stacks/st/deploy", json={"project": {"services": bad}})
        error = error_of(r, 400, "Invalid")
        assert "service 'web'" in error["message"] and "port" in error["message"]
        assert await server.ctx.store.current_revision() == 0

    run(tmp_path, test)
