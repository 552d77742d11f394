"""Conformance cases for watches: history then live, prefixes, resumption, compaction, close."""

from __future__ import annotations

import asyncio

import pytest

from shoal.model.errors import Unavailable

from ..base import Compacted, DeleteOp, Event, EventType, KeyValue, PutOp, Store
from .harness import FakeClock, SuiteBase, assert_quiet, case, close, summary, take


class WatchCases(SuiteBase):
    @case
    async def test_watch_replays_history_then_follows(self, store: Store, clock: FakeClock) -> None:
        await store.put("w/a", b"1")  # 1
        await store.put("x", b"1")  # 2
        await store.put("w/b", b"1")  # 3
        await store.put("wx", b"1")  # 4: `w/` must not match `wx`
        events = store.watch("w/", start_revision=1)
        assert summary(await take(events, 2)) == [("PUT", 1, "w/a", b"1"), ("PUT", 3, "w/b", b"1")]
        later = asyncio.create_task(take(events, 2))
        await store.put("w/a", b"2")  # 5
        await store.delete("w/b")  # 6
        put, delete = await later
        assert put == Event(
            EventType.PUT, KeyValue("w/a", b"2", 1, 5, 2), KeyValue("w/a", b"1", 1, 1, 1)
        )
        assert delete == Event(
            EventType.DELETE, KeyValue("w/b", b"", 0, 6, 0), KeyValue("w/b", b"1", 3, 3, 1)
        )
        await assert_quiet(events)

    @case
    async def test_watch_from_a_middle_or_future_revision(
        self, store: Store, clock: FakeClock
    ) -> None:
        for i in range(1, 6):
            await store.put("m", str(i).encode())
        middle = store.watch("m", start_revision=4)
        assert [e.revision for e in await take(middle, 2)] == [4, 5]
        future = store.watch("m", start_revision=8)
        pending = asyncio.create_task(take(future, 1))
        for i in range(6, 9):
            await store.put("m", str(i).encode())
        assert [e.revision for e in await pending] == [8]
        assert [e.revision for e in await take(middle, 3)] == [6, 7, 8]
        await assert_quiet(middle)
        await assert_quiet(future)

    @case
    async def test_watch_without_start_sees_only_later_changes(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.put("n/old", b"1")
        events = store.watch("n/")
        first = asyncio.create_task(take(events, 1))
        await asyncio.sleep(0.1)  # let the watch be established (a remote backend needs this)
        await store.put("n/new", b"1")
        assert summary(await first) == [("PUT", 2, "n/new", b"1")]
        await assert_quiet(events)

    @case
    async def test_one_revision_events_come_together_in_order(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.put("o/c", b"1")  # 1
        await store.put("o/d/1", b"1")  # 2
        await store.put("o/d/2", b"1")  # 3
        events = store.watch("o/", start_revision=4)
        await store.txn([], [PutOp("o/b", b"1"), PutOp("o/a", b"1"), DeleteOp("o/c")], [])  # 4
        await store.delete_prefix("o/d/")  # 5
        assert summary(await take(events, 5)) == [
            ("PUT", 4, "o/b", b"1"),
            ("PUT", 4, "o/a", b"1"),
            ("DELETE", 4, "o/c", b""),
            ("DELETE", 5, "o/d/1", b""),
            ("DELETE", 5, "o/d/2", b""),
        ]
        await assert_quiet(events)

    @case
    async def test_long_history_arrives_complete(self, store: Store, clock: FakeClock) -> None:
        for batch in range(3):  # revisions of 700 events each, more than any read batch
            await store.txn([], [PutOp(f"l/{batch}/{i:04}", b"v") for i in range(700)], [])
        events = store.watch("l/", start_revision=1)
        got = await take(events, 2100)
        assert [(e.revision, e.kv.key) for e in got] == [
            (batch + 1, f"l/{batch}/{i:04}") for batch in range(3) for i in range(700)
        ]
        await assert_quiet(events)

    @case
    async def test_resume_without_gap_or_duplicate(self, store: Store, clock: FakeClock) -> None:
        async def write(n: int) -> None:
            # Mixed revisions: single puts, multi-key txns, deletes.
            for i in range(n):
                if i % 3 == 0:
                    await store.txn([], [PutOp(f"r/{i}/a", b"x"), PutOp(f"r/{i}/b", b"x")], [])
                elif i % 3 == 1:
                    await store.put(f"r/{i}", b"x")
                else:
                    await store.delete_prefix(f"r/{i - 2}/")

        await write(12)
        everything = await take(store.watch("r/", start_revision=1), 20)
        # A consumer that stops at a revision boundary resumes at last_seen + 1.
        events = store.watch("r/", start_revision=1)
        first = await take(events, 5)
        assert first[-1].revision != everything[5].revision, "stopped at a boundary"
        await close(events)
        rest = await take(store.watch("r/", start_revision=first[-1].revision + 1), 15)
        assert first + rest == everything
        # One that may stop mid-revision resumes at last_seen and skips the (revision, key)s seen.
        events = store.watch("r/", start_revision=1)
        first = await take(events, 6)
        assert first[-1].revision == everything[6].revision, "stopped mid-revision"
        await close(events)
        seen = {(e.revision, e.kv.key) for e in first}
        again = await take(store.watch("r/", start_revision=first[-1].revision), 15)
        assert first + [e for e in again if (e.revision, e.kv.key) not in seen] == everything

    @case
    async def test_compacted_watch_lists_again(self, store: Store, clock: FakeClock) -> None:
        for i in range(1, 7):
            await store.put(f"c/{i % 3}", str(i).encode())
        await store.compact(4)
        await store.compact(2)  # going back is a no-op
        with pytest.raises(Compacted) as info:
            await anext(store.watch("c/", start_revision=3))
        assert info.value.compact_revision == 4
        assert [e.revision for e in await take(store.watch("c/", start_revision=4), 3)] == [4, 5, 6]
        # The reflector pattern: list, then watch from the list's revision + 1.
        _, revision = await store.range("c/")
        events = store.watch("c/", start_revision=revision + 1)
        await store.put("c/0", b"7")
        assert summary(await take(events, 1)) == [("PUT", 7, "c/0", b"7")]
        await store.compact(7)
        assert await store.range("c/", revision=7) == ((await store.range("c/"))[0], 7)

    @case
    async def test_many_watchers_are_all_woken(self, store: Store, clock: FakeClock) -> None:
        watches = [store.watch(f"many/{i}/", start_revision=1) for i in range(20)]
        waiting = [asyncio.create_task(take(w, 2)) for w in watches]
        await asyncio.sleep(0)
        await store.txn([], [PutOp(f"many/{i}/k", b"1") for i in range(20)], [])
        for i in range(20):
            await store.put(f"many/{i}/k", b"2")
        for i, task in enumerate(waiting):
            assert summary(await task) == [
                ("PUT", 1, f"many/{i}/k", b"1"),
                ("PUT", 2 + i, f"many/{i}/k", b"2"),
            ]
        for w in watches:
            await close(w)

    def test_closing_the_store_ends_its_watches(self) -> None:
        async def body() -> None:
            async with self.open_store(FakeClock()) as store:
                waiting = asyncio.create_task(take(store.watch(""), 1))
                await asyncio.sleep(0.05)
            with pytest.raises(Unavailable):
                await waiting
            with pytest.raises(Unavailable):
                await store.get("k")

        asyncio.run(body())
