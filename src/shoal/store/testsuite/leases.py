"""Conformance cases for leases: expiry by the clock, keepalive, revoke, attachment rules."""

from __future__ import annotations

import pytest

from shoal.model.errors import NotFound

from ..base import PutOp, Store
from .harness import FakeClock, SuiteBase, assert_quiet, case, summary, take, values


class LeaseCases(SuiteBase):
    @case
    async def test_lease_expiry_deletes_its_keys(self, store: Store, clock: FakeClock) -> None:
        lease = await store.lease_grant(10)
        await store.put("l/a", b"1", lease=lease)  # 1
        await store.txn([], [PutOp("l/b", b"1", lease=lease), PutOp("l/c", b"1")], [])  # 2
        kv = await store.get("l/a")
        assert kv is not None and kv.lease == lease
        events = store.watch("l/", start_revision=3)
        await self.pass_time(store, clock, 9)
        assert sorted(values((await store.range("l/"))[0])) == ["l/a", "l/b", "l/c"]
        await self.pass_time(store, clock, 2)
        assert summary(await take(events, 2)) == [
            ("DELETE", 3, "l/a", b""),
            ("DELETE", 3, "l/b", b""),
        ]
        await assert_quiet(events)
        assert values((await store.range("l/"))[0]) == {"l/c": b"1"}
        with pytest.raises(NotFound):
            await store.lease_keepalive(lease)
        with pytest.raises(NotFound):
            await store.put("l/d", b"1", lease=lease)
        with pytest.raises(NotFound):
            await store.lease_revoke(lease)

    @case
    async def test_keepalive_extends_the_lease(self, store: Store, clock: FakeClock) -> None:
        lease = await store.lease_grant(10)
        await store.put("k", b"1", lease=lease)
        for _ in range(5):
            await self.pass_time(store, clock, 6)
            assert await store.lease_keepalive(lease) == 10
        assert await store.get("k") is not None, "kept alive for 30s on a 10s TTL"
        await self.pass_time(store, clock, 9)
        assert await store.get("k") is not None
        await self.pass_time(store, clock, 2)
        assert await store.get("k") is None

    @case
    async def test_revoke_deletes_keys_at_one_revision(
        self, store: Store, clock: FakeClock
    ) -> None:
        lease = await store.lease_grant(60)
        other = await store.lease_grant(60)
        assert lease != other
        for key in ("r/b", "r/a", "r/c"):
            await store.put(key, b"1", lease=lease)
        await store.put("r/other", b"1", lease=other)
        events = store.watch("r/", start_revision=5)
        await store.lease_revoke(lease)
        assert summary(await take(events, 3)) == [
            ("DELETE", 5, "r/a", b""),
            ("DELETE", 5, "r/b", b""),
            ("DELETE", 5, "r/c", b""),
        ]
        assert values((await store.range("r/"))[0]) == {"r/other": b"1"}
        with pytest.raises(NotFound):
            await store.lease_revoke(lease)
        with pytest.raises(NotFound):
            await store.lease_keepalive(lease)
        empty = await store.lease_grant(60)
        await store.lease_revoke(empty)
        assert await store.current_revision() == 5, "revoking a lease without keys writes nothing"
        await assert_quiet(events)

    @case
    async def test_a_put_moves_or_detaches_the_key(self, store: Store, clock: FakeClock) -> None:
        first = await store.lease_grant(60)
        second = await store.lease_grant(60)
        await store.put("moved", b"1", lease=first)
        await store.put("moved", b"2", lease=second)
        await store.put("detached", b"1", lease=first)
        await store.put("detached", b"2")
        await store.lease_revoke(first)
        assert values((await store.range(""))[0]) == {"moved": b"2", "detached": b"2"}
        await store.lease_revoke(second)
        assert values((await store.range(""))[0]) == {"detached": b"2"}

    @case
    async def test_lease_ids_are_never_reused(self, store: Store, clock: FakeClock) -> None:
        seen: set[int] = set()
        for _ in range(5):
            lease = await store.lease_grant(1)
            assert lease not in seen
            seen.add(lease)
            await store.lease_revoke(lease)
        with pytest.raises(NotFound):
            await store.put("k", b"1", lease=max(seen) + 1000)
