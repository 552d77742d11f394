"""The deploy planner (pure) and its commit: compares, writes, and atomicity against a store."""

from __future__ import annotations

import asyncio
import json

from shoal.model.cluster import Event, Service, Stack
from shoal.model.codec import decode, encode
from shoal.model.compose_service import ServiceSpec
from shoal.server import objects
from shoal.server.deploy import Commit, FieldChange, Plan, ServiceChange, build_commit, diff, plan
from shoal.store import Compare, PutOp
from shoal.store.memory import MemoryStore
from tests.server.harness import Ids, project

NOW = 2_000.0


def spec(**raw: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"image": "nginx", **raw})


def service(name: str, *, version: int = 1, removing: bool = False, **raw: object) -> Service:
    return Service(
        id=f"sid-{name}",
        stack="st",
        name=name,
        spec=spec(**raw),
        version=version,
        created_at=NOW - 100,
        removing=removing,
    )


# --- diff --------------------------------------------------------------------------------------


def test_diff_of_equal_specs_is_empty() -> None:
    assert diff(spec(command=["a"]), spec(command=["a"])) == []


def test_diff_reports_dotted_paths_sorted_and_lists_whole() -> None:
    old = spec(command=["a", "b"], environment={"A": "1"}, deploy={"replicas": 2})
    new = spec(
        image="nginx:2", command=["a"], environment={"A": "2", "B": "x"}, deploy={"replicas": 3}
    )
    assert diff(old, new) == [
        FieldChange("command", ["a", "b"], ["a"]),
        FieldChange("deploy.replicas", 2, 3),
        FieldChange("environment.A", "1", "2"),
        FieldChange("environment.B", None, "x"),
        FieldChange("image", "nginx", "nginx:2"),
    ]


def test_diff_of_a_removed_section_names_each_leaf() -> None:
    old = spec(deploy={"replicas": 2, "update_config": {"monitor": "10s"}})
    new = spec(deploy={"replicas": 2})
    assert diff(old, new) == [FieldChange("deploy.update_config.monitor", "10s", None)]


# --- plan --------------------------------------------------------------------------------------


def test_plan_of_a_new_stack_creates_every_service() -> None:
    the_plan = plan("st", project({"web": {"image": "nginx"}, "db": {"image": "pg"}}), [])
    assert the_plan.services == [ServiceChange("web", "create"), ServiceChange("db", "create")]
    assert not the_plan.empty


def test_plan_update_unchanged_remove() -> None:
    existing = [
        service("web", version=4, command=["a"]),
        service("db"),
        service("cache"),
    ]
    proj = project({"web": {"image": "nginx", "command": ["b"]}, "db": {"image": "nginx"}})
    the_plan = plan("st", proj, existing)
    assert the_plan.services == [
        ServiceChange("web", "update", [FieldChange("command", ["a"], ["b"])], version=5),
        ServiceChange("db", "unchanged", version=1),
        ServiceChange("cache", "remove", version=1),
    ]
    assert the_plan.as_dict() == {
        "stack": "st",
        "services": [
            {
                "name": "web",
                "action": "update",
                "version": 5,
                "changes": [{"path": "command", "old": ["a"], "new": ["b"]}],
            },
            {"name": "db", "action": "unchanged", "version": 1, "changes": []},
            {"name": "cache", "action": "remove", "version": 1, "changes": []},
        ],
    }


def test_plan_of_the_same_project_is_empty() -> None:
    the_plan = plan("st", project({"web": {"image": "nginx"}}), [service("web", version=3)])
    assert the_plan.services == [ServiceChange("web", "unchanged", version=3)]
    assert the_plan.empty


def test_a_removing_service_is_recreated_not_updated() -> None:
    existing = [service("web", version=7, removing=True)]
    the_plan = plan("st", project({"web": {"image": "nginx"}}), existing)
    assert the_plan.services == [ServiceChange("web", "create", version=1)]


def test_a_removing_service_left_out_is_not_removed_twice() -> None:
    the_plan = plan("st", project({}), [service("web", removing=True)])
    assert the_plan.services == []
    assert the_plan.empty


# --- build_commit --------------------------------------------------------------------------------


def _puts(commit: Commit) -> dict[str, bytes]:
    out = {}
    for op in commit.ops:
        assert isinstance(op, PutOp)
        out[op.key] = op.value
    return out


def _events(commit: Commit) -> list[Event]:
    return [decode(Event, v) for k, v in _puts(commit).items() if k.startswith(objects.EVENTS)]


def test_commit_of_a_new_stack_requires_everything_missing() -> None:
    proj = project({"web": {"image": "nginx"}, "db": {"image": "pg"}})
    the_plan = plan("st", proj, [])
    commit = build_commit(the_plan, proj, None, {}, NOW, Ids("sid"))
    assert commit.compares == [
        Compare.missing("/stacks/st"),
        Compare.missing("/services/st/web"),
        Compare.missing("/services/st/db"),
    ]
    puts = _puts(commit)
    assert [k for k in puts if not k.startswith(objects.EVENTS)] == [
        "/stacks/st",
        "/services/st/web",
        "/versions/st/web/00000001",
        "/services/st/db",
        "/versions/st/db/00000001",
    ]
    stack = decode(Stack, puts["/stacks/st"])
    assert (stack.services, stack.created_at, stack.updated_at) == (["db", "web"], NOW, NOW)
    web = decode(Service, puts["/services/st/web"])
    assert (web.id, web.version, web.created_at, web.removing) == ("sid00001", 1, NOW, False)
    assert decode(ServiceSpec, puts["/versions/st/web/00000001"]) == proj.services["web"]
    assert [(e.action, e.service, e.id, e.message) for e in _events(commit)] == [
        ("create", "web", "sid00001", "version 1"),
        ("create", "db", "sid00002", "version 1"),
    ]


def test_commit_of_an_update_guards_every_service_by_mod_revision() -> None:
    old_stack = Stack(name="st", services=["cache", "db", "web"], created_at=NOW - 100)
    web, db, cache = service("web", version=4), service("db"), service("cache")
    existing = {"web": (web, 11), "db": (db, 12), "cache": (cache, 13)}
    proj = project({"web": {"image": "nginx:2"}, "db": {"image": "nginx"}})
    the_plan = plan("st", proj, [web, db, cache])
    commit = build_commit(the_plan, proj, (old_stack, 10), existing, NOW, Ids())
    assert commit.compares == [
        Compare.mod_revision("/stacks/st", "==", 10),
        Compare.mod_revision("/services/st/web", "==", 11),
        Compare.mod_revision("/services/st/db", "==", 12),  # unchanged, still guarded
        Compare.mod_revision("/services/st/cache", "==", 13),
    ]
    puts = _puts(commit)
    assert "/services/st/db" not in puts
    assert "/versions/st/web/00000005" in puts
    stack = decode(Stack, puts["/stacks/st"])
    assert (stack.services, stack.created_at, stack.updated_at) == (["db", "web"], NOW - 100, NOW)
    updated = decode(Service, puts["/services/st/web"])
    assert (updated.id, updated.version, updated.previous_version) == ("sid-web", 5, 4)
    assert updated.spec.image == "nginx:2"
    assert updated.created_at == NOW - 100 and updated.updated_at == NOW
    removed = decode(Service, puts["/services/st/cache"])
    assert removed.removing and removed.updated_at == NOW and removed.version == 1
    assert not any(k.startswith("/versions/st/cache") for k in puts)
    assert [(e.action, e.service, e.message) for e in _events(commit)] == [
        ("update", "web", "version 5"),
        ("remove", "cache", "removing service"),
    ]


def test_recreating_a_removing_service_gets_a_new_id_and_version_1() -> None:
    old = service("web", version=7, removing=True)
    proj = project({"web": {"image": "nginx"}})
    the_plan = plan("st", proj, [old])
    commit = build_commit(the_plan, proj, (Stack(name="st"), 3), {"web": (old, 5)}, NOW, Ids("new"))
    assert Compare.mod_revision("/services/st/web", "==", 5) in commit.compares
    created = decode(Service, _puts(commit)["/services/st/web"])
    assert (created.id, created.version, created.removing) == ("new00001", 1, False)


# --- against a store: all or nothing ------------------------------------------------------------


def test_a_stale_commit_fails_atomically() -> None:
    async def main() -> None:
        async with MemoryStore.open() as store:
            first = project({"web": {"image": "nginx"}, "db": {"image": "pg"}})
            commit = build_commit(plan("st", first, []), first, None, {}, NOW, Ids())
            result = await store.txn(commit.compares, commit.ops, [])
            assert result.succeeded

            # Read the state, as the deploy handler does from its cache.
            kvs, _ = await store.range("/")
            seen = {kv.key: kv for kv in kvs}
            stack = (decode(Stack, seen["/stacks/st"].value), seen["/stacks/st"].mod_revision)
            existing = {
                name: (decode(Service, kv.value), kv.mod_revision)
                for name in ("web", "db")
                for kv in [seen[f"/services/st/{name}"]]
            }

            # Someone else changes db meanwhile (only db: the stack key is untouched).
            db, _ = existing["db"]
            bumped = db.model_copy(update={"updated_at": NOW + 1})
            await store.put("/services/st/db", encode(bumped))
            before, before_rev = await store.range("/")

            second = project({"web": {"image": "nginx:2"}, "cache": {"image": "redis"}})
            stale_plan = plan("st", second, [s for s, _ in existing.values()])
            assert [c.action for c in stale_plan.services] == ["update", "create", "remove"]
            stale = build_commit(stale_plan, second, stack, existing, NOW + 2, Ids("x"))
            result = await store.txn(stale.compares, stale.ops, [])

            assert not result.succeeded
            after, after_rev = await store.range("/")
            assert after_rev == before_rev
            assert after == before
            web = decode(Service, (await store.get("/services/st/web")).value)  # type: ignore[union-attr]
            assert web.version == 1 and web.spec.image == "nginx"
            assert await store.get("/services/st/cache") is None

    asyncio.run(main())


def test_plan_dict_is_json() -> None:
    the_plan = Plan("st", [ServiceChange("web", "update", [FieldChange("a.b", 1, None)], 2)])
    assert json.loads(json.dumps(the_plan.as_dict()))["services"][0]["changes"] == [
        {"path": "a.b", "old": 1, "new": None}
    ]


def test_depends_on_restart_rolls_dependents_of_an_updated_service() -> None:
    app = {
        "image": "nginx",
        "depends_on": {"db": {"condition": "service_started", "restart": True}},
    }
    other = {"image": "nginx", "depends_on": {"db": {"condition": "service_started"}}}
    new = project({"db": {"image": "postgres:17"}, "app": app, "other": other})
    existing = [
        service("db", image="postgres:16"),
        service("app", depends_on={"db": {"condition": "service_started", "restart": True}}),
        service("other", depends_on={"db": {"condition": "service_started"}}),
    ]
    result = {c.name: c for c in plan("st", new, existing).services}
    assert (result["db"].action, result["db"].version) == ("update", 2)
    assert (result["app"].action, result["app"].version) == ("update", 2)
    assert result["app"].changes == [FieldChange("depends_on.db", "updated", "restart")]
    assert result["other"].action == "unchanged"
