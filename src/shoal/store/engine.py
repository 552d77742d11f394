"""`EngineStore`: the async `Store` API over the synchronous `MVCC` engine.

Backends subclass it and decide only where the engine runs (`_call`) and how it is opened and
closed. Watchers do not poll: they read the history table from their position and, when they
have caught up, sleep on an `asyncio.Event` that is replaced and set after every commit. The
event is captured *before* reading, so a commit that lands between the read and the wait
still wakes the watcher (no lost wake-up).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TypeVar

from shoal.model.errors import Unavailable

from .base import Compare, Event, KeyValue, Op, Store, TxnResult
from .keys import check_prefix, check_revision
from .mvcc import MVCC, Position

T = TypeVar("T")

WATCH_BATCH = 512
"""Events a watcher reads per trip to the engine: bounds memory for a watcher far behind."""


class EngineStore:
    """Implements `shoal.store.base.Store`; see there for the contract of each method."""

    def __init__(self) -> None:
        self._engine: MVCC | None = None
        self._revision = 0  # mirror of the engine's revision, only touched on the event loop
        self._tick = asyncio.Event()
        self._closed = False

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` against the engine, serialised with every other call."""
        raise NotImplementedError

    @property
    def _mvcc(self) -> MVCC:
        if self._engine is None or self._closed:
            raise Unavailable("the store is closed")
        return self._engine

    def _attach(self, engine: MVCC) -> None:
        self._engine = engine
        self._revision = engine.revision

    def _committed(self, revision: int) -> None:
        """Called on the event loop after each commit: wake every waiting watcher."""
        self._revision = max(self._revision, revision)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _shutdown(self) -> None:
        self._closed = True
        self._tick.set()

    # -- key-value ------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        return await self._call(lambda: self._mvcc.get(key))

    async def range(
        self,
        prefix: str,
        *,
        limit: int | None = None,
        revision: int | None = None,
        start_after: str | None = None,
    ) -> tuple[list[KeyValue], int]:
        return await self._call(lambda: self._mvcc.range(prefix, limit, revision, start_after))

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        expect_mod_revision: int | None = None,
        lease: int | None = None,
    ) -> int:
        return await self._call(lambda: self._mvcc.put(key, value, expect_mod_revision, lease))

    async def delete(self, key: str, *, expect_mod_revision: int | None = None) -> bool:
        return await self._call(lambda: self._mvcc.delete(key, expect_mod_revision))

    async def delete_prefix(self, prefix: str) -> int:
        return await self._call(lambda: self._mvcc.delete_prefix(prefix))

    async def txn(self, compares: list[Compare], success: list[Op], failure: list[Op]) -> TxnResult:
        return await self._call(lambda: self._mvcc.txn(compares, success, failure))

    async def current_revision(self) -> int:
        if self._closed:
            raise Unavailable("the store is closed")
        return self._revision

    async def compact(self, revision: int) -> None:
        await self._call(lambda: self._mvcc.compact(revision))

    # -- watch ----------------------------------------------------------------------------

    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[Event]:
        check_prefix(prefix)
        if start_revision is None:
            start_revision = self._revision + 1
        check_revision("start_revision", start_revision, minimum=1)
        return self._watch(prefix, (start_revision, -1))

    async def _watch(self, prefix: str, position: Position) -> AsyncIterator[Event]:
        while True:
            tick = self._tick
            batch = await self._call(partial(self._read_events, prefix, position))
            if not batch:
                await tick.wait()
                continue
            for position, event in batch:  # noqa: B007 - the loop variable is the cursor
                yield event

    def _read_events(self, prefix: str, position: Position) -> list[tuple[Position, Event]]:
        return self._mvcc.read_events(prefix, position, WATCH_BATCH)

    # -- leases ---------------------------------------------------------------------------

    async def lease_grant(self, ttl: float) -> int:
        return await self._call(lambda: self._mvcc.lease_grant(ttl))

    async def lease_keepalive(self, lease_id: int) -> float:
        return await self._call(lambda: self._mvcc.lease_keepalive(lease_id))

    async def lease_revoke(self, lease_id: int) -> None:
        await self._call(lambda: self._mvcc.lease_revoke(lease_id))

    async def expire_leases(self) -> list[int]:
        return await self._call(lambda: self._mvcc.expire_leases())


def _conforms(store: EngineStore) -> Store:
    """Never called: makes mypy prove that `EngineStore` satisfies the `Store` protocol."""
    return store
