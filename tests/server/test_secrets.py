"""Secrets and configs through the API: create/ls/inspect/rm, versions and keyed digests,
deploys that roll a service when its secret changes, delivery to agents, key rotation — and
the value never in a response, an event or the store in the clear."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.model.errors import ShoalError
from shoal.secrets.crypto import KeyMismatch, Keyring, SecretKeys, envelope_key_id, key_id
from shoal.secrets.records import Kind
from shoal.secrets.store import KEY_RECORD, SecretStore, data_key, startup
from shoal.server.auth import scoped_token
from shoal.store import PutOp
from shoal.store.memory import MemoryStore
from tests.server.harness import TOKEN, Server, put_node, running_server, settle, web

Body = dict[str, Any]
VALUE = b"hunter2-the-db-password"
NEW_VALUE = b"correct-horse-battery-staple"


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def run(tmp_path: Path, test: Callable[[Server, list[str]], Awaitable[None]]) -> None:
    """Run `test` with a log of every response body it got; none may hold a secret value."""
    seen: list[str] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        seen.append(response.text)

    async def main() -> None:
        async with running_server(tmp_path) as server:
            server.http.event_hooks["response"].append(record)
            await test(server, seen)
            await assert_nowhere(server, seen)

    asyncio.run(main())


async def assert_nowhere(server: Server, seen: list[str]) -> None:
    """Neither value (nor its base64) in the store's keys and values, events or responses."""
    kvs, _ = await server.ctx.store.range("/")
    stored = b"".join(kv.key.encode() + kv.value for kv in kvs)
    events = (await server.http.get("/v1/events")).text
    for value in (VALUE, NEW_VALUE):
        for form in (value, b64(value).encode(), hashlib.sha256(value).hexdigest().encode()):
            assert form not in stored
            assert form.decode() not in events
            assert not [text for text in seen if form.decode() in text]


def project(services: Body, secrets: Body | None = None, configs: Body | None = None) -> Body:
    doc: Body = {"services": services}
    if secrets:
        doc["secrets"] = secrets
    if configs:
        doc["configs"] = configs
    return doc


def app_service(**extra: Any) -> Body:
    return {
        **web(1),
        "secrets": [{"source": "db", "target": "/run/secrets/db", "mode": 0o400}],
        **extra,
    }


async def deploy(
    server: Server, doc: Body, values: list[Body], stack: str = "st", dry_run: bool = False
) -> httpx.Response:
    body = {"project": doc, "secrets": values, "dry_run": dry_run}
    return await server.http.post(f"/v1/stacks/{stack}/deploy", json=body)


def db_value(value: bytes, name: str = "st_db") -> Body:
    return {"kind": "secret", "name": name, "data": b64(value)}


DB = {"db": {"file": "/somewhere/db.txt"}}


def changes(result: Body, service: str = "web") -> tuple[str, list[tuple[str, Any, Any]]]:
    svc = next(s for s in result["plan"]["services"] if s["name"] == service)
    return svc["action"], [(c["path"], c["old"], c["new"]) for c in svc["changes"]]


# --- create, list, inspect, remove ---------------------------------------------------------------


def test_create_list_inspect_never_show_the_value(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        r = await server.http.post(
            "/v1/secrets", json={"name": "api-key", "data": b64(VALUE), "labels": {"team": "a"}}
        )
        assert r.status_code == 200, r.text
        info = r.json()
        assert (info["name"], info["kind"], info["stack"], info["labels"]) == (
            "api-key",
            "secret",
            "",
            {"team": "a"},
        )
        [version] = info["versions"]
        assert version["version"] == 1
        digest = version["digest"]
        assert len(digest) == 64 and digest != hashlib.sha256(VALUE).hexdigest()
        assert digest == server.ctx.secrets_keys().keyring.digest(VALUE)

        listed = (await server.http.get("/v1/secrets")).json()
        assert [(s["name"], s["used_by"]) for s in listed] == [("api-key", [])]
        inspected = (await server.http.get("/v1/secrets/api-key")).json()
        assert inspected["versions"] == info["versions"]
        assert (await server.http.get("/v1/configs")).json() == []

        # configs are a namespace of their own: the same name is another object
        r = await server.http.post("/v1/configs", json={"name": "api-key", "data": b64(b"x=1")})
        assert r.status_code == 200 and r.json()["kind"] == "config"

        again = await server.http.post("/v1/secrets", json={"name": "api-key", "data": b64(VALUE)})
        assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
        for bad, message in [
            ({"name": "a/b", "data": b64(VALUE)}, "invalid secret name"),
            ({"name": "empty", "data": ""}, "1 to"),
            ({"name": "big", "data": b64(b"x" * (500 * 1024 + 1))}, "1 to 512000 bytes"),
            ({"name": "notb64", "data": "***"}, "not valid base64"),
        ]:
            r = await server.http.post("/v1/secrets", json=bad)
            assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
        assert (await server.http.get("/v1/secrets/nope")).status_code == 404

        r = await server.http.delete("/v1/secrets/api-key")
        assert r.status_code == 200 and r.json()["removed"] is True
        assert (await server.http.get("/v1/secrets/api-key")).status_code == 404
        kvs, _ = await server.ctx.store.range("/secretdata/secret/")
        assert kvs == []
        events = (await server.http.get("/v1/events")).json()
        assert [(e["type"], e["action"], e["id"]) for e in events] == [
            ("secret", "create", "api-key"),
            ("config", "create", "api-key"),
            ("secret", "remove", "api-key"),
        ]

    run(tmp_path, test)


# --- deploy --------------------------------------------------------------------------------------


def test_deploy_versions_roll_the_service_only_when_the_value_changes(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        doc = project({"web": app_service(), "other": web(1)}, DB)
        r = await deploy(server, doc, [db_value(VALUE)])
        assert r.status_code == 200, r.text
        svc = (await server.http.get("/v1/services/st/web")).json()
        assert svc["secret_versions"] == {
            "secrets.db": {"kind": "secret", "name": "st_db", "version": 1}
        }
        assert (await server.http.get("/v1/services/st/other")).json()["secret_versions"] == {}
        info = (await server.http.get("/v1/secrets/st_db")).json()
        assert (info["stack"], info["used_by"], len(info["versions"])) == ("st", ["st/web"], 1)

        same = (await deploy(server, doc, [db_value(VALUE)])).json()
        assert changes(same) == ("unchanged", [])

        dry = (await deploy(server, doc, [db_value(NEW_VALUE)], dry_run=True)).json()
        assert changes(dry) == ("update", [("secrets.db", "v1", "v2")])
        assert len((await server.http.get("/v1/secrets/st_db")).json()["versions"]) == 1

        changed = (await deploy(server, doc, [db_value(NEW_VALUE)])).json()
        assert changes(changed) == ("update", [("secrets.db", "v1", "v2")])
        assert changes(changed, "other") == ("unchanged", [])
        svc = (await server.http.get("/v1/services/st/web")).json()
        assert svc["version"] == 2 and svc["secret_versions"]["secrets.db"]["version"] == 2
        info = (await server.http.get("/v1/secrets/st_db")).json()
        assert [v["version"] for v in info["versions"]] == [1, 2]
        assert info["versions"][0]["digest"] != info["versions"][1]["digest"]
        events = (await server.http.get("/v1/events")).json()
        assert [(e["action"], e["message"]) for e in events if e["type"] == "secret"] == [
            ("create", "version 1"),
            ("update", "version 2"),
        ]

        # back to the first value: a new version again (digests compare the latest only)
        for value in (VALUE, NEW_VALUE, VALUE):
            await deploy(server, doc, [db_value(value)])
        info = (await server.http.get("/v1/secrets/st_db")).json()
        assert [v["version"] for v in info["versions"]] == [3, 4, 5]  # older ones pruned
        kvs, _ = await server.ctx.store.range("/secretdata/secret/st_db/")
        assert [kv.key.rsplit("/", 1)[1] for kv in kvs] == ["00000003", "00000004", "00000005"]

        r = await server.http.delete("/v1/secrets/st_db")
        assert r.status_code == 409
        assert r.json()["error"]["message"] == "secret st_db is in use by st/web"

    run(tmp_path, test)


def test_deploy_configs_with_content_and_a_name_of_their_own(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        services = {"web": {**web(1), "configs": [{"source": "conf"}], "secrets": ["conf"]}}
        doc = project(
            services,
            {"conf": {"file": "/x"}},
            {"conf": {"name": "shared-conf", "content": "listen 80\n"}},
        )
        r = await deploy(server, doc, [db_value(VALUE, "st_conf")])
        assert r.status_code == 200, r.text
        svc = (await server.http.get("/v1/services/st/web")).json()
        assert svc["secret_versions"] == {
            "configs.conf": {"kind": "config", "name": "shared-conf", "version": 1},
            "secrets.conf": {"kind": "secret", "name": "st_conf", "version": 1},
        }
        store = SecretStore(server.ctx.store, server.ctx.secrets_keys())
        assert await store.value(Kind.CONFIG, "shared-conf", 1) == b"listen 80\n"
        assert await store.value(Kind.SECRET, "st_conf", 1) == VALUE

    run(tmp_path, test)


def test_deploy_refuses_bad_secret_input_naming_it(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        cases = [
            (project({"web": app_service()}, DB), [], "secrets.db: no value was sent"),
            (
                project({"web": app_service()}, {"db": {"external": True}}),
                [],
                "secrets.db: external secret db does not exist",
            ),
            (
                project({"web": app_service()}, DB),
                [db_value(VALUE), db_value(VALUE, "st_undeclared")],
                "secret st_undeclared, which the project does not declare",
            ),
            (
                project({"web": {**web(1), "secrets": ["nope"]}}, DB),
                [db_value(VALUE)],
                "services.web.secrets: secret 'nope' is not declared",
            ),
        ]
        for doc, values, message in cases:
            r = await deploy(server, doc, values)
            assert r.status_code == 400, r.text
            assert message in r.json()["error"]["message"]
        assert (await server.http.get("/v1/stacks")).json() == []
        assert (await server.http.get("/v1/secrets")).json() == []

        # a secret made by hand is not a stack's: the stack must say `external: true`
        await server.http.post("/v1/secrets", json={"name": "st_db", "data": b64(VALUE)})
        r = await deploy(server, project({"web": app_service()}, DB), [db_value(NEW_VALUE)])
        assert r.status_code == 409 and "made by `shoal secret create`" in r.text
        external = project({"web": app_service()}, {"db": {"external": True, "name": "st_db"}})
        r = await deploy(server, external, [])
        assert r.status_code == 200, r.text
        svc = (await server.http.get("/v1/services/st/web")).json()
        assert svc["secret_versions"]["secrets.db"] == {
            "kind": "secret",
            "name": "st_db",
            "version": 1,
        }

    run(tmp_path, test)


def test_stack_removal_takes_its_own_secrets(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        await server.http.post("/v1/secrets", json={"name": "shared", "data": b64(NEW_VALUE)})
        doc = project(
            {"web": {**app_service(), "secrets": ["db", "shared"]}},
            {**DB, "shared": {"external": True}},
        )
        assert (await deploy(server, doc, [db_value(VALUE)])).status_code == 200
        assert (await server.http.delete("/v1/stacks/st")).status_code == 200
        assert (await server.http.get("/v1/secrets/st_db")).status_code == 404
        assert (await server.http.get("/v1/secrets/shared")).status_code == 200
        kvs, _ = await server.ctx.store.range("/secretdata/secret/st_db/")
        assert kvs == []

    run(tmp_path, test)


# --- delivery to agents --------------------------------------------------------------------------


def test_agent_gets_the_values_of_its_own_tasks_only(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        await put_node(server.ctx, "node-1")
        doc = project({"web": app_service(), "other": web(1)}, DB)
        assert (await deploy(server, doc, [db_value(VALUE)])).status_code == 200
        await settle(server.ctx)
        tasks = (await server.http.get("/v1/tasks", params={"stack": "st"})).json()
        web_task = next(t for t in tasks if t["service"] == "web")
        other_task = next(t for t in tasks if t["service"] == "other")
        assert web_task["node_id"] == "node-1"

        path = f"/v1/tasks/{web_task['id']}/secrets"
        async with server.client({"Authorization": f"Bearer {TOKEN}"}) as agent:
            got = await agent.get(path, params={"node": "node-1"})
            assert got.status_code == 200, got.text
            [item] = got.json()["items"]
            assert (item["kind"], item["source"], item["name"], item["version"]) == (
                "secret",
                "db",
                "st_db",
                1,
            )
            assert base64.b64decode(item["data"]) == VALUE

            other = await agent.get(path, params={"node": "node-2"})
            assert other.status_code == 403
            assert other.json()["error"]["message"] == (
                f"task {web_task['id']} is not assigned to node node-2"
            )
            assert VALUE.decode() not in other.text
            none = await agent.get(
                f"/v1/tasks/{other_task['id']}/secrets", params={"node": "node-1"}
            )
            assert none.status_code == 200 and none.json()["items"] == []
            prefix = await agent.get(f"/v1/tasks/{web_task['id'][:4]}/secrets?node=node-1")
            assert prefix.status_code == 404  # exact ids only
            assert (await agent.get(path)).status_code == 422  # the node must be named
        scoped = {"Authorization": f"Bearer {scoped_token(TOKEN, 'st')}"}
        async with server.client(scoped) as container:
            assert (await container.get(path, params={"node": "node-1"})).status_code == 403
            assert (await container.get("/v1/secrets")).status_code == 403

    run(tmp_path, test)


def test_tampered_store_is_a_clear_error(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        await put_node(server.ctx, "node-1")
        done = await deploy(server, project({"web": app_service()}, DB), [db_value(VALUE)])
        assert done.status_code == 200, done.text
        await settle(server.ctx)
        [task] = (await server.http.get("/v1/tasks", params={"stack": "st"})).json()
        key = data_key(Kind.SECRET, "st_db", 1)
        kv = await server.ctx.store.get(key)
        assert kv is not None
        doc = json.loads(kv.value)
        doc["ct"] = b64(b"\x00" * 40)
        await server.ctx.store.put(key, json.dumps(doc).encode())
        r = await server.http.get(f"/v1/tasks/{task['id']}/secrets", params={"node": "node-1"})
        assert r.status_code == 500
        error = r.json()["error"]
        assert error["kind"] == "Tampered"
        assert error["message"].startswith("secret st_db v1: the stored ciphertext fails")

    run(tmp_path, test)


# --- key rotation --------------------------------------------------------------------------------


def test_rotate_key_reseals_everything_and_replaces_the_key_file(tmp_path: Path) -> None:
    async def test(server: Server, seen: list[str]) -> None:
        await put_node(server.ctx, "node-1")
        doc = project({"web": app_service()}, DB, {"c": {"content": "x"}})
        assert (await deploy(server, doc, [db_value(VALUE)])).status_code == 200
        await deploy(server, doc, [db_value(NEW_VALUE)])
        await settle(server.ctx)
        keys = server.ctx.secrets_keys()
        old_id = keys.keyring.current_id
        before = (await server.http.get("/v1/secrets/st_db")).json()

        r = await server.http.post("/v1/secrets/rotate-key")
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["key_id"] != old_id and result["reencrypted"] == 3
        assert key_id((tmp_path / "secrets.key").read_bytes()) == result["key_id"]
        assert not (tmp_path / "secrets.key.new").exists()
        kvs, _ = await server.ctx.store.range("/secretdata/")
        assert {envelope_key_id(kv.value) for kv in kvs} == {result["key_id"]}
        stored = await server.ctx.store.get(KEY_RECORD)
        assert stored is not None and stored.value.decode() == result["key_id"]
        after = (await server.http.get("/v1/secrets/st_db")).json()
        assert [v["digest"] for v in after["versions"]] != [v["digest"] for v in before["versions"]]

        [task] = [
            t
            for t in (await server.http.get("/v1/tasks", params={"stack": "st"})).json()
            if t["desired_state"] == "running"
        ]
        async with server.client({"Authorization": f"Bearer {TOKEN}"}) as agent:
            path = f"/v1/tasks/{task['id']}/secrets"
            got = await agent.get(path, params={"node": "node-1"})
        assert base64.b64decode(got.json()["items"][0]["data"]) == NEW_VALUE
        same = (await deploy(server, doc, [db_value(NEW_VALUE)])).json()
        assert changes(same) == ("unchanged", [])  # digests follow the new key
        event = (await server.http.get("/v1/events")).json()[-1]
        assert (event["action"], event["id"]) == ("rotate-key", result["key_id"])

    run(tmp_path, test)


# --- server start --------------------------------------------------------------------------------


def test_startup_finishes_a_committed_rotation_and_refuses_a_wrong_key(tmp_path: Path) -> None:
    async def main() -> None:
        async with MemoryStore.open() as store:
            keys = SecretKeys.open(tmp_path)
            await startup(store, keys)
            secrets = SecretStore(store, keys)
            compares, ops = await secrets.key_guard()
            staged = await secrets.stage(
                Kind.SECRET, "s", VALUE, stack="", labels={}, now=1.0, in_use=set()
            )
            assert (await store.txn(compares + staged.compares, ops + staged.ops, [])).succeeded

            # a rotation whose transaction committed, then a crash before the rename
            new = bytes(range(32))
            keys.file.write_pending(new)
            pending = keys.pending_keyring()
            assert pending is not None
            compares, ops, _ = await secrets.reseal(pending)
            assert (await store.txn(compares, ops, [])).succeeded
            restarted = SecretKeys.open(tmp_path)
            await startup(store, restarted)
            assert restarted.keyring.current == new and not keys.file.pending.exists()
            assert await SecretStore(store, restarted).value(Kind.SECRET, "s", 1) == VALUE

            # a rotation that never committed: its key is dropped
            restarted.file.write_pending(bytes(32))
            again = SecretKeys.open(tmp_path)
            await startup(store, again)
            assert again.keyring.current == new and not again.file.pending.exists()

            # another key file than the one that sealed the store: refuse to start
            other = tmp_path / "other"
            other.mkdir()
            with pytest.raises(KeyMismatch, match="sealed with key"):
                await startup(store, SecretKeys.open(other))
            await store.txn([], [PutOp(KEY_RECORD, b"deadbeef")], [])
            with pytest.raises(ShoalError):
                await SecretStore(store, again).key_guard()

    asyncio.run(main())


def test_a_secret_written_during_a_rotation_fails_the_rotation(tmp_path: Path) -> None:
    async def main() -> None:
        async with MemoryStore.open() as store:
            keys = SecretKeys.open(tmp_path)
            secrets = SecretStore(store, keys)

            async def create(name: str) -> bool:
                compares, ops = await secrets.key_guard()
                staged = await secrets.stage(
                    Kind.SECRET, name, VALUE, stack="", labels={}, now=1.0, in_use=set()
                )
                result = await store.txn(compares + staged.compares, ops + staged.ops, [])
                return result.succeeded

            assert await create("a")
            pending = keys.pending_keyring() or Keyring(bytes(range(32)), keys.keyring.current)
            compares, ops, count = await secrets.reseal(pending)
            assert count == 1
            assert await create("b")  # sealed with the old key after the rotation read
            assert not (await store.txn(compares, ops, [])).succeeded
            kvs, _ = await store.range("/secretdata/")
            assert {envelope_key_id(kv.value) for kv in kvs} == {keys.keyring.current_id}

    asyncio.run(main())
