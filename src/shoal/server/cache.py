"""A watch-fed, decoded copy of the cluster objects (the informer pattern).

Controllers, the scheduler and list endpoints read from here instead of decoding thousands of
records from the store on every pass. Writes still go to the store with compare-and-swap on the
`mod_revision` recorded here, so a stale cache can cause a retry, never a lost update.

Three more jobs ride on the one store watch the cache holds:
- tasks share one ServiceSpec object per distinct spec (thousands of replicas of a service
  would otherwise each hold their own copy: ~18 KB a task instead of ~2 KB);
- subscribers (SSE watchers) get every store event fanned out from memory, instead of each
  re-reading the store after every commit;
- the services whose objects changed are remembered, so the control loop can reconcile only
  those between full passes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import TypeVar

from pydantic import BaseModel

from shoal.model.cluster import Node, Service, Stack, Task
from shoal.model.compose_service import ServiceSpec
from shoal.model.network import Endpoints, Network
from shoal.server import objects
from shoal.store import Compacted, Event, EventType, KeyValue, Store

M = TypeVar("M", bound=BaseModel)


class Subscription:
    """A bounded in-memory feed of store events for one reader (an SSE watcher)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.broken = False  # the reader fell too far behind, or the cache had to re-list

    def offer(self, event: Event | None) -> bool:
        if event is None or self.queue.qsize() >= self.LIMIT:
            self.broken = True
            self.queue.put_nowait(None)  # wakes the reader so it can end its stream
            return False
        self.queue.put_nowait(event)
        return True

    async def next(self) -> Event | None:
        """The next event, or None once broken (the reader resumes from its last revision)."""
        event = await self.queue.get()
        return None if self.broken and event is None else event


class ClusterCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.items: dict[str, tuple[BaseModel, int]] = {}  # key → (object, mod_revision)
        self.revision = 0
        self._changed = asyncio.Condition()
        self.generation = 0  # bumps on every applied change; loops compare it to skip idle passes
        self.specs: dict[str, ServiceSpec] = {}  # spec JSON → the one shared object
        self.task_keys: dict[str, str] = {}  # task id → key (agents report by id, often)
        self.subscribers: set[Subscription] = set()
        self.dirty: set[str] = set()  # "<stack>/<service>" whose service or tasks changed
        self.nodes_changed = True

    def _decode(self, kv: KeyValue) -> BaseModel | None:
        if not kv.key.startswith(objects.TASKS):
            return objects.decode_kv(kv)
        raw = json.loads(kv.value)
        spec_json = json.dumps(raw["spec"], sort_keys=True, separators=(",", ":"))
        spec = self.specs.get(spec_json)
        if spec is None:
            spec = ServiceSpec.model_validate(raw["spec"])
            self.specs[spec_json] = spec
        raw["spec"] = spec
        return Task.model_validate(raw)

    def _mark(self, key: str, new: BaseModel | None) -> None:
        if key.startswith(objects.NODES):
            old = self.items.get(key)
            # A heartbeat only moves heartbeat_at: not worth a full pass (the timer covers it).
            if not (
                isinstance(new, Node)
                and old is not None
                and isinstance(old[0], Node)
                and old[0].spec == new.spec
                and old[0].status.state == new.status.state
                and old[0].description == new.description
            ):
                self.nodes_changed = True
            return
        for prefix in (objects.TASKS, objects.SERVICES):
            if key.startswith(prefix):
                stack, _, rest = key[len(prefix) :].partition("/")
                self.dirty.add(f"{stack}/{rest.partition('/')[0]}")

    def take_dirty(self) -> tuple[set[str], bool]:
        """The services changed since the last call, and whether any node changed."""
        dirty, nodes = self.dirty, self.nodes_changed
        self.dirty, self.nodes_changed = set(), False
        return dirty, nodes

    def subscribe(self) -> Subscription:
        """Every store event from now on, until `unsubscribe`."""
        subscription = Subscription()
        self.subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)

    def _publish(self, event: Event | None) -> None:
        for subscription in list(self.subscribers):
            if not subscription.offer(event):
                self.subscribers.discard(subscription)

    async def load(self) -> None:
        revision = await self.store.current_revision()
        items: dict[str, tuple[BaseModel, int]] = {}
        for prefix in objects.KINDS:
            kvs, _ = await self.store.range(prefix, revision=revision or None)
            for kv in kvs:
                obj = self._decode(kv)
                if obj is not None:
                    items[kv.key] = (obj, kv.mod_revision)
        self.items = items
        self.task_keys = {obj.id: key for key, (obj, _) in items.items() if isinstance(obj, Task)}
        self.revision = revision
        self.gc_specs()
        self.dirty = {
            f"{o.stack}/{o.service if isinstance(o, Task) else o.name}"
            for o, _ in items.values()
            if isinstance(o, Task | Service)
        }
        self.nodes_changed = True
        self._publish(None)
        await self._notify()

    def gc_specs(self) -> None:
        """Forget shared specs no task uses any more."""
        used = {id(obj.spec) for obj, _ in self.items.values() if isinstance(obj, Task)}
        self.specs = {k: v for k, v in self.specs.items() if id(v) in used}

    async def run(self) -> None:
        """Follow the store forever; on compaction, reload and go on."""
        while True:
            try:
                async for event in self.store.watch("/", start_revision=self.revision + 1):
                    key = event.kv.key
                    if objects.kind_of(key) is not None:
                        if event.type is EventType.DELETE:
                            self._mark(key, None)
                            self.items.pop(key, None)
                            if key.startswith(objects.TASKS):
                                self.task_keys.pop(key.rsplit("/", 1)[1], None)
                        else:
                            obj = self._decode(event.kv)
                            self._mark(key, obj)
                            if obj is not None:
                                self.items[key] = (obj, event.kv.mod_revision)
                            if isinstance(obj, Task):
                                self.task_keys[obj.id] = key
                    self._publish(event)
                    if event.revision > self.revision:
                        self.revision = event.revision
                        await self._notify()
            except Compacted:
                await self.load()

    async def _notify(self) -> None:
        self.generation += 1
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, revision: int, timeout: float = 5.0) -> None:
        """Until the cache has seen `revision` (read-your-writes after an API write)."""

        async def seen() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.revision >= revision)

        await asyncio.wait_for(seen(), timeout)

    async def wait_changed(self, generation: int, timeout: float) -> int:
        """Until something changed after `generation` (or the timeout); the new generation."""
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.generation != generation), timeout
                )
        except TimeoutError:
            pass
        return self.generation

    # --- typed reads ------------------------------------------------------------------------

    def _of(self, prefix: str, cls: type[M]) -> Iterator[tuple[M, int]]:
        for key, (obj, rev) in self.items.items():
            if key.startswith(prefix) and isinstance(obj, cls):
                yield obj, rev

    def get(self, key: str) -> tuple[BaseModel, int] | None:
        return self.items.get(key)

    def nodes(self) -> list[Node]:
        return sorted((n for n, _ in self._of(objects.NODES, Node)), key=lambda n: n.id)

    def stacks(self) -> list[Stack]:
        return sorted((s for s, _ in self._of(objects.STACKS, Stack)), key=lambda s: s.name)

    def services(self, stack: str | None = None) -> list[Service]:
        prefix = objects.SERVICES + (f"{stack}/" if stack else "")
        found = (s for s, _ in self._of(prefix, Service))
        return sorted(found, key=lambda s: (s.stack, s.name))

    def networks(self) -> list[Network]:
        return sorted((n for n, _ in self._of(objects.NETWORKS, Network)), key=lambda n: n.name)

    def endpoints(self, stack: str | None = None) -> list[Endpoints]:
        prefix = objects.ENDPOINTS + (f"{stack}/" if stack else "")
        return [e for e, _ in self._of(prefix, Endpoints)]

    def tasks(self, stack: str | None = None, service: str | None = None) -> list[Task]:
        prefix = objects.TASKS
        if stack:
            prefix += f"{stack}/"
            if service:
                prefix += f"{service}/"
        return [t for t, _ in self._of(prefix, Task)]

    def task(self, task_id: str) -> tuple[Task, int] | None:
        key = self.task_keys.get(task_id)
        entry = self.items.get(key) if key is not None else None
        if entry is None or not isinstance(entry[0], Task):
            return None
        return entry[0], entry[1]

    def revision_of(self, obj: BaseModel) -> int:
        entry = self.items.get(objects.key_of(obj))
        return entry[1] if entry else 0
