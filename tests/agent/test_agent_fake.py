"""The agent with the fake runtime against an in-process server, one converge pass at a time.

The agent's own loops (`run`: heartbeat, SSE task watch, converge loop) are not started: the
ASGI transport buffers a whole response, so an endless SSE stream cannot be followed
in-process. Instead each step feeds `agent.tasks` from `GET /v1/tasks?node=…&all=true` and sets
`agent.synced = True` (what the watch's snapshot does), then calls `agent.converge()` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shoal.agent.agent import Agent
from shoal.agent.containers import container_spec
from shoal.client.http import AsyncClient
from shoal.model.cluster import Task, TaskState
from shoal.runtime.fake import FakeHost, FakeRuntime
from shoal.server import objects
from shoal.store import Compare, DeleteOp
from tests.server.harness import TOKEN, Server, running_server, settle

DEADLINE = 5.0


@dataclass
class World:
    server: Server
    host: FakeHost
    tg: asyncio.TaskGroup
    data_dir: Path

    @contextlib.asynccontextmanager
    async def agent(self) -> AsyncIterator[Agent]:
        """A registered agent over `host`; a second one over the same host is a restart."""
        client = AsyncClient("http://test", TOKEN)
        await client.http.aclose()
        client.http = httpx.AsyncClient(
            base_url="http://test",
            transport=httpx.ASGITransport(app=self.server.app),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        runtime = FakeRuntime(self.host, clock=self.server.clock)
        agent = Agent(client, runtime, self.data_dir, clock=self.server.clock)
        agent._tg = self.tg  # start/stop jobs run in the test's group, as `run` would set it
        try:
            await agent.register()
            yield agent
        finally:
            await idle(agent)
            await client.aclose()

    async def deploy(self, services: dict[str, Any]) -> None:
        r = await self.server.http.post(
            "/v1/stacks/st/deploy", json={"project": {"services": services}}
        )
        assert r.status_code == 200, r.text

    async def task(self, task_id: str) -> Task:
        r = await self.server.http.get(f"/v1/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return Task.model_validate(r.json())


def scenario(tmp_path: Path, test: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_server(tmp_path / "server") as server, asyncio.TaskGroup() as tg:
            await test(World(server, FakeHost(), tg, tmp_path / "agent"))

    asyncio.run(main())


async def idle(agent: Agent) -> None:
    """Until the agent's background start/stop/remove jobs are done (polled, with a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while agent.busy:
        assert loop.time() < deadline, f"agent still busy with {agent.busy}"
        await asyncio.sleep(0.001)


async def sync(agent: Agent) -> None:
    """What the task watch's snapshot does: every task of this node, then `synced`."""
    agent.tasks = {t.id: t for t in await agent.client.tasks(agent.node_id)}
    agent.synced = True


async def step(agent: Agent, ctx_passes: Server | None = None) -> None:
    """Optionally one round of server passes, then one agent pass, run to completion."""
    if ctx_passes is not None:
        await settle(ctx_passes.ctx)
    await sync(agent)
    await agent.converge()
    await idle(agent)


def sleeper(replicas: int = 1, command: list[str] | None = None) -> dict[str, Any]:
    return {
        "web": {
            "image": "busybox",
            "command": command or ["sleep", "infinity"],
            "deploy": {"replicas": replicas, "restart_policy": {"condition": "none"}},
        }
    }


async def running_task(world: World, agent: Agent) -> Task:
    await world.deploy(sleeper())
    await step(agent, world.server)
    [task] = agent.tasks.values()
    assert task.status.state == TaskState.RUNNING
    return task


def test_an_assigned_task_is_started_and_reported_running(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        async with world.agent() as agent:
            await world.deploy(sleeper())
            await settle(world.server.ctx)
            await sync(agent)
            [assigned] = agent.tasks.values()
            assert assigned.status.state == TaskState.ASSIGNED
            assert assigned.node_id == agent.node_id

            await agent.converge()
            await idle(agent)

            container = world.host.containers[assigned.id]
            assert container.status == "running"
            assert container.spec.command == ["sleep", "infinity"]
            assert container.spec.labels["shoal.task"] == assigned.id
            task = await world.task(assigned.id)
            assert task.status.state == TaskState.RUNNING
            assert task.status.container_id == assigned.id
            assert task.status.pid == container.pid
            assert task.status.started_at == world.server.clock()
            assert agent.runtime.calls == [("create", assigned.id), ("start", assigned.id)]  # type: ignore[attr-defined]

            # Converged: another pass does nothing, on either side (once the server's endpoints
            # record has caught up with the task now running).
            await settle(world.server.ctx)
            before = await world.server.ctx.store.current_revision()
            await step(agent, world.server)
            assert await world.server.ctx.store.current_revision() == before
            assert len(agent.runtime.calls) == 2  # type: ignore[attr-defined]

    scenario(tmp_path, test)


def test_a_container_exiting_3_is_reported_failed(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        async with world.agent() as agent:
            await world.deploy(sleeper(command=["sleep", "5", ";", "exit", "3"]))
            await step(agent, world.server)
            [task] = agent.tasks.values()
            assert task.status.state == TaskState.RUNNING

            world.server.clock.advance(4.9)
            await step(agent)
            assert (await world.task(task.id)).status.state == TaskState.RUNNING

            world.server.clock.advance(0.1)
            await step(agent)
            failed = await world.task(task.id)
            assert failed.status.state == TaskState.FAILED
            assert failed.status.exit_code == 3
            assert failed.status.error == "exited with code 3"
            r = await world.server.http.get("/v1/events")
            [event] = [e for e in r.json() if e["type"] == "task"]
            assert (event["action"], event["id"]) == ("failed", task.id)
            assert event["attributes"] == {"exit_code": "3"}

            # Reported once: a further pass writes nothing.
            before = await world.server.ctx.store.current_revision()
            await step(agent)
            assert await world.server.ctx.store.current_revision() == before

    scenario(tmp_path, test)


def test_a_missing_binary_is_reported_failed_with_its_error(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        async with world.agent() as agent:
            await world.deploy(sleeper(command=["no-such-binary"]))
            await step(agent, world.server)
            await step(agent)  # the immediate exit is reported by the next pass
            [task] = agent.tasks.values()
            stored = await world.task(task.id)
            assert stored.status.state == TaskState.FAILED
            assert stored.status.exit_code == 127
            assert "no-such-binary" in stored.status.error

    scenario(tmp_path, test)


def test_desired_shutdown_stops_it_and_a_deleted_task_is_removed(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        async with world.agent() as agent:
            task = await running_task(world, agent)
            r = await world.server.http.post("/v1/services/st/web/scale", json={"replicas": 0})
            assert r.status_code == 200, r.text

            await step(agent, world.server)
            assert agent.tasks[task.id].desired_state != TaskState.RUNNING
            stopped = await world.task(task.id)
            assert stopped.status.state == TaskState.SHUTDOWN
            assert stopped.status.exit_code == 143  # SIGTERM, Docker's convention
            assert world.host.containers[task.id].status == "exited"
            assert ("stop", task.id) in agent.runtime.calls  # type: ignore[attr-defined]

            # The task record goes (garbage collection); the container follows.
            ctx = world.server.ctx
            key = objects.task_key(stopped)
            await ctx.commit([Compare.exists(key)], [DeleteOp(key)], "gc")
            await step(agent)
            assert task.id not in agent.tasks
            assert task.id not in world.host.containers
            assert ("remove", task.id) in agent.runtime.calls  # type: ignore[attr-defined]

    scenario(tmp_path, test)


def test_an_unsynced_agent_keeps_containers_it_has_no_task_for(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        async with world.agent() as agent:
            task = await running_task(world, agent)
            agent.tasks = {}
            agent.synced = False  # the watch broke: absence of a task proves nothing
            await agent.converge()
            await idle(agent)
            assert world.host.containers[task.id].status == "running"

    scenario(tmp_path, test)


def test_a_restarted_agent_adopts_its_running_container(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        async with world.agent() as first:
            task = await running_task(world, first)
            node_id = first.node_id
            pid = world.host.containers[task.id].pid

        ctx = world.server.ctx
        async with world.agent() as second:  # same FakeHost, same data dir: a restart
            assert second.node_id == node_id
            before = await ctx.store.current_revision()
            await step(second)
            assert second.runtime.calls == []  # type: ignore[attr-defined]
            assert world.host.containers[task.id].status == "running"
            assert world.host.containers[task.id].pid == pid
            assert (await world.task(task.id)).status.state == TaskState.RUNNING
            assert await ctx.store.current_revision() == before

    scenario(tmp_path, test)


def test_a_restarted_agent_reports_a_container_started_behind_its_back(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        # The first agent died after `start` and before reporting RUNNING: the server still
        # says STARTING while the container runs.
        async with world.agent() as first:
            await world.deploy(sleeper())
            await settle(world.server.ctx)
            await sync(first)
            [task] = first.tasks.values()
            runtime = FakeRuntime(world.host, clock=world.server.clock)
            await runtime.create(container_spec(task, world.data_dir))
            await runtime.start(task.id)
            r = await world.server.http.put(
                f"/v1/tasks/{task.id}/status",
                json={"node_id": first.node_id, "status": {"state": "starting"}},
            )
            assert r.status_code == 200, r.text

        async with world.agent() as second:
            await step(second)
            assert second.runtime.calls == []  # type: ignore[attr-defined]
            stored = await world.task(task.id)
            assert stored.status.state == TaskState.RUNNING
            assert stored.status.pid == world.host.containers[task.id].pid

    scenario(tmp_path, test)


def test_a_rootfs_left_by_an_interrupted_removal_is_released(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        from shoal.agent.images import ImageProvider

        async with world.agent() as agent:
            agent.images = ImageProvider(world.data_dir)
            stale = world.data_dir / "rootfs" / "gone-task"
            (stale / "upper").mkdir(parents=True)
            await step(agent)
            assert not stale.exists()

    scenario(tmp_path, test)
