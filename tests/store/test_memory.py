"""The in-memory store passes the conformance suite."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from shoal.store.base import Store
from shoal.store.memory import MemoryStore
from shoal.store.testsuite import FakeClock, StoreConformance


class TestMemoryStore(StoreConformance):
    def open_store(self, clock: FakeClock) -> AbstractAsyncContextManager[Store]:
        return MemoryStore.open(clock=clock)
