"""A watch-fed, decoded copy of the cluster objects (the informer pattern).

Controllers, the scheduler and list endpoints read from here instead of decoding thousands of
records from the store on every pass. Writes still go to the store with compare-and-swap on the
`mod_revision` recorded here, so a stale cache can cause a retry, never a lost update.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TypeVar

from pydantic import BaseModel

from shoal.model.cluster import Node, Service, Stack, Task
from shoal.server import objects
from shoal.store import Compacted, EventType, Store

M = TypeVar("M", bound=BaseModel)


class ClusterCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.items: dict[str, tuple[BaseModel, int]] = {}  # key → (object, mod_revision)
        self.revision = 0
        self._changed = asyncio.Condition()
        self.generation = 0  # bumps on every applied change; loops compare it to skip idle passes

    async def load(self) -> None:
        revision = await self.store.current_revision()
        items: dict[str, tuple[BaseModel, int]] = {}
        for prefix in objects.KINDS:
            kvs, _ = await self.store.range(prefix, revision=revision or None)
            for kv in kvs:
                obj = objects.decode_kv(kv)
                if obj is not None:
                    items[kv.key] = (obj, kv.mod_revision)
        self.items = items
        self.revision = revision
        await self._notify()

    async def run(self) -> None:
        """Follow the store forever; on compaction, reload and go on."""
        while True:
            try:
                async for event in self.store.watch("/", start_revision=self.revision + 1):
                    key = event.kv.key
                    if objects.kind_of(key) is not None:
                        if event.type is EventType.DELETE:
                            self.items.pop(key, None)
                        else:
                            obj = objects.decode_kv(event.kv)
                            if obj is not None:
                                self.items[key] = (obj, event.kv.mod_revision)
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

    def tasks(self, stack: str | None = None, service: str | None = None) -> list[Task]:
        prefix = objects.TASKS
        if stack:
            prefix += f"{stack}/"
            if service:
                prefix += f"{service}/"
        return [t for t, _ in self._of(prefix, Task)]

    def revision_of(self, obj: BaseModel) -> int:
        entry = self.items.get(objects.key_of(obj))
        return entry[1] if entry else 0
