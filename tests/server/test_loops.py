"""The control loop passes against a MemoryStore + cache: placement, CAS refusal, idempotence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from shoal.controllers.actions import DeleteService, UpdateNode, UpdateTask
from shoal.model.cluster import NodeState, Task, TaskState, TaskStatus
from shoal.model.codec import encode
from shoal.server import objects
from shoal.server.context import ServerContext
from shoal.server.loops import Writer, reconcile_pass, schedule_pass
from shoal.store import Compare, PutOp
from tests.server.harness import (
    Server,
    deploy_project,
    project,
    put_node,
    running_server,
    settle,
    web,
)


def run(tmp_path: Path, test: Callable[[Server], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_server(tmp_path) as server:
            await test(server)

    asyncio.run(main())


async def snapshot(ctx: ServerContext) -> tuple[int, list[tuple[str, bytes, int]]]:
    kvs, revision = await ctx.store.range("/")
    return revision, [(kv.key, kv.value, kv.mod_revision) for kv in kvs]


async def converged(ctx: ServerContext, replicas: int = 3) -> list[Task]:
    await put_node(ctx)
    await deploy_project(ctx, "st", project({"web": web(replicas)}))
    await settle(ctx)
    return sorted(ctx.cache.tasks(), key=lambda t: t.slot or 0)


async def report(ctx: ServerContext, task: Task, status: TaskStatus) -> Task:
    """What the agent's status report does: a CAS write of the task's status."""
    key = objects.task_key(task)
    rev = ctx.cache.revision_of(task)
    updated = task.model_copy(update={"status": status})
    await ctx.commit([Compare.mod_revision(key, "==", rev)], [PutOp(key, encode(updated))], "t")
    return updated


async def play_agent(ctx: ServerContext) -> None:
    """Start what is assigned, stop what was told to stop (the agent, in one step)."""
    for t in ctx.cache.tasks():
        if t.status.state.terminal:
            continue
        if t.desired_state != TaskState.RUNNING:
            await report(ctx, t, TaskStatus(state=TaskState.SHUTDOWN, timestamp=ctx.clock()))
        elif t.status.state == TaskState.ASSIGNED:
            status = TaskStatus(state=TaskState.RUNNING, started_at=ctx.clock())
            await report(ctx, t, status)


def test_three_replicas_are_assigned_to_the_node(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        tasks = await converged(server.ctx)
        [svc] = server.ctx.cache.services()
        assert [t.slot for t in tasks] == [1, 2, 3]
        for t in tasks:
            assert t.node_id == "node-1"
            assert t.status.state == TaskState.ASSIGNED
            assert t.desired_state == TaskState.RUNNING
            assert (t.service_id, t.spec_version, t.stack, t.service) == (svc.id, 1, "st", "web")
            assert t.spec == svc.spec
        assert len({t.id for t in tasks}) == 3

    run(tmp_path, test)


def test_repeated_passes_are_idempotent(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        await converged(ctx)
        before = await snapshot(ctx)
        for _ in range(3):
            assert await reconcile_pass(ctx) == 0
            assert await schedule_pass(ctx) == 0
        assert await snapshot(ctx) == before

        # Still quiet once the agent reported the tasks running.
        for t in ctx.cache.tasks():
            await report(ctx, t, TaskStatus(state=TaskState.RUNNING, started_at=ctx.clock()))
        assert await reconcile_pass(ctx) == 1  # the endpoints record: three tasks now ready
        before = await snapshot(ctx)
        for _ in range(3):
            assert await reconcile_pass(ctx) + await schedule_pass(ctx) == 0
        assert await snapshot(ctx) == before

    run(tmp_path, test)


def test_without_a_node_tasks_stay_pending_with_a_reason(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        await deploy_project(ctx, "st", project({"web": web(2)}))
        await settle(ctx)
        tasks = ctx.cache.tasks()
        assert [t.status.state for t in tasks] == [TaskState.PENDING] * 2
        assert all(t.pending_reasons.get("summary") and not t.node_id for t in tasks)

        await put_node(ctx)
        await settle(ctx)
        assert {(t.status.state, t.node_id) for t in ctx.cache.tasks()} == {
            (TaskState.ASSIGNED, "node-1")
        }

    run(tmp_path, test)


def test_a_stale_writer_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        tasks = await converged(ctx)
        stale = Writer(ctx)  # its snapshot: the tasks as just assigned

        running = TaskStatus(state=TaskState.RUNNING, started_at=ctx.clock())
        reported = await report(ctx, tasks[0], running)
        before = await snapshot(ctx)

        told_to_stop = tasks[0].model_copy(update={"desired_state": TaskState.SHUTDOWN})
        other = tasks[1].model_copy(update={"desired_state": TaskState.SHUTDOWN})
        # One stale action sinks the whole batch: the fresh one (tasks[1]) is not written either.
        assert await stale.apply([UpdateTask(other), UpdateTask(told_to_stop)]) is False
        assert await snapshot(ctx) == before
        assert ctx.cache.get(objects.task_key(tasks[0]))[0] == reported  # type: ignore[index]

        # A writer built now sees the new revision and gets through.
        fresh = reported.model_copy(update={"desired_state": TaskState.SHUTDOWN})
        assert await Writer(ctx).apply([UpdateTask(fresh)]) is True

    run(tmp_path, test)


def test_a_stale_delete_service_does_not_delete_a_recreated_service(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        await deploy_project(ctx, "st", project({"web": web(1)}))
        [old] = ctx.cache.services()
        # The stack is removed from the file: the service is marked removing.
        await deploy_project(ctx, "st", project({}))
        stale = Writer(ctx)  # a reconcile pass read the removing service...

        # ...and before it writes, the user deploys `web` again (a new service, new id).
        await deploy_project(ctx, "st", project({"web": web(1)}))
        [new] = ctx.cache.services()
        assert new.id != old.id and not new.removing
        before = await snapshot(ctx)

        assert await stale.apply([DeleteService(old.id)]) is False
        assert await snapshot(ctx) == before
        assert [s.id for s in ctx.cache.services()] == [new.id]

    run(tmp_path, test)


def test_a_stale_node_update_does_not_overwrite_a_heartbeat(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        node = await put_node(ctx)
        stale = Writer(ctx)
        down = node.model_copy(
            update={"status": node.status.model_copy(update={"state": NodeState.DOWN})}
        )
        # A heartbeat lands after the snapshot.
        server.clock.advance(1)
        beat = node.model_copy(
            update={"status": node.status.model_copy(update={"heartbeat_at": ctx.clock()})}
        )
        key = objects.node_key(node.id)
        await ctx.commit(
            [Compare.mod_revision(key, "==", ctx.cache.revision_of(node))],
            [PutOp(key, encode(beat))],
            "heartbeat",
        )
        before = await snapshot(ctx)

        assert await stale.apply([UpdateNode(down)]) is False
        assert await snapshot(ctx) == before

    run(tmp_path, test)


def test_redeploy_with_more_replicas_keeps_running_tasks(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        original = await converged(ctx)
        for t in original:
            await report(ctx, t, TaskStatus(state=TaskState.RUNNING, started_at=ctx.clock()))
        await deploy_project(ctx, "st", project({"web": web(4)}))
        for _ in range(6):  # let a rolling update (if any) run its course
            await settle(ctx)
            await play_agent(ctx)
            server.clock.advance(5)
            heartbeat = await server.http.post("/v1/nodes/node-1/heartbeat", json={})
            assert heartbeat.status_code == 200
        by_id = {t.id: t for t in ctx.cache.tasks()}
        assert [by_id[t.id].desired_state for t in original] == [TaskState.RUNNING] * 3

    run(tmp_path, test)


def test_scale_down_stops_the_highest_slot(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        tasks = await converged(ctx)
        for t in tasks:
            await report(ctx, t, TaskStatus(state=TaskState.RUNNING, started_at=ctx.clock()))
        [svc] = ctx.cache.services()
        rev = ctx.cache.revision_of(svc)
        spec = svc.spec.model_copy(
            update={"deploy": svc.spec.deploy.model_copy(update={"replicas": 2})}  # type: ignore[union-attr]
        )
        key = objects.service_key("st", "web")
        await ctx.commit(
            [Compare.mod_revision(key, "==", rev)],
            [PutOp(key, encode(svc.model_copy(update={"spec": spec})))],
            "scale",
        )
        await settle(ctx)
        desired = {t.slot: t.desired_state for t in ctx.cache.tasks()}
        assert desired[1] == desired[2] == TaskState.RUNNING
        assert desired[3] != TaskState.RUNNING

    run(tmp_path, test)


def test_depends_on_holds_tasks_pending_with_the_reason(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        await put_node(ctx)
        app = {**web(1), "depends_on": {"db": {"condition": "service_healthy"}}}
        await deploy_project(ctx, "st", project({"web": app, "db": web(1)}))
        await settle(ctx)
        by_service = {t.service: t for t in ctx.cache.tasks()}
        held = by_service["web"]
        assert held.status.state == TaskState.PENDING and not held.node_id
        assert held.pending_reasons["depends_on"] == "waiting for db to be healthy"
        assert by_service["db"].status.state == TaskState.ASSIGNED
        await report(ctx, by_service["db"], TaskStatus(state=TaskState.RUNNING, health="starting"))
        await settle(ctx)
        assert ctx.cache.task(held.id)[0].status.state == TaskState.PENDING  # type: ignore[index]
        db = ctx.cache.task(by_service["db"].id)[0]  # type: ignore[index]
        await report(ctx, db, TaskStatus(state=TaskState.RUNNING, health="healthy"))
        await settle(ctx)
        placed = ctx.cache.task(held.id)[0]  # type: ignore[index]
        assert placed.status.state == TaskState.ASSIGNED and placed.pending_reasons == {}

    run(tmp_path, test)
