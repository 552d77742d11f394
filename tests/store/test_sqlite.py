"""The SQLite store passes the conformance suite, and keeps its data across reopening."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from shoal.model.errors import NotFound, Unavailable
from shoal.store.base import KeyValue, PutOp, Store
from shoal.store.sqlite import SqliteStore
from shoal.store.testsuite import FakeClock, StoreConformance, take


class TestSqliteStore(StoreConformance):
    @asynccontextmanager
    async def open_store(self, clock: FakeClock) -> AsyncIterator[Store]:
        with tempfile.TemporaryDirectory(prefix="shoal-store-") as tmp:
            async with SqliteStore.open(Path(tmp) / "store.db", clock=clock) as store:
                yield store


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    clock = FakeClock()

    async def first() -> int:
        async with SqliteStore.open(path, clock=clock) as store:
            lease = await store.lease_grant(10)
            await store.put("a", b"1")
            await store.txn([], [PutOp("b", b"1", lease=lease), PutOp("c", b"1")], [])
            await store.delete("c")
            await store.compact(2)
            return lease

    async def second(lease: int) -> None:
        async with SqliteStore.open(path, clock=clock) as store:
            assert await store.current_revision() == 3
            kvs, revision = await store.range("")
            assert (kvs, revision) == (
                [KeyValue("a", b"1", 1, 1, 1), KeyValue("b", b"1", 2, 2, 1, lease)],
                3,
            )
            events = await take(store.watch("", start_revision=2), 3)
            assert [(e.revision, e.kv.key) for e in events] == [(2, "b"), (2, "c"), (3, "c")]
            assert [kv.key for kv in (await store.range("", revision=2))[0]] == ["a", "b", "c"]
            # The lease survived with a fresh TTL, counted from the reopening.
            clock.advance(9)
            assert await store.expire_leases() == []
            assert await store.lease_grant(5) == lease + 1, "lease ids are not reused"
            clock.advance(2)
            assert await store.expire_leases() == [lease]
            assert await store.get("b") is None
            with pytest.raises(NotFound):
                await store.lease_keepalive(lease)
            assert await store.put("d", b"1") == 5

    asyncio.run(second(asyncio.run(first())))


def test_a_second_owner_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def body() -> None:
        async with SqliteStore.open(path) as store:
            await store.put("k", b"v")
            with pytest.raises(Unavailable, match="locked"):
                async with SqliteStore.open(path):
                    pass
            assert await store.get("k") is not None

    asyncio.run(body())


def test_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    async def body() -> None:
        async with SqliteStore.open(path) as store:
            await store.put("k", b"v")

    asyncio.run(body())
    with sqlite3.connect(path) as conn:  # a plain reader can inspect the file once it is closed
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT name, value FROM meta ORDER BY name").fetchall()
    conn.close()
    assert rows == [("revision", 1)]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    async def body() -> None:
        with pytest.raises(Unavailable, match="newer"):
            async with SqliteStore.open(path):
                pass

    asyncio.run(body())
