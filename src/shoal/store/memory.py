"""An in-memory `Store` for unit tests of other components: same engine, rows in dicts and lists.

It runs the engine inline on the event loop (every call is a few dict operations) and keeps
nothing on close. It passes the same conformance suite as the SQLite backend.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from .base import Clock, Event, KeyValue
from .engine import EngineStore
from .mvcc import MVCC, Position

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


def _restore(table: dict[K, V], key: K, old: V | None) -> None:
    """Undo step: put back `old`, or remove the key if it was absent."""
    if old is None:
        table.pop(key, None)
    else:
        table[key] = old


class MemoryTables:
    """`Tables` in memory. A transaction keeps an undo journal, so a failure rolls back."""

    def __init__(self) -> None:
        self._kv: dict[str, KeyValue] = {}
        self._keys: list[str] = []  # sorted, for prefix scans
        self._history: list[tuple[int, int, Event]] = []  # (revision, index, event), sorted
        self._meta: dict[str, int] = {}
        self._leases: dict[int, float] = {}
        self._undo: list[Callable[[], None]] | None = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._undo = []
        try:
            yield
        except BaseException:
            for step in reversed(self._undo):
                step()
            raise
        finally:
            self._undo = None

    def _journal(self, step: Callable[[], None]) -> None:
        assert self._undo is not None, "write outside a transaction"
        self._undo.append(step)

    def meta(self) -> dict[str, int]:
        return dict(self._meta)

    def set_meta(self, name: str, value: int) -> None:
        old = self._meta.get(name)
        self._journal(lambda: _restore(self._meta, name, old))
        self._meta[name] = value

    def get(self, key: str) -> KeyValue | None:
        return self._kv.get(key)

    def scan(self, prefix: str, start_after: str | None, limit: int | None) -> list[KeyValue]:
        i = bisect.bisect_left(self._keys, prefix)
        if start_after is not None:
            i = max(i, bisect.bisect_right(self._keys, start_after))
        out: list[KeyValue] = []
        for key in self._keys[i:]:
            if not key.startswith(prefix) or (limit is not None and len(out) >= limit):
                break
            out.append(self._kv[key])
        return out

    def lease_keys(self, lease: int) -> list[KeyValue]:
        return sorted((kv for kv in self._kv.values() if kv.lease == lease), key=lambda kv: kv.key)

    def write(self, kv: KeyValue) -> None:
        old = self._kv.get(kv.key)
        self._journal(lambda: self._put_row(kv.key, old))
        self._put_row(kv.key, kv)

    def remove(self, key: str) -> None:
        old = self._kv.get(key)
        self._journal(lambda: self._put_row(key, old))
        self._put_row(key, None)

    def _put_row(self, key: str, kv: KeyValue | None) -> None:
        present = key in self._kv
        if kv is None:
            if present:
                del self._kv[key]
                self._keys.pop(bisect.bisect_left(self._keys, key))
            return
        if not present:
            bisect.insort(self._keys, key)
        self._kv[key] = kv

    def append_events(self, revision: int, events: Sequence[Event]) -> None:
        start = len(self._history)
        self._journal(lambda: self._history.__delitem__(slice(start, None)))
        self._history.extend((revision, i, event) for i, event in enumerate(events))

    def events_after(
        self, position: Position, prefix: str, limit: int | None
    ) -> list[tuple[Position, Event]]:
        i = bisect.bisect_right(self._history, position, key=lambda h: (h[0], h[1]))
        out: list[tuple[Position, Event]] = []
        for revision, index, event in self._history[i:]:
            if limit is not None and len(out) >= limit:
                break
            if event.kv.key.startswith(prefix):
                out.append(((revision, index), event))
        return out

    def drop_events_before(self, revision: int) -> None:
        i = bisect.bisect_left(self._history, revision, key=lambda h: h[0])
        dropped = self._history[:i]
        self._journal(lambda: self._history.__setitem__(slice(0, 0), dropped))
        del self._history[:i]

    def leases(self) -> list[tuple[int, float]]:
        return sorted(self._leases.items())

    def add_lease(self, lease: int, ttl: float) -> None:
        self._journal(lambda: _restore(self._leases, lease, None))
        self._leases[lease] = ttl

    def remove_lease(self, lease: int) -> None:
        old = self._leases.get(lease)
        self._journal(lambda: _restore(self._leases, lease, old))
        self._leases.pop(lease, None)


class MemoryStore(EngineStore):
    """In-memory store; `clock` defaults to `time.monotonic` (see `shoal.store.sqlite`)."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        super().__init__()
        self._attach(MVCC(MemoryTables(), clock, self._committed))

    async def _call(self, fn: Callable[[], T]) -> T:
        return fn()

    def close(self) -> None:
        self._shutdown()

    @classmethod
    @asynccontextmanager
    async def open(cls, *, clock: Clock = time.monotonic) -> AsyncIterator[MemoryStore]:
        store = cls(clock=clock)
        try:
            yield store
        finally:
            store.close()
