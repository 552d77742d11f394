"""The agent process: register, heartbeat, watch this node's tasks, converge the runtime to them.

Everything goes through the HTTP API (`AsyncClient`), so an agent on another machine runs this
same code. Containers outlive the agent; at start it lists the runtime and re-adopts what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shoal.agent import runner
from shoal.agent.containers import container_spec
from shoal.agent.images import ImageProvider
from shoal.agent.networking import NodeNetwork
from shoal.agent.node import describe
from shoal.client.http import AsyncClient
from shoal.model.cluster import Task, TaskState, TaskStatus
from shoal.model.errors import Conflict, NotFound, ShoalError, Unavailable
from shoal.runtime.base import ContainerState, Runtime

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.5


class Agent:
    def __init__(
        self,
        client: AsyncClient,
        runtime: Runtime,
        data_dir: Path,
        *,
        addr: str = "",
        labels: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        images: ImageProvider | None = None,
        network: NodeNetwork | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.data_dir = data_dir
        self.addr = addr
        self.labels = labels or {}
        self.clock = clock
        self.images = images  # set for runtimes that run images (runc), not for `process`
        self.network = network  # set where containers get their own network namespaces
        self.node_id = ""
        self.tasks: dict[str, Task] = {}
        self.synced = False  # True once the watch delivered a snapshot
        self.busy: set[str] = set()  # containers with a stop/start in flight
        self.wake = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None

    # --- registration --------------------------------------------------------------------

    def _saved_node_id(self) -> str | None:
        path = self.data_dir / "node-id"
        return path.read_text().strip() if path.exists() else None

    async def register(self) -> None:
        description = describe([self.runtime.name], self.labels)
        delay = 0.2
        while True:
            try:
                node = await self.client.register(description, self._saved_node_id(), self.addr)
                break
            except Unavailable as exc:
                log.warning("cannot register yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.node_id = node.id
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "node-id").write_text(node.id + "\n")

    # --- loops -----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.register()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg  # start/stop jobs belong to the agent's group too
            tg.create_task(self._heartbeat())
            tg.create_task(self._watch())
            tg.create_task(self._converge_loop())
            if self.network is not None:
                tg.create_task(self.network.run())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.client.heartbeat(self.node_id, self.addr)
            except NotFound:
                await self.register()  # the server forgot us (new data dir): join again
            except ShoalError as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _watch(self) -> None:
        delay = 0.2
        while True:
            try:
                async for kind, data in self.client.watch_tasks(self.node_id):
                    if kind == "snapshot":
                        self.tasks = {t["id"]: Task.model_validate(t) for t in data["tasks"]}
                        self.synced = True
                    elif kind == "put":
                        task = Task.model_validate(data)
                        self.tasks[task.id] = task
                    elif kind == "delete":
                        self.tasks.pop(data["id"], None)
                    delay = 0.2
                    self.wake.set()
            except ShoalError as exc:
                log.warning("task watch interrupted: %s", exc)
            self.synced = False  # until the next snapshot we do not know what was deleted
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _converge_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)
            self.wake.clear()
            try:
                await self.converge()
            except ShoalError as exc:
                log.warning("converge pass failed: %s", exc)

    # --- one pass --------------------------------------------------------------------------

    async def converge(self) -> None:
        containers = {c.id: c for c in await self.runtime.list()}
        ids = set(self.tasks) | (set(containers) if self.synced else set())
        now = self.clock()
        for task_id in sorted(ids):
            if task_id in self.busy:
                continue
            task = self.tasks.get(task_id)
            container = containers.get(task_id)
            for step in runner.decide(task, container, now):
                await self._execute(step, task_id, task, container)
        if self.synced and self.images is not None:
            # A rootfs whose container is gone (the agent stopped mid-removal): unmount it.
            for task_id in self.images.mounted() - set(containers) - self.busy:
                self._in_background(task_id, self.images.release(task_id))
        if self.synced and self.network is not None:
            # Plumbing whose container is gone or finished: a crash came between the two.
            live = {c.id for c in containers.values() if c.status in ("created", "running")}
            for task_id in set(self.network.attached()) - live - self.busy:
                self._in_background(task_id, self.network.detach(task_id))

    async def _execute(
        self,
        step: runner.Step,
        task_id: str,
        task: Task | None,
        container: ContainerState | None,
    ) -> None:
        if isinstance(step, runner.Report):
            assert task is not None
            await self._report(task, step, container)
        elif isinstance(step, runner.Start):
            assert task is not None
            self._in_background(task_id, self._start(task, container))
        elif isinstance(step, runner.Stop):
            assert task is not None
            self._in_background(task_id, self._stop(task))
        elif isinstance(step, runner.Remove):
            self._in_background(task_id, self._remove(task_id))

    def _in_background(self, task_id: str, work: Coroutine[Any, Any, None]) -> None:
        """Run a start/stop/remove without blocking the pass; one job per container at a time."""
        self.busy.add(task_id)

        async def run() -> None:
            try:
                await work
            except ShoalError as exc:
                log.warning("task %s: %s", task_id, exc)
            except Exception:  # one broken container must not take the agent down
                log.exception("task %s: unexpected error", task_id)
            finally:
                self.busy.discard(task_id)
                self.wake.set()

        assert self._tg is not None
        self._tg.create_task(run())

    async def _start(self, task: Task, existing: ContainerState | None) -> None:
        try:
            if existing is None:
                if self.images is not None:
                    message = f"preparing image {task.spec.image}"
                    await self._send(task, TaskStatus(state=TaskState.PREPARING, message=message))
                    config, rootfs = await self.images.prepare(task)
                    spec = container_spec(task, self.data_dir, config, rootfs)
                    if self.network is not None and task.networks:
                        netns, files, env = await self.network.attach(task)
                        update = {"netns": netns, "files": {**spec.files, **files}}
                        spec = spec.model_copy(update={**update, "env": {**env, **spec.env}})
                else:
                    spec = container_spec(task, self.data_dir)
                await self._send(task, TaskStatus(state=TaskState.STARTING, message="starting"))
                await self.runtime.create(spec)
            else:
                await self._send(task, TaskStatus(state=TaskState.STARTING, message="starting"))
            state = await self.runtime.start(task.id)
        except ValidationError as exc:
            if self.network is not None:
                await self.network.detach(task.id)
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            await self._send(
                task,
                TaskStatus(
                    state=TaskState.REJECTED,
                    message="invalid container spec",
                    error=f"{field}: {first['msg']}"
                    + (" (the process runtime needs a command)" if field == "command" else ""),
                ),
            )
            return
        except ShoalError as exc:
            if self.network is not None:
                await self.network.detach(task.id)
            await self._send(
                task, TaskStatus(state=TaskState.REJECTED, message="start failed", error=str(exc))
            )
            return
        if state.status == "running":
            await self._send(task, self._status(TaskState.RUNNING, state, "running"))
        # an immediate exit is reported by the next converge pass, with its exit code

    async def _stop(self, task: Task) -> None:
        if self.network is not None:
            await self.network.drain(task.id)
        state = await self.runtime.stop(task.id)
        if self.network is not None:
            await self.network.detach(task.id)
        await self._send(task, self._status(TaskState.SHUTDOWN, state, "stopped"))

    async def _remove(self, task_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.runtime.remove(task_id)
        if self.network is not None:
            await self.network.detach(task_id)
        if self.images is not None:
            await self.images.release(task_id)

    async def _report(self, task: Task, step: runner.Report, c: ContainerState | None) -> None:
        if step.state.terminal and self.network is not None and task.id in self.network.attached():
            # Free the addresses first: once the server reads "finished" it may reuse them.
            await self.network.detach(task.id)
        status = self._status(step.state, c, step.message)
        status.error = step.error
        if step.exit_code is not None:
            status.exit_code = step.exit_code
        await self._send(task, status)

    def _status(self, state: TaskState, c: ContainerState | None, message: str) -> TaskStatus:
        return TaskStatus(
            state=state,
            timestamp=self.clock(),
            message=message,
            exit_code=c.exit_code if c is not None and c.status == "exited" else None,
            container_id=c.id if c is not None else "",
            pid=c.pid if c is not None else None,
            started_at=c.started_at if c is not None else None,
            error=(c.error or "") if c is not None else "",
        )

    async def _send(self, task: Task, status: TaskStatus) -> None:
        if not status.timestamp:
            status.timestamp = self.clock()
        try:
            updated = await self.client.report(task.id, self.node_id, status)
        except (Conflict, NotFound) as exc:
            log.info("task %s: report ignored: %s", task.id, exc)
            return
        self.tasks[task.id] = updated
