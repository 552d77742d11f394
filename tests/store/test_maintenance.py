"""Lease expiry loop and automatic compaction policy (backend-neutral; run on the memory store)."""

from __future__ import annotations

import asyncio

import pytest

from shoal.model.errors import Invalid
from shoal.store.base import Compacted
from shoal.store.maintenance import CompactionPolicy, Compactor, run_maintenance
from shoal.store.memory import MemoryStore
from shoal.store.testsuite import FakeClock, take


def test_keep_the_last_n_revisions() -> None:
    async def body() -> None:
        async with MemoryStore.open() as store:
            compactor = Compactor(store, CompactionPolicy(keep_revisions=5, keep_seconds=None))
            for i in range(20):
                await store.put("k", str(i).encode())
            assert await compactor.tick() == 16
            assert await compactor.tick() is None, "nothing new to drop"
            with pytest.raises(Compacted):
                await anext(store.watch("", start_revision=15))
            assert [e.revision for e in await take(store.watch("", start_revision=16), 5)] == [
                16,
                17,
                18,
                19,
                20,
            ]

    asyncio.run(body())


def test_keep_the_last_t_seconds() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with MemoryStore.open(clock=clock) as store:
            policy = CompactionPolicy(keep_revisions=None, keep_seconds=60)
            compactor = Compactor(store, policy, clock=clock)
            for _ in range(3):
                await store.put("k", b"v")
            assert await compactor.tick() is None  # t=0, revision 3
            clock.advance(30)
            for _ in range(3):
                await store.put("k", b"v")
            assert await compactor.tick() is None  # t=30, revision 6: nothing 60s old yet
            clock.advance(31)
            await store.put("k", b"v")
            assert await compactor.tick() == 4, "revisions 1-3 were written 61s ago"
            clock.advance(30)
            assert await compactor.tick() == 7

    asyncio.run(body())


def test_both_limits_keep_the_union() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with MemoryStore.open(clock=clock) as store:
            compactor = Compactor(
                store, CompactionPolicy(keep_revisions=2, keep_seconds=10), clock=clock
            )
            for _ in range(10):
                await store.put("k", b"v")
            assert await compactor.tick() is None, "all of it is younger than 10s"
            clock.advance(11)
            assert await compactor.tick() == 9, "old enough, but the last 2 revisions stay"

    asyncio.run(body())


def test_bad_policies_are_refused() -> None:
    with pytest.raises(Invalid):
        CompactionPolicy(keep_revisions=0)
    with pytest.raises(Invalid):
        CompactionPolicy(keep_seconds=-1)


def test_the_loop_expires_leases_until_cancelled() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with MemoryStore.open(clock=clock) as store, asyncio.TaskGroup() as tg:
            lease = await store.lease_grant(5)
            await store.put("session", b"1", lease=lease)
            policy = CompactionPolicy(keep_revisions=1, keep_seconds=None)
            loop = tg.create_task(run_maintenance(store, Compactor(store, policy), interval=0.001))
            clock.advance(6)
            async with asyncio.timeout(5):
                while await store.get("session") is not None:
                    await asyncio.sleep(0.001)
            loop.cancel()
            with pytest.raises(Compacted):
                await anext(store.watch("", start_revision=1))

    asyncio.run(body())
