"""The embedded `Store`: one SQLite file in WAL mode, owned by one process.

Tables: `kv` (current state, clustered by key so a prefix list is one range scan), `history`
(every event keyed by `(revision, idx)` with the value it replaced, which serves watches,
reads of the past and resumption), `leases` (id, TTL) and `meta` (revision, compact revision,
next lease id). Every write is one SQLite transaction that also advances `meta.revision`, so a
`kill -9` at any instant leaves either all or none of a revision.

Decisions:

* `synchronous=FULL` by default: each commit is fsynced before the caller hears of its
  revision. With NORMAL a power cut can lose the last commits, and a restarted server would
  then hand out a revision a watcher has already seen for a different change, silently breaking
  resume-from-revision. FULL costs ~0.1 ms per commit here (~5,000 puts/s); `durability="normal"`
  is offered for throw-away clusters. Either setting survives a process crash intact.
* SQLite runs on one dedicated worker thread, not on the event loop. Point operations take
  microseconds, but an fsync or a 10,000-key list takes milliseconds, and the API server's loop
  must not stall on them. One thread owns the one connection, so calls are totally ordered
  without Python locks. The thread hop costs ~50 µs per call.
* `locking_mode=EXCLUSIVE`: the engine caches the revision and lease deadlines in memory, so a
  second process writing the same file would corrupt its view; the lock makes it fail to open
  (`Unavailable`) instead. The OS drops the lock when the owner dies, even by `kill -9`.
* The clock defaults to `time.monotonic`: lease deadlines must not jump with the wall clock, and
  they are kept in memory only (a reopened store gives each lease a fresh TTL, like etcd).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from shoal.model.errors import Unavailable

from .base import Clock, Event, EventType, KeyValue
from .engine import EngineStore
from .keys import prefix_end
from .mvcc import MVCC, Position

T = TypeVar("T")
Durability = Literal["full", "normal"]
SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS kv (
        key BLOB PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
        mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease IS NOT NULL",
    # `type` 0 is PUT, 1 is DELETE; the prev_* columns are NULL when there was no prev_kv.
    """CREATE TABLE IF NOT EXISTS history (
        revision INTEGER NOT NULL, idx INTEGER NOT NULL, type INTEGER NOT NULL,
        key BLOB NOT NULL, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
        version INTEGER NOT NULL, lease INTEGER,
        prev_value BLOB, prev_create INTEGER, prev_mod INTEGER, prev_version INTEGER,
        prev_lease INTEGER,
        PRIMARY KEY (revision, idx)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl REAL NOT NULL)",
)
_KV_COLUMNS = "key, value, create_revision, mod_revision, version, lease"


def _kv(row: tuple[Any, ...]) -> KeyValue:
    return KeyValue(row[0].decode(), row[1], row[2], row[3], row[4], row[5])


def _key_bounds(prefix: str) -> tuple[str, list[bytes]]:
    """SQL condition and parameters selecting keys that start with `prefix`."""
    low = prefix.encode()
    high = prefix_end(low)
    if high is None:
        return "key >= ?", [low]
    return "key >= ? AND key < ?", [low, high]


class SqliteTables:
    """`Tables` over one connection; used only from the store's worker thread."""

    def __init__(self, path: str, durability: Durability) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        try:
            self._setup(durability)
        except BaseException:
            self._conn.close()
            raise

    def _setup(self, durability: Durability) -> None:
        execute = self._conn.execute
        execute("PRAGMA busy_timeout = 1000")
        execute("PRAGMA locking_mode = EXCLUSIVE")
        if execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise Unavailable("SQLite refused WAL mode for the store file")
        execute(f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}")
        with self.transaction():  # takes the exclusive lock now, not at the first write
            version = execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise Unavailable(f"store schema {version} is newer than this shoal knows")
            for statement in _SCHEMA:
                execute(statement)
            execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def meta(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT name, value FROM meta"))

    def set_meta(self, name: str, value: int) -> None:
        self._conn.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def get(self, key: str) -> KeyValue | None:
        row = self._conn.execute(
            f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key.encode(),)
        ).fetchone()
        return _kv(row) if row else None

    def scan(self, prefix: str, start_after: str | None, limit: int | None) -> list[KeyValue]:
        where, params = _key_bounds(prefix)
        if start_after is not None:
            where += " AND key > ?"
            params.append(start_after.encode())
        sql = f"SELECT {_KV_COLUMNS} FROM kv WHERE {where} ORDER BY key"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_kv(row) for row in self._conn.execute(sql, params)]

    def lease_keys(self, lease: int) -> list[KeyValue]:
        rows = self._conn.execute(
            f"SELECT {_KV_COLUMNS} FROM kv WHERE lease = ? ORDER BY key", (lease,)
        )
        return [_kv(row) for row in rows]

    def write(self, kv: KeyValue) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO kv ({_KV_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (kv.key.encode(), kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        )

    def remove(self, key: str) -> None:
        self._conn.execute("DELETE FROM kv WHERE key = ?", (key.encode(),))

    def append_events(self, revision: int, events: Sequence[Event]) -> None:
        rows: list[tuple[object, ...]] = []
        for idx, event in enumerate(events):
            kv, prev = event.kv, event.prev_kv
            kind = 0 if event.type is EventType.PUT else 1
            new = (kv.key.encode(), kv.value, kv.create_revision, kv.version, kv.lease)
            old: tuple[object, ...] = (None,) * 5
            if prev is not None:
                old = (
                    prev.value,
                    prev.create_revision,
                    prev.mod_revision,
                    prev.version,
                    prev.lease,
                )
            rows.append((revision, idx, kind, *new, *old))
        self._conn.executemany(f"INSERT INTO history VALUES ({', '.join('?' * 13)})", rows)

    def events_after(
        self, position: Position, prefix: str, limit: int | None
    ) -> list[tuple[Position, Event]]:
        where, params = _key_bounds(prefix)
        sql = (
            "SELECT * FROM history WHERE (revision, idx) > (?, ?) AND "
            f"{where} ORDER BY revision, idx"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._conn.execute(sql, [position[0], position[1], *params])
        return [((row[0], row[1]), _event(row)) for row in rows]

    def drop_events_before(self, revision: int) -> None:
        self._conn.execute("DELETE FROM history WHERE revision < ?", (revision,))

    def leases(self) -> list[tuple[int, float]]:
        return list(self._conn.execute("SELECT id, ttl FROM leases ORDER BY id"))

    def add_lease(self, lease: int, ttl: float) -> None:
        self._conn.execute("INSERT INTO leases VALUES (?, ?)", (lease, ttl))

    def remove_lease(self, lease: int) -> None:
        self._conn.execute("DELETE FROM leases WHERE id = ?", (lease,))


def _event(row: tuple[Any, ...]) -> Event:
    revision, _idx, kind, key, value, create, version, lease = row[:8]
    name = key.decode()
    prev = None if row[10] is None else KeyValue(name, row[8], row[9], row[10], row[11], row[12])
    if kind == 0:
        return Event(EventType.PUT, KeyValue(name, value, create, revision, version, lease), prev)
    return Event(EventType.DELETE, KeyValue(name, b"", 0, revision, 0, None), prev)


class SqliteStore(EngineStore):
    """The SQLite store. Open it with `async with SqliteStore.open(path) as store:`."""

    def __init__(self, path: str | Path, *, clock: Clock, durability: Durability) -> None:
        super().__init__()
        self._path = str(path)
        self._clock = clock
        self._durability = durability
        self._tables: SqliteTables | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-store")

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = time.monotonic,
        durability: Durability = "full",
    ) -> AsyncIterator[SqliteStore]:
        store = cls(path, clock=clock, durability=durability)
        try:
            await store._start()
            yield store
        finally:
            await store._stop()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()

        def on_commit(revision: int) -> None:
            # From the worker thread; runs before the committing caller's await returns.
            loop.call_soon_threadsafe(self._committed, revision)

        def connect() -> MVCC:
            self._tables = SqliteTables(self._path, self._durability)
            return MVCC(self._tables, self._clock, on_commit)

        self._attach(await self._run(connect))

    async def _stop(self) -> None:
        self._shutdown()
        try:
            if self._tables is not None:
                await self._run(self._tables.close)  # queued behind calls still in flight
        finally:
            self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise Unavailable("the store is closed")
        return await self._run(fn)

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise Unavailable(
                    f"store {self._path} is locked: {exc}",
                    hint="another shoal server process owns this file",
                ) from exc
            raise Unavailable(f"store {self._path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise Unavailable(f"store {self._path}: {exc}") from exc
