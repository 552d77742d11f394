"""Conformance by model: hypothesis drives random operation sequences against a store and a
plain-dict model side by side.

The model predicts every event the store must emit. Watchers on overlapping prefixes pull
events a few at a time, disconnect and resume (from `last_seen + 1` at a revision boundary, or
from `last_seen` with de-duplication mid-revision), and re-list after `Compacted`. Each event
must equal the predicted one exactly, and a caught-up watcher's replayed state must equal both
the model and `range`. This is the test that catches lost or duplicated events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shoal.model.errors import NotFound

from ..base import (
    Compacted,
    Compare,
    DeleteOp,
    Event,
    EventType,
    GetOp,
    KeyValue,
    Op,
    PutOp,
    RevisionMismatch,
)
from .harness import FakeClock, SuiteBase, close

T = TypeVar("T")
KEYS = st.sampled_from(["a", "a/1", "a/2", "a/b/1", "ab", "b/1"])
VALUES = st.sampled_from([b"", b"0", b"1", b"\xff\x00"])
WATCH_PREFIXES = ("", "a/", "a", "b/")


@dataclass
class _Watcher:
    prefix: str
    events: AsyncIterator[Event] | None = None
    cursor: int = 0  # index in the model's log of the first event not yet delivered
    floor: int = 1  # the revision the store may still need history from
    skip: set[tuple[int, str]] = field(default_factory=set)
    state: dict[str, KeyValue] = field(default_factory=dict)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, suite: SuiteBase) -> None:
        super().__init__()
        self.suite = suite
        self.runner = asyncio.Runner()
        self.clock = FakeClock()
        self.context = suite.open_store(self.clock)
        self.store = self.runner.run(self.context.__aenter__())
        self.kv: dict[str, KeyValue] = {}
        self.revision = 0
        self.compacted = 0
        self.log: list[Event] = []  # every event ever, never compacted
        self.leases: dict[int, tuple[float, float]] = {}  # id -> (ttl, deadline)
        self.dead: set[int] = set()
        self.watchers = [_Watcher(prefix) for prefix in WATCH_PREFIXES]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(asyncio.wait_for(coro, 10))

    def teardown(self) -> None:
        try:
            for w in self.watchers:
                if w.events is not None:
                    self.run(close(w.events))
            self.run(self.context.__aexit__(None, None, None))
        finally:
            self.runner.close()

    # -- the model ------------------------------------------------------------------------

    def commit(self, changes: list[tuple[str, bytes | None, int | None]]) -> None:
        """Predict one revision: (key, value or None to delete, lease) in write order."""
        rev = self.revision + 1
        events = []
        for key, value, lease in changes:
            prev = self.kv.get(key)
            if value is None:
                if prev is not None:
                    del self.kv[key]
                    events.append(Event(EventType.DELETE, KeyValue(key, b"", 0, rev, 0), prev))
                continue
            create, version = (prev.create_revision, prev.version + 1) if prev else (rev, 1)
            self.kv[key] = KeyValue(key, value, create, rev, version, lease)
            events.append(Event(EventType.PUT, self.kv[key], prev))
        if events:
            self.revision = rev
            self.log += events

    def end_lease(self, lease: int) -> None:
        del self.leases[lease]
        self.dead.add(lease)
        self.commit([(k, None, None) for k in sorted(self.kv) if self.kv[k].lease == lease])

    def mod(self, key: str) -> int:
        kv = self.kv.get(key)
        return kv.mod_revision if kv else 0

    @invariant()
    def state_matches(self) -> None:
        kvs, revision = self.run(self.store.range(""))
        assert ({kv.key: kv for kv in kvs}, revision) == (self.kv, self.revision)
        assert self.run(self.store.current_revision()) == self.revision

    # -- writes ---------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, leased=st.booleans())
    def put(self, key: str, value: bytes, leased: bool) -> None:
        lease = min(self.leases) if leased and self.leases else None
        assert self.run(self.store.put(key, value, lease=lease)) == self.revision + 1
        self.commit([(key, value, lease)])

    @rule(key=KEYS, value=VALUES, right=st.booleans())
    def put_if_unchanged(self, key: str, value: bytes, right: bool) -> None:
        actual = self.mod(key)
        if right:
            self.run(self.store.put(key, value, expect_mod_revision=actual))
            self.commit([(key, value, None)])
            return
        with pytest.raises(RevisionMismatch) as info:
            self.run(self.store.put(key, value, expect_mod_revision=actual + 1))
        assert info.value.actual == actual

    @precondition(lambda self: bool(self.dead))
    @rule(key=KEYS)
    def put_with_dead_lease(self, key: str) -> None:
        with pytest.raises(NotFound):
            self.run(self.store.put(key, b"x", lease=max(self.dead)))

    @rule(key=KEYS, conditional=st.booleans())
    def delete(self, key: str, conditional: bool) -> None:
        expect = self.mod(key) if conditional else None
        assert self.run(self.store.delete(key, expect_mod_revision=expect)) == (key in self.kv)
        self.commit([(key, None, None)])

    @rule(prefix=st.sampled_from(["a/", "a/b/", "a", "b/"]))
    def delete_prefix(self, prefix: str) -> None:
        doomed = sorted(k for k in self.kv if k.startswith(prefix))
        assert self.run(self.store.delete_prefix(prefix)) == len(doomed)
        self.commit([(k, None, None) for k in doomed])

    @rule(
        key=KEYS,
        right=st.booleans(),
        writes=st.lists(st.tuples(KEYS, VALUES | st.none()), unique_by=lambda w: w[0], max_size=4),
        otherwise=KEYS,
    )
    def txn(
        self, key: str, right: bool, writes: list[tuple[str, bytes | None]], otherwise: str
    ) -> None:
        compare = Compare.mod_revision(key, "==", self.mod(key) + (0 if right else 1))
        ops: list[Op] = [PutOp(k, v) if v is not None else DeleteOp(k) for k, v in writes]
        ops.append(GetOp("a", prefix=True))
        result = self.run(self.store.txn([compare], ops, [PutOp(otherwise, b"f")]))
        assert result.succeeded == right
        self.commit([(k, v, None) for k, v in writes] if right else [(otherwise, b"f", None)])
        assert result.revision == self.revision
        if right:
            read = {kv.key: kv for kv in result.responses[-1].kvs}
            assert read == {k: kv for k, kv in self.kv.items() if k.startswith("a")}

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        if data.draw(st.booleans(), label="at the edge of what a watcher needs"):
            # Exactly where the off-by-one errors would be.
            floor = data.draw(st.sampled_from([w.floor for w in self.watchers]))
            revision = min(floor + data.draw(st.integers(0, 1)), self.revision)
        else:
            revision = data.draw(st.integers(0, self.revision))
        self.run(self.store.compact(revision))
        self.compacted = max(self.compacted, revision)

    # -- leases ---------------------------------------------------------------------------

    @rule(ttl=st.sampled_from([5.0, 10.0, 20.0]))
    def grant(self, ttl: float) -> None:
        lease = self.run(self.store.lease_grant(ttl))
        assert lease not in self.leases and lease not in self.dead
        self.leases[lease] = (ttl, self.clock() + ttl)

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def keepalive(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(sorted(self.leases)))
        ttl = self.leases[lease][0]
        assert self.run(self.store.lease_keepalive(lease)) == ttl
        self.leases[lease] = (ttl, self.clock() + ttl)

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(sorted(self.leases)))
        self.run(self.store.lease_revoke(lease))
        self.end_lease(lease)

    @rule(seconds=st.sampled_from([1.0, 4.0, 6.0, 11.0]))
    def pass_time(self, seconds: float) -> None:
        self.run(self.suite.pass_time(self.store, self.clock, seconds))
        for lease in sorted(self.leases):
            if self.leases[lease][1] <= self.clock():
                self.end_lease(lease)

    # -- watchers -------------------------------------------------------------------------

    @rule(which=st.integers(0, len(WATCH_PREFIXES) - 1))
    def disconnect(self, which: int) -> None:
        w = self.watchers[which]
        if w.events is not None:
            self.run(close(w.events))
            w.events = None

    @rule(which=st.integers(0, len(WATCH_PREFIXES) - 1))
    def catch_up(self, which: int) -> None:
        self.pull(which, len(self.log))

    @rule(which=st.integers(0, len(WATCH_PREFIXES) - 1), n=st.integers(1, 8))
    def pull(self, which: int, n: int) -> None:
        w = self.watchers[which]
        fresh = w.events is None
        if fresh:
            self.connect(w)
        pending = [i for i in range(w.cursor, len(self.log)) if self.matches(w, i)]
        if fresh and w.floor < self.compacted and not pending:
            pending = [len(self.log)]  # a new watch must fail at once, even with nothing to say
        for index in pending[:n]:
            try:
                # Short timeout: a missing event must fail fast, shrinking repeats it often.
                event = self.run(asyncio.wait_for(self.next_event(w), 2))
            except Compacted as exc:
                assert w.floor < self.compacted, f"needless Compacted at {w.floor}: {exc}"
                self.relist(w)
                return
            assert index < len(self.log), f"{w.prefix!r}: should have failed as compacted"
            assert not (fresh and w.floor < self.compacted), "a compacted start must fail"
            assert event == self.log[index], f"{w.prefix!r} watcher got a wrong event"
            if event.type is EventType.PUT:
                w.state[event.kv.key] = event.kv
            else:
                w.state.pop(event.kv.key, None)
            w.cursor, w.floor = index + 1, event.revision
        if len(pending) <= n:
            expected = {k: kv for k, kv in self.kv.items() if k.startswith(w.prefix)}
            assert w.state == expected, f"{w.prefix!r} watcher replays to another state"

    def matches(self, w: _Watcher, index: int) -> bool:
        return self.log[index].kv.key.startswith(w.prefix)

    def connect(self, w: _Watcher) -> None:
        """Resume where the watcher stopped: mid-revision, from that revision minus what it saw."""
        if w.cursor == len(self.log):
            start = self.revision + 1
        else:
            start = self.log[w.cursor].revision
            w.skip = {
                (start, e.kv.key)
                for e in self.log[: w.cursor]
                if e.revision == start and e.kv.key.startswith(w.prefix)
            }
        w.events = self.suite_watch(w.prefix, start)
        w.floor = start

    def relist(self, w: _Watcher) -> None:
        if w.events is not None:
            self.run(close(w.events))
        kvs, revision = self.run(self.store.range(w.prefix))
        w.state = {kv.key: kv for kv in kvs}
        w.cursor = next((i for i, e in enumerate(self.log) if e.revision > revision), len(self.log))
        w.skip = set()
        w.events = self.suite_watch(w.prefix, revision + 1)
        w.floor = revision + 1

    def suite_watch(self, prefix: str, start: int) -> AsyncIterator[Event]:
        return self.store.watch(prefix, start_revision=start)

    async def next_event(self, w: _Watcher) -> Event:
        assert w.events is not None
        while True:
            event = await anext(w.events)
            if (event.revision, event.kv.key) not in w.skip:
                return event
            w.skip.discard((event.revision, event.kv.key))


class ModelCases(SuiteBase):
    model_settings = settings(
        max_examples=40,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )

    def test_random_operations_match_a_model(self) -> None:
        suite = self

        class Machine(StoreMachine):
            def __init__(self) -> None:
                super().__init__(suite)

        run_state_machine_as_test(Machine, settings=self.model_settings)
