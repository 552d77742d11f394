"""The `Store` protocol: a key-value store shaped like etcd v3.

Keys are strings, values are bytes. Every write transaction advances one global `revision`
(an int starting at 1; an empty store is at revision 0) and every key remembers the revision
that created it, the revision that last changed it and how many times it changed since it was
created (`version`). Writes can be made conditional on those numbers (compare-and-swap), a
watcher can follow every change under a prefix from any revision still in history, and keys can
be tied to a lease that dies when its owner stops renewing it.

Guarantees every backend gives (the conformance suite in `testsuite.py` checks them):

* revisions are gap-free: every revision has at least one event, and writes that change nothing
  (a txn of reads, a delete of a missing key) do not consume a revision;
* one key changes at most once per revision, so `(event.revision, event.kv.key)` names an event;
* a watch yields the events of one revision back to back, in the order the txn wrote them
  (a prefix delete or a lease revoke deletes in key order).
  Resuming from `last_seen + 1` is gap-free when the consumer stopped after the last event of
  a revision; a consumer that can stop mid-revision resumes from `last_seen` and skips the
  `(revision, key)` pairs it already handled.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from shoal.model.errors import Conflict, Invalid

Clock = Callable[[], float]
"""Seconds as a float; only differences matter (leases and compaction compare two readings)."""

CompareTarget = Literal["mod_revision", "create_revision", "version", "value"]
CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as stored at `mod_revision`."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int | None = None


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one key.

    For DELETE, `kv` is a tombstone (empty value, version 0, `mod_revision` = the deleting
    revision) and `prev_kv` is what was deleted. For PUT, `prev_kv` is the value it replaced.
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a txn, evaluated against the state before the txn.

    A missing key has mod/create revision and version 0; any `value` compare on it is false.
    """

    key: str
    target: CompareTarget
    op: CompareOp
    operand: int | bytes

    def __post_init__(self) -> None:
        wants_bytes = self.target == "value"
        if wants_bytes != isinstance(self.operand, bytes) or isinstance(self.operand, bool):
            kind = "bytes" if wants_bytes else "an int"
            raise Invalid(f"compare on {self.target} of {self.key!r} needs {kind} operand")
        if self.op not in ("==", "!=", "<", ">"):
            raise Invalid(f"unknown compare operator {self.op!r}")

    @classmethod
    def mod_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, "mod_revision", op, revision)

    @classmethod
    def create_revision(cls, key: str, op: CompareOp, revision: int) -> Compare:
        return cls(key, "create_revision", op, revision)

    @classmethod
    def version(cls, key: str, op: CompareOp, version: int) -> Compare:
        return cls(key, "version", op, version)

    @classmethod
    def value(cls, key: str, op: CompareOp, value: bytes) -> Compare:
        return cls(key, "value", op, value)

    @classmethod
    def exists(cls, key: str) -> Compare:
        return cls(key, "version", ">", 0)

    @classmethod
    def missing(cls, key: str) -> Compare:
        return cls(key, "version", "==", 0)


@dataclass(frozen=True, slots=True)
class PutOp:
    key: str
    value: bytes
    lease: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete `key`, or every key starting with `key` when `prefix` is true."""

    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class GetOp:
    """Read `key`, or every key starting with `key` when `prefix` is true.

    Reads inside a txn see the writes of earlier ops of the same txn.
    """

    key: str
    prefix: bool = False


Op = PutOp | DeleteOp | GetOp


@dataclass(frozen=True, slots=True)
class OpResponse:
    """`kvs`: what a GetOp read. `prev_kvs`: what a PutOp replaced or a DeleteOp deleted."""

    kvs: tuple[KeyValue, ...] = ()
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnResult:
    """`revision` is the txn's own revision if it wrote, else the revision it read at."""

    succeeded: bool
    revision: int
    responses: tuple[OpResponse, ...]


class RevisionMismatch(Conflict):
    """A conditional put/delete found another mod_revision than the caller expected."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        what = "to be absent" if expected == 0 else f"at mod_revision {expected}"
        found = "absent" if actual == 0 else f"at mod_revision {actual}"
        super().__init__(
            f"{key}: expected {what}, found {found}",
            hint="someone else wrote it first: read it again and retry",
        )
        self.key = key
        self.expected = expected
        self.actual = actual


class Compacted(Conflict):
    """History before `compact_revision` is gone; list again and watch from the list's revision."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} is compacted (history starts at {compact_revision})",
            hint="list the keys again and watch from the revision of that list + 1",
        )
        self.requested = requested
        self.compact_revision = compact_revision


class Store(Protocol):
    """An etcd-shaped store. All methods may raise `Unavailable` when the backend is gone."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(
        self,
        prefix: str,
        *,
        limit: int | None = None,
        revision: int | None = None,
        start_after: str | None = None,
    ) -> tuple[list[KeyValue], int]:
        """Keys starting with `prefix` (plain string prefix: `a/` does not match `ab`), sorted.

        Returns the keys and the revision they were read at. `revision` reads the past (raises
        `Compacted` below the compact revision, `Invalid` beyond the current one); together
        with `start_after` (keys strictly greater) and `limit` it pages through a consistent
        snapshot.
        """
        ...

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        expect_mod_revision: int | None = None,
        lease: int | None = None,
    ) -> int:
        """Write `key`; returns the new revision. `expect_mod_revision=0` means "must not
        exist"; a mismatch raises `RevisionMismatch` (a `Conflict`). A put without `lease`
        detaches the key from any lease it had; an unknown or expired lease raises `NotFound`.
        """
        ...

    async def delete(self, key: str, *, expect_mod_revision: int | None = None) -> bool:
        """True if the key existed and is now deleted. Raises `RevisionMismatch` on mismatch."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under a non-empty prefix at one revision; returns how many."""
        ...

    async def txn(self, compares: list[Compare], success: list[Op], failure: list[Op]) -> TxnResult:
        """If all compares hold run `success`, else `failure`, atomically at one revision.

        A key may be written at most once per branch (`Invalid` otherwise).
        """
        ...

    def watch(self, prefix: str, *, start_revision: int | None = None) -> AsyncIterator[Event]:
        """Every event under `prefix` with revision >= `start_revision`, then live ones.

        Without `start_revision` the watch starts after the revision current when it is
        established (no later than its first `__anext__`; in-process backends: at the call).
        Raises `Compacted` if the history it needs is gone (also mid-stream, if compaction
        overtakes a slow watcher) and `Unavailable` when the store closes.
        """
        ...

    async def lease_grant(self, ttl: float) -> int:
        """A new lease alive for `ttl` seconds unless kept alive; returns its id."""
        ...

    async def lease_keepalive(self, lease_id: int) -> float:
        """Restart the lease's TTL; returns the TTL. `NotFound` if unknown or expired."""
        ...

    async def lease_revoke(self, lease_id: int) -> None:
        """End the lease now, deleting its keys (DELETE events, one revision)."""
        ...

    async def expire_leases(self) -> list[int]:
        """Revoke every lease whose TTL ran out by the store's clock; returns their ids.

        Called by the owner's maintenance loop (and by tests with a fake clock). A backend that
        expires leases itself (etcd) makes this a no-op.
        """
        ...

    async def compact(self, revision: int) -> None:
        """Drop history older than `revision`. No-op at or below the current compact revision."""
        ...

    async def current_revision(self) -> int: ...
