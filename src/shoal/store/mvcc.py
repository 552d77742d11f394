"""etcd semantics implemented once, synchronously, over a small `Tables` interface.

A backend (memory, SQLite) only stores rows: current key-values, the event history keyed by
`(revision, index)`, leases and a few counters. `MVCC` decides what a put, delete, txn, lease
revoke or compaction means, so every backend agrees by construction and the conformance suite
checks the storage underneath. `MVCC` is not thread-safe: the owner calls it from one thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from shoal.model.errors import Invalid, NotFound

from .base import (
    Clock,
    Compacted,
    Compare,
    Event,
    EventType,
    GetOp,
    KeyValue,
    Op,
    OpResponse,
    PutOp,
    RevisionMismatch,
    TxnResult,
)
from .keys import check_key, check_ops, check_prefix, check_revision

T = TypeVar("T")
Position = tuple[int, int]
"""(revision, index within the revision) of an event; `(r, -1)` is "before revision r"."""


class Tables(Protocol):
    """Row storage. Writes happen only inside `transaction()`, which commits atomically."""

    def transaction(self) -> AbstractContextManager[None]: ...
    def meta(self) -> dict[str, int]: ...
    def set_meta(self, name: str, value: int) -> None: ...
    def get(self, key: str) -> KeyValue | None: ...
    def scan(self, prefix: str, start_after: str | None, limit: int | None) -> list[KeyValue]: ...
    def lease_keys(self, lease: int) -> list[KeyValue]: ...
    def write(self, kv: KeyValue) -> None: ...
    def remove(self, key: str) -> None: ...
    def append_events(self, revision: int, events: Sequence[Event]) -> None: ...
    def events_after(
        self, position: Position, prefix: str, limit: int | None
    ) -> list[tuple[Position, Event]]: ...
    def drop_events_before(self, revision: int) -> None: ...
    def leases(self) -> list[tuple[int, float]]: ...
    def add_lease(self, lease: int, ttl: float) -> None: ...
    def remove_lease(self, lease: int) -> None: ...


class _Batch:
    """The writes of one revision, collected while a transaction is open."""

    def __init__(self, tables: Tables, revision: int) -> None:
        self.tables = tables
        self.revision = revision
        self.events: list[Event] = []

    def put(self, key: str, value: bytes, lease: int | None) -> KeyValue | None:
        prev = self.tables.get(key)
        rev = self.revision
        kv = KeyValue(
            key=key,
            value=value,
            create_revision=prev.create_revision if prev else rev,
            mod_revision=rev,
            version=prev.version + 1 if prev else 1,
            lease=lease,
        )
        self.tables.write(kv)
        self.events.append(Event(EventType.PUT, kv, prev))
        return prev

    def delete(self, prev: KeyValue) -> None:
        self.tables.remove(prev.key)
        tombstone = KeyValue(prev.key, b"", 0, self.revision, 0, None)
        self.events.append(Event(EventType.DELETE, tombstone, prev))


def _compare(actual: int | bytes, op: str, operand: int | bytes) -> bool:
    if op == "==":
        return actual == operand
    if op == "!=":
        return actual != operand
    if isinstance(actual, bytes) and isinstance(operand, bytes):
        return actual < operand if op == "<" else actual > operand
    if isinstance(actual, int) and isinstance(operand, int):
        return actual < operand if op == "<" else actual > operand
    return False


class MVCC:
    """The store's state machine. `on_commit(revision)` runs after each durable new revision."""

    def __init__(
        self, tables: Tables, clock: Clock, on_commit: Callable[[int], None] | None = None
    ) -> None:
        self._tables = tables
        self._clock = clock
        self._on_commit = on_commit or (lambda _rev: None)
        meta = tables.meta()
        self.revision = meta.get("revision", 0)
        self.compact_revision = meta.get("compact_revision", 0)
        # Deadlines live in memory only: clock readings mean nothing across restarts, so a
        # reopened store gives every surviving lease a full TTL, as etcd does on leader change.
        now = clock()
        self._ttls = dict(tables.leases())
        self._deadlines = {lease: now + ttl for lease, ttl in self._ttls.items()}

    # -- writing --------------------------------------------------------------------------

    def _mutate(self, body: Callable[[_Batch], T]) -> tuple[T, int]:
        with self._tables.transaction():
            batch = _Batch(self._tables, self.revision + 1)
            result = body(batch)
            if batch.events:
                self._tables.append_events(batch.revision, batch.events)
                self._tables.set_meta("revision", batch.revision)
        if batch.events:
            self.revision = batch.revision
            self._on_commit(batch.revision)
        return result, self.revision

    def _check_leases(self, leases: list[int]) -> None:
        now = self._clock()
        for lease in leases:
            if self._deadlines.get(lease, now) <= now:
                raise NotFound(f"lease {lease} not found or expired")

    def put(self, key: str, value: bytes, expect: int | None, lease: int | None) -> int:
        self._check_leases(check_ops([PutOp(key, value, lease)]))
        if expect is not None:
            check_revision("expect_mod_revision", expect, minimum=0)

        def body(batch: _Batch) -> None:
            if expect is not None:
                current = self._tables.get(key)
                actual = current.mod_revision if current else 0
                if actual != expect:
                    raise RevisionMismatch(key, expect, actual)
            batch.put(key, value, lease)

        return self._mutate(body)[1]

    def delete(self, key: str, expect: int | None) -> bool:
        check_key(key)
        if expect is not None:
            check_revision("expect_mod_revision", expect, minimum=0)

        def body(batch: _Batch) -> bool:
            current = self._tables.get(key)
            actual = current.mod_revision if current else 0
            if expect is not None and actual != expect:
                raise RevisionMismatch(key, expect, actual)
            if current is not None:
                batch.delete(current)
            return current is not None

        return self._mutate(body)[0]

    def delete_prefix(self, prefix: str) -> int:
        if not check_prefix(prefix):
            raise Invalid("delete_prefix needs a non-empty prefix")

        def body(batch: _Batch) -> int:
            doomed = self._tables.scan(prefix, None, None)
            for kv in doomed:
                batch.delete(kv)
            return len(doomed)

        return self._mutate(body)[0]

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        for compare in compares:
            if not isinstance(compare, Compare):
                raise Invalid(f"not a Compare: {compare!r}")
            check_key(compare.key)
        check_ops(success)
        check_ops(failure)

        def body(batch: _Batch) -> tuple[bool, list[OpResponse]]:
            ok = all(self._holds(c) for c in compares)
            ops = success if ok else failure
            self._check_leases([op.lease for op in ops if isinstance(op, PutOp) and op.lease])
            return ok, [self._apply(batch, op) for op in ops]

        (ok, responses), revision = self._mutate(body)
        return TxnResult(ok, revision, tuple(responses))

    def _holds(self, compare: Compare) -> bool:
        kv = self._tables.get(compare.key)
        if compare.target == "value":
            return kv is not None and _compare(kv.value, compare.op, compare.operand)
        actual: int = getattr(kv, compare.target) if kv else 0
        return _compare(actual, compare.op, compare.operand)

    def _apply(self, batch: _Batch, op: Op) -> OpResponse:
        if isinstance(op, PutOp):
            prev = batch.put(op.key, op.value, op.lease)
            return OpResponse(prev_kvs=(prev,) if prev else ())
        found = self._read(op.key, op.prefix)
        if isinstance(op, GetOp):
            return OpResponse(kvs=tuple(found))
        for kv in found:
            batch.delete(kv)
        return OpResponse(prev_kvs=tuple(found))

    def _read(self, key: str, prefix: bool) -> list[KeyValue]:
        if prefix:
            return self._tables.scan(key, None, None)
        kv = self._tables.get(key)
        return [kv] if kv else []

    # -- reading --------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        return self._tables.get(check_key(key))

    def range(
        self, prefix: str, limit: int | None, revision: int | None, start_after: str | None
    ) -> tuple[list[KeyValue], int]:
        check_prefix(prefix)
        if limit is not None:
            check_revision("limit", limit, minimum=1)
        if start_after is not None:
            check_prefix(start_after)
        if revision is None or revision == self.revision:
            return self._tables.scan(prefix, start_after, limit), self.revision
        check_revision("revision", revision, minimum=0)
        if revision > self.revision:
            raise Invalid(f"revision {revision} is in the future (current {self.revision})")
        if revision < self.compact_revision:
            raise Compacted(revision, self.compact_revision)
        # Rewind the current state by undoing, newest first, every later event.
        state = {kv.key: kv for kv in self._tables.scan(prefix, None, None)}
        for _, event in reversed(self._tables.events_after((revision + 1, -1), prefix, None)):
            if event.prev_kv is None:
                state.pop(event.kv.key, None)
            else:
                state[event.kv.key] = event.prev_kv
        keys = sorted(k for k in state if start_after is None or k > start_after)
        return [state[k] for k in keys[:limit]], revision

    def read_events(
        self, prefix: str, position: Position, limit: int
    ) -> list[tuple[Position, Event]]:
        """Events under `prefix` after `position`; `Compacted` if some may be gone."""
        if position[0] < self.compact_revision:
            raise Compacted(position[0], self.compact_revision)
        return self._tables.events_after(position, prefix, limit)

    # -- leases and compaction --------------------------------------------------------------

    def lease_grant(self, ttl: float) -> int:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise Invalid(f"a lease TTL must be a positive number of seconds, got {ttl!r}")

        def body(_batch: _Batch) -> int:
            lease = self._tables.meta().get("next_lease", 1)
            self._tables.set_meta("next_lease", lease + 1)
            self._tables.add_lease(lease, float(ttl))
            return lease

        lease = self._mutate(body)[0]
        self._ttls[lease] = float(ttl)
        self._deadlines[lease] = self._clock() + ttl
        return lease

    def lease_keepalive(self, lease: int) -> float:
        self._check_leases([lease])
        self._deadlines[lease] = self._clock() + self._ttls[lease]
        return self._ttls[lease]

    def lease_revoke(self, lease: int) -> None:
        if lease not in self._ttls:
            raise NotFound(f"lease {lease} not found")

        def body(batch: _Batch) -> None:
            for kv in self._tables.lease_keys(lease):
                batch.delete(kv)
            self._tables.remove_lease(lease)

        self._mutate(body)
        del self._ttls[lease], self._deadlines[lease]

    def expire_leases(self) -> list[int]:
        now = self._clock()
        expired = sorted(lease for lease, deadline in self._deadlines.items() if deadline <= now)
        for lease in expired:
            self.lease_revoke(lease)
        return expired

    def compact(self, revision: int) -> None:
        check_revision("compact revision", revision, minimum=0)
        if revision > self.revision:
            raise Invalid(f"cannot compact to {revision}: current revision is {self.revision}")
        if revision <= self.compact_revision:
            return

        def body(_batch: _Batch) -> None:
            self._tables.drop_events_before(revision)
            self._tables.set_meta("compact_revision", revision)

        self._mutate(body)
        self.compact_revision = revision
