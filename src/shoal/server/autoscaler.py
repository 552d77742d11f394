"""The autoscaler loop: samples cgroup usage of autoscaled services and writes their replicas.

Every `interval` seconds it asks the agents for the stats of every running task of a service
with `x-shoal.autoscale` (the same call `GET /v1/stats` makes), turns two consecutive CPU
readings of a task into cores used (by the agent's clock), hands the utilisations to the pure
`controllers.autoscale.decide` and writes a change as one compare-and-swap of the service
record — replicas in its spec, the autoscaler's state, an `autoscale` event with the numbers —
guarded by the revision the decision was made from. Losing the race is fine: the next sample
decides again. The recommendation windows live in memory; after a restart they start afresh,
which only delays a scale-down by one cooldown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import httpx

from shoal.controllers.autoscale import (
    AutoscaleConfig,
    Decision,
    Recommendation,
    Usage,
    after_manual_scale,
    bounds,
    cpu_limit,
    decide,
    memory_limit,
    read_config,
)
from shoal.model.cluster import AutoscaleState, Event, Service, Stack, Task, TaskState
from shoal.model.codec import decode, encode
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid, ShoalError
from shoal.server import objects
from shoal.server.context import ServerContext
from shoal.server.routes_exec import STATS_CONCURRENCY, STATS_TIMEOUT, agent_call
from shoal.store import Compare, PutOp

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0
INTERVAL_ENV = "SHOAL_AUTOSCALE_INTERVAL"
"""Seconds between samples, when set (tests use 1)."""


@dataclass(frozen=True, slots=True)
class CpuReading:
    time: float  # the agent's clock
    usage_ns: int


def default_interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        value = DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def deployed_at(ctx: ServerContext, stack: str) -> float:
    """When the service's stack was last deployed: `shoal scale` overrides older than it lapse."""
    entry = ctx.cache.get(objects.stack_key(stack))
    return entry[0].updated_at if entry is not None and isinstance(entry[0], Stack) else 0.0


def with_replicas(spec: ServiceSpec, replicas: int) -> ServiceSpec:
    """`spec` with `deploy.replicas` set (and `scale` dropped), as `shoal scale` writes it."""
    doc = json.loads(spec.model_dump_json(exclude_none=True))
    doc.setdefault("deploy", {})["replicas"] = replicas
    doc.pop("scale", None)
    return decode(ServiceSpec, json.dumps(doc))


def manual_scale_state(
    ctx: ServerContext, svc: Service, replicas: int, now: float
) -> AutoscaleState | None:
    """The autoscaler state after `shoal scale` to `replicas` (unchanged when not autoscaled)."""
    try:
        config = read_config(svc.spec, svc.name)
    except Invalid:
        return svc.autoscale
    if config is None:
        return svc.autoscale
    return after_manual_scale(config, svc.autoscale, deployed_at(ctx, svc.stack), replicas, now)


def _utilisation(task: Task, stats: dict[str, Any], before: CpuReading | None) -> Usage:
    cpu = None
    usage_ns, at = stats.get("cpu_usage_ns"), stats.get("time")
    if before is not None and isinstance(usage_ns, int) and isinstance(at, int | float):
        elapsed = at - before.time
        if elapsed > 0 and usage_ns >= before.usage_ns:
            cores = (usage_ns - before.usage_ns) / 1e9 / elapsed
            cpu = cores / (cpu_limit(task.spec) or 1.0)
    memory = None
    limit = memory_limit(task.spec)
    used = stats.get("memory_usage")
    if limit and isinstance(used, int):
        memory = used / limit
    return Usage(cpu=cpu, memory=memory)


def _event(svc: Service, decision: Decision, now: float) -> Event:
    proposal = decision.proposal
    attributes = {"from": str(decision.current), "to": str(decision.replicas)}
    if proposal is not None:
        attributes |= {
            "metric": proposal.metric,
            "utilisation": f"{proposal.utilisation:.3f}",
            "target": f"{proposal.target:.3f}",
            "measured": str(proposal.measured),
        }
    else:
        attributes["metric"] = "bounds"
    return Event(
        time=now,
        type="service",
        action="autoscale",
        id=svc.id,
        stack=svc.stack,
        service=svc.name,
        message=f"replicas {decision.current} → {decision.replicas}: {decision.reason}",
        attributes=attributes,
    )


class Autoscaler:
    """Samples and decides; one instance per server, run by `run_autoscaler`."""

    def __init__(self, ctx: ServerContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self.cpu: dict[str, CpuReading] = {}  # task id → its previous reading
        self.windows: dict[str, tuple[Recommendation, ...]] = {}  # service id → window
        self.warned: dict[str, int] = {}  # service id → version whose invalid config was said

    def _autoscaled(self) -> tuple[list[tuple[Service, int, AutoscaleConfig]], list[Event]]:
        """Services with a valid `x-shoal.autoscale`, with the revision they were read at;
        and a `warning` event for each invalid one not yet warned about (once per version)."""
        found = []
        warnings = []
        for svc in self.ctx.cache.services():
            if svc.removing:
                continue
            try:
                config = read_config(svc.spec, svc.name)
            except Invalid as exc:
                if self.warned.get(svc.id) != svc.version:
                    self.warned[svc.id] = svc.version
                    warnings.append(self._warning(svc, exc))
                continue
            if config is not None:
                found.append((svc, self.ctx.cache.revision_of(svc), config))
        return found, warnings

    def _warning(self, svc: Service, exc: Invalid) -> Event:
        return Event(
            time=self.ctx.clock(),
            type="service",
            action="warning",
            id=svc.id,
            stack=svc.stack,
            service=svc.name,
            message=f"autoscaling off: {exc.message}",
            attributes={"hint": exc.hint} if exc.hint else {},
        )

    async def _stats(self, tasks: list[Task]) -> dict[str, dict[str, Any]]:
        """Stats of each task whose agent answered in time (the others stay unmeasured)."""
        limit = asyncio.Semaphore(STATS_CONCURRENCY)

        async def one(client: httpx.AsyncClient, task: Task) -> tuple[str, dict[str, Any]]:
            try:
                async with limit:
                    url = self.ctx.agent_url(task, "stats") + "/stats"
                    data = await agent_call(self.ctx, client, task, "GET", url)
            except ShoalError as exc:
                log.debug("no stats for task %s: %s", task.id, exc)
                return task.id, {}
            return task.id, data if isinstance(data, dict) else {}

        async with httpx.AsyncClient(timeout=STATS_TIMEOUT) as client:
            answers = await asyncio.gather(*(one(client, t) for t in tasks))
        return dict(answers)

    def _usage(self, tasks: list[Task], stats: dict[str, dict[str, Any]]) -> list[Usage]:
        out = []
        for task in tasks:
            found = stats.get(task.id)
            if not found:
                continue
            out.append(_utilisation(task, found, self.cpu.get(task.id)))
            usage_ns, at = found.get("cpu_usage_ns"), found.get("time")
            if isinstance(usage_ns, int) and isinstance(at, int | float):
                self.cpu[task.id] = CpuReading(float(at), usage_ns)
        return out

    async def step(self) -> int:
        """One sample of every autoscaled service; returns how many changes were written."""
        services, warnings = self._autoscaled()
        if warnings:
            await self.ctx.store.txn([], [objects.event_op(e) for e in warnings], [])
        ids = {svc.id for svc, _, _ in services}
        running: dict[str, list[Task]] = {svc_id: [] for svc_id in ids}
        for task in self.ctx.cache.tasks():
            if (
                task.service_id in ids
                and task.status.state == TaskState.RUNNING
                and task.desired_state == TaskState.RUNNING
            ):
                running[task.service_id].append(task)
        measured = await self._stats([t for tasks in running.values() for t in tasks])
        live = {t.id for tasks in running.values() for t in tasks}
        self.cpu = {k: v for k, v in self.cpu.items() if k in live}
        self.windows = {k: v for k, v in self.windows.items() if k in ids}
        written = 0
        for svc, revision, config in services:
            usage = self._usage(running[svc.id], measured)
            written += await self._decide(svc, revision, config, usage)
        return written

    async def _decide(
        self, svc: Service, revision: int, config: AutoscaleConfig, usage: list[Usage]
    ) -> int:
        now = self.ctx.clock()
        deployed = deployed_at(self.ctx, svc.stack)
        floor, ceiling = bounds(config, svc.autoscale, deployed)
        decision = decide(
            config,
            usage,
            current=svc.replicas,
            floor=floor,
            ceiling=ceiling,
            window=self.windows.get(svc.id, ()),
            last_change=svc.autoscale.last_change if svc.autoscale else 0.0,
            now=now,
        )
        self.windows[svc.id] = decision.window
        if not decision.changed:
            return 0
        return int(await self._write(svc, revision, decision, deployed, now))

    async def _write(
        self, svc: Service, revision: int, decision: Decision, deployed: float, now: float
    ) -> bool:
        state = svc.autoscale
        if state is None or state.deployed_at != deployed:
            state = AutoscaleState(deployed_at=deployed)
        updated = svc.model_copy(
            update={
                "spec": with_replicas(svc.spec, decision.replicas),
                "updated_at": now,
                "autoscale": state.model_copy(update={"last_change": now}),
            }
        )
        key = objects.service_key(svc.stack, svc.name)
        result = await self.ctx.store.txn(
            [Compare.mod_revision(key, "==", revision)],
            [PutOp(key, encode(updated)), objects.event_op(_event(svc, decision, now))],
            [],
        )
        if not result.succeeded:
            log.info("autoscale of %s/%s raced another write; deciding again", svc.stack, svc.name)
            return False
        log.info("autoscaled %s/%s: %s", svc.stack, svc.name, decision.reason)
        await self.ctx.cache.wait_for(result.revision)
        return True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.step()
            except ShoalError as exc:
                log.warning("autoscaler pass failed: %s", exc)
            except Exception:  # a bug here must not stop the server
                log.exception("autoscaler pass crashed")
            await asyncio.sleep(max(self.interval - (loop.time() - started), 0.05))


async def run_autoscaler(ctx: ServerContext, interval: float | None = None) -> None:
    """Sample and scale every `interval` seconds (default: $SHOAL_AUTOSCALE_INTERVAL or 5)."""
    await Autoscaler(ctx, default_interval() if interval is None else interval).run()
