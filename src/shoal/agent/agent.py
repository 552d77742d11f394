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

from shoal.agent import health, health_probes, runner
from shoal.agent.containers import container_spec
from shoal.agent.images import ImageProvider
from shoal.agent.networking import NodeNetwork
from shoal.agent.node import describe
from shoal.agent.secrets import TaskSecrets
from shoal.agent.volumes import LocalVolumes, with_volumes
from shoal.client.http import AsyncClient
from shoal.images.image import load_image
from shoal.images.manifest import ContainerConfig
from shoal.model.cluster import HealthResult, Task, TaskState, TaskStatus
from shoal.model.errors import Conflict, Invalid, NotFound, ShoalError, Unavailable
from shoal.network.netns import path as netns_path
from shoal.runtime.base import ContainerState, InteractiveExec, Runtime

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 0.1  # also how soon an exited container is noticed (state files: cheap)
SWEEP_SECONDS = 2.0  # how often leftovers of containers that are gone are looked for


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
        self.volumes = LocalVolumes(client, data_dir, lambda: self.node_id)
        self.secrets = TaskSecrets(client, data_dir)  # a tmpfs of secrets/configs per task
        self.node_id = ""
        self.tasks: dict[str, Task] = {}
        self.synced = False  # True once the watch delivered a snapshot
        self.busy: set[str] = set()  # containers with a stop/start in flight
        self._swept_at = float("-inf")  # the last look for leftovers (`_sweep`)
        self.checks: dict[str, health.Check | None] = {}  # resolved health check per task
        self.monitors: dict[str, asyncio.Task[None]] = {}  # one health monitor per running task
        self.health: dict[str, health.Monitor] = {}
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
        self._supervise_health(containers)
        if self.synced and now - self._swept_at >= SWEEP_SECONDS:
            self._swept_at = now
            self._sweep(containers)

    def _sweep(self, containers: dict[str, ContainerState]) -> None:
        """Release what a container that is gone or finished left behind (the agent stopped
        between the two): rootfs, anonymous volumes, secrets, network plumbing. Crash leftovers
        only, so not on every pass: each check lists a directory."""
        gone = set(containers)
        live = {c.id for c in containers.values() if c.status in ("created", "running")}
        leftovers: list[tuple[set[str], Callable[[str], Coroutine[Any, Any, None]]]] = [
            (self.secrets.mounted() - live, self.secrets.release)
        ]
        if self.images is not None:
            leftovers.append((self.images.mounted() - gone, self.images.release))
            leftovers.append((self.volumes.anonymous() - gone, self._release_anonymous))
        if self.network is not None:
            leftovers.append((set(self.network.attached()) - live, self.network.detach))
        for task_ids, release in leftovers:
            for task_id in sorted(task_ids - self.busy):
                self._in_background(task_id, release(task_id))

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
                    await self._check_for(task, config)
                    spec = container_spec(task, self.data_dir, config, rootfs)
                    spec = with_volumes(spec, await self.volumes.prepare(task, rootfs))
                    if self.network is not None and task.networks:
                        netns, files, env = await self.network.attach(task)
                        update = {"netns": netns, "files": {**spec.files, **files}}
                        spec = spec.model_copy(update={**update, "env": {**env, **spec.env}})
                else:
                    await self._check_for(task)
                    spec = container_spec(task, self.data_dir)
                spec = await self.secrets.attach(task, spec)
                await self._send(task, TaskStatus(state=TaskState.STARTING, message="starting"))
                await self.runtime.create(spec)
            else:
                await self._check_for(task)
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

    async def _release_anonymous(self, task_id: str) -> None:
        """A task's anonymous volumes, once its container is surely gone (the pass's listing
        may predate a start that finished meanwhile)."""
        try:
            await self.runtime.state(task_id)
        except NotFound:
            await self.volumes.release(task_id)

    async def _remove(self, task_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.runtime.remove(task_id)
        if self.network is not None:
            await self.network.detach(task_id)
        if self.images is not None:
            await self.images.release(task_id)
        await self.volumes.release(task_id)  # its anonymous volumes
        await self.secrets.release(task_id)

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
        status = self._with_health(task.id, status)
        try:
            updated = await self.client.report(task.id, self.node_id, status)
        except (Conflict, NotFound) as exc:
            log.info("task %s: report ignored: %s", task.id, exc)
            return
        self.tasks[task.id] = updated

    # --- health checks ---------------------------------------------------------------------

    async def _check_for(
        self, task: Task, image: ContainerConfig | None = None
    ) -> health.Check | None:
        """The task's health check (cached); `Invalid` when it is malformed or cannot run here."""
        if task.id in self.checks:
            return self.checks[task.id]
        if image is None and self.images is not None and task.spec.image:
            found = await asyncio.to_thread(load_image, self.images.store, task.spec.image)
            image = found.config.config
        check = health.resolve(task.spec, image)
        if (
            check is not None
            and check.kind == "exec"
            and not isinstance(self.runtime, InteractiveExec)
        ):
            raise Invalid(
                f"the {self.runtime.name} runtime cannot run health check commands",
                hint="use an x-shoal http or tcp probe (see `shoal.agent.health`)",
            )
        self.checks[task.id] = check
        return check

    def _with_health(self, task_id: str, status: TaskStatus) -> TaskStatus:
        """A report of a running or finished task carries its health (a report replaces the
        whole status on the server: without this, any report would wipe it)."""
        if status.health or not (status.state == TaskState.RUNNING or status.state.terminal):
            return status
        monitor = self.health.get(task_id)
        if monitor is not None:
            return monitor.state.apply(status)
        known = self.tasks.get(task_id)
        if known is not None and known.status.health:
            return health.initial(known.status).apply(status)
        if status.state == TaskState.RUNNING and self.checks.get(task_id) is not None:
            return health.HealthState().apply(status)
        return status

    def _supervise_health(self, containers: dict[str, ContainerState]) -> None:
        """A monitor for each running task (that has a check); none for anything else."""
        wanted = {
            task_id
            for task_id, task in self.tasks.items()
            if task.desired_state == TaskState.RUNNING
            and task.status.state == TaskState.RUNNING
            and task_id in containers
            and containers[task_id].status == "running"
        }
        for task_id in set(self.monitors) - wanted:
            self.monitors.pop(task_id).cancel()
            self.health.pop(task_id, None)
        for task_id in set(self.checks) - set(self.tasks):
            self.checks.pop(task_id, None)
        assert self._tg is not None
        for task_id in sorted(wanted - set(self.monitors)):
            work = self._monitor(self.tasks[task_id], containers[task_id])
            self.monitors[task_id] = self._tg.create_task(work)

    def stop_health(self) -> None:
        """Cancel every health monitor (`run`'s task group does that by itself on the way out;
        an agent driven pass by pass, as in tests, calls this)."""
        for monitor in self.monitors.values():
            monitor.cancel()
        self.monitors.clear()
        self.health.clear()

    async def _monitor(self, task: Task, container: ContainerState) -> None:
        try:
            check = await self._check_for(task)
        except ShoalError as exc:  # rejected at start; a re-adopted task keeps running unchecked
            log.warning("task %s: no health check: %s", task.id, exc)
            return
        if check is None:
            return
        address, namespace = "127.0.0.1", None  # a task without a network of its own
        if task.networks and self.network is not None:
            address = task.networks[0].address
            namespace = netns_path(self.network.netns_name(task.id))

        async def run_probe() -> HealthResult:
            return await health_probes.probe(
                check, self.runtime, task.id, address, namespace, clock=self.clock
            )

        async def changed(state: health.HealthState) -> None:
            if state.status == health.UNHEALTHY and task.id not in self.busy:
                self._in_background(task.id, self._fail_unhealthy(task.id, state))
            else:
                await self._report_health(task.id, state)

        state, known = health.initial(task.status), task.status.health
        started = container.started_at or self.clock()
        monitor = health.Monitor(
            check, run_probe, state, started, changed, reported=known, clock=self.clock
        )
        self.health[task.id] = monitor
        try:
            await monitor.run()
        except (Conflict, NotFound):
            pass  # the container is gone: the runner reports how it ended
        except ShoalError as exc:
            log.warning("task %s: health monitor stopped: %s", task.id, exc)
        except Exception:  # one broken monitor must not take the agent down
            log.exception("task %s: health monitor failed", task.id)

    async def _report_health(self, task_id: str, state: health.HealthState) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.status.state != TaskState.RUNNING:
            return
        update = {"timestamp": self.clock()}
        await self._send(task, state.apply(task.status.model_copy(update=update)))

    async def _fail_unhealthy(self, task_id: str, state: health.HealthState) -> None:
        """Swarm's answer to an unhealthy task: out of the endpoints at once, stop the
        container, report FAILED so the restart policy replaces it."""
        await self._report_health(task_id, state)
        task = self.tasks.get(task_id)
        if task is None:
            return
        if self.network is not None:
            await self.network.drain(task_id)
        stopped = await self.runtime.stop(task_id)
        if self.network is not None:
            await self.network.detach(task_id)
        last = state.log[-1].output.strip() if state.log else ""
        status = self._status(TaskState.FAILED, stopped, "unhealthy")
        status.error = f"unhealthy: {last}" if last else "unhealthy"
        await self._send(task, state.apply(status))
