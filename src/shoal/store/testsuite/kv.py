"""Conformance cases for reads and writes: CRUD, revisions, ranges, compare-and-swap, txns."""

from __future__ import annotations

import asyncio

import pytest

from shoal.model.errors import Conflict, Invalid, NotFound

from ..base import Compacted, Compare, DeleteOp, GetOp, KeyValue, PutOp, RevisionMismatch, Store
from .harness import FakeClock, SuiteBase, case, values


class KVCases(SuiteBase):
    @case
    async def test_empty_store(self, store: Store, clock: FakeClock) -> None:
        assert await store.current_revision() == 0
        assert await store.get("nothing") is None
        assert await store.range("") == ([], 0)

    @case
    async def test_put_get_and_revisions(self, store: Store, clock: FakeClock) -> None:
        assert await store.put("k", b"v1") == 1
        assert await store.put("other", b"x") == 2
        assert await store.put("k", b"v2") == 3
        assert await store.get("k") == KeyValue("k", b"v2", 1, 3, 2, None)
        assert await store.current_revision() == 3
        assert await store.put("k", b"") == 4, "empty values are values"
        assert await store.get("k") == KeyValue("k", b"", 1, 4, 3, None)

    @case
    async def test_delete(self, store: Store, clock: FakeClock) -> None:
        await store.put("k", b"v")
        assert await store.delete("k") is True
        assert await store.current_revision() == 2
        assert await store.get("k") is None
        assert await store.delete("k") is False
        assert await store.current_revision() == 2, "deleting nothing takes no revision"
        assert await store.put("k", b"again") == 3
        assert await store.get("k") == KeyValue("k", b"again", 3, 3, 1, None), "a new life"

    @case
    async def test_range_is_a_plain_prefix_sorted_by_key(
        self, store: Store, clock: FakeClock
    ) -> None:
        keys = ["a/2", "ab", "a", "a/1", "a/10", "b/1", "a/é", "a/\U0001f41f", "a/\x7f", "a0"]
        for key in keys:
            await store.put(key, key.encode())
        kvs, revision = await store.range("a/")
        assert [kv.key for kv in kvs] == sorted(k for k in keys if k.startswith("a/"))
        assert revision == len(keys)
        assert [kv.key for kv in (await store.range(""))[0]] == sorted(keys)
        assert (await store.range("a/1"))[0][0].key == "a/1"
        assert [kv.key for kv in (await store.range("a/1"))[0]] == ["a/1", "a/10"]
        assert (await store.range("zzz"))[0] == []

    @case
    async def test_range_pages(self, store: Store, clock: FakeClock) -> None:
        for i in range(25):
            await store.put(f"p/{i:02}", b"x")
        await store.put("q", b"outside")
        page, snapshot = await store.range("p/", limit=10)
        seen = [kv.key for kv in page]
        while page:
            await store.put(f"p/{len(seen):02}x", b"lands in a later page")
            page, _ = await store.range("p/", limit=10, start_after=seen[-1], revision=snapshot)
            assert len(page) <= 10
            seen += [kv.key for kv in page]
        assert seen == [f"p/{i:02}" for i in range(25)], "paging a snapshot sees no later write"

    @case
    async def test_range_in_the_past(self, store: Store, clock: FakeClock) -> None:
        await store.put("h/a", b"1")  # 1
        await store.put("h/b", b"1")  # 2
        await store.put("h/a", b"2")  # 3
        await store.delete("h/b")  # 4
        await store.put("h/c", b"1")  # 5
        expected = {
            0: {},
            1: {"h/a": b"1"},
            2: {"h/a": b"1", "h/b": b"1"},
            3: {"h/a": b"2", "h/b": b"1"},
            4: {"h/a": b"2"},
            5: {"h/a": b"2", "h/c": b"1"},
        }
        for revision, state in expected.items():
            kvs, header = await store.range("h/", revision=revision)
            assert (values(kvs), header) == (state, revision)
        old = (await store.range("h/", revision=2))[0]
        assert old == [KeyValue("h/a", b"1", 1, 1, 1), KeyValue("h/b", b"1", 2, 2, 1)]
        with pytest.raises(Invalid):
            await store.range("h/", revision=6)
        await store.compact(3)
        with pytest.raises(Compacted) as info:
            await store.range("h/", revision=2)
        assert info.value.compact_revision == 3
        assert values((await store.range("h/", revision=3))[0]) == expected[3]

    @case
    async def test_put_compare_and_swap(self, store: Store, clock: FakeClock) -> None:
        assert await store.put("cas", b"1", expect_mod_revision=0) == 1
        with pytest.raises(RevisionMismatch) as info:
            await store.put("cas", b"2", expect_mod_revision=0)
        assert (info.value.key, info.value.expected, info.value.actual) == ("cas", 0, 1)
        assert isinstance(info.value, Conflict)
        assert "cas" in str(info.value)
        assert await store.put("cas", b"2", expect_mod_revision=1) == 2
        with pytest.raises(Conflict, match="cas"):
            await store.put("cas", b"3", expect_mod_revision=1)
        with pytest.raises(RevisionMismatch):
            await store.put("absent", b"3", expect_mod_revision=2)
        assert await store.current_revision() == 2, "failed writes take no revision"
        assert (await store.get("cas")) == KeyValue("cas", b"2", 1, 2, 2)

    @case
    async def test_delete_compare_and_swap(self, store: Store, clock: FakeClock) -> None:
        await store.put("d", b"1")
        with pytest.raises(RevisionMismatch) as info:
            await store.delete("d", expect_mod_revision=7)
        assert (info.value.expected, info.value.actual) == (7, 1)
        assert await store.delete("d", expect_mod_revision=1) is True
        assert await store.delete("d", expect_mod_revision=0) is False
        with pytest.raises(RevisionMismatch):
            await store.delete("d", expect_mod_revision=1)

    @case
    async def test_concurrent_compare_and_swap_loses_no_update(
        self, store: Store, clock: FakeClock
    ) -> None:
        async def increment(times: int) -> None:
            for _ in range(times):
                while True:
                    kv = await store.get("counter")
                    n, rev = (int(kv.value), kv.mod_revision) if kv else (0, 0)
                    try:
                        await store.put("counter", str(n + 1).encode(), expect_mod_revision=rev)
                        break
                    except RevisionMismatch:
                        continue

        await asyncio.gather(*(increment(20) for _ in range(5)))
        kv = await store.get("counter")
        assert kv is not None and (kv.value, kv.version) == (b"100", 100)

    @case
    async def test_delete_prefix(self, store: Store, clock: FakeClock) -> None:
        for key in ("s/1", "s/2", "s/3/x", "s", "sa"):
            await store.put(key, b"x")
        assert await store.delete_prefix("s/") == 3
        assert await store.current_revision() == 6, "one revision for all"
        assert sorted(values((await store.range(""))[0])) == ["s", "sa"]
        assert await store.delete_prefix("s/") == 0
        assert await store.current_revision() == 6
        with pytest.raises(Invalid):
            await store.delete_prefix("")

    @case
    async def test_txn_compares(self, store: Store, clock: FakeClock) -> None:
        await store.put("t", b"b")  # 1
        await store.put("t", b"b")  # 2: t is create 1, mod 2, version 2
        holds = [
            Compare.mod_revision("t", "==", 2),
            Compare.mod_revision("t", "<", 3),
            Compare.create_revision("t", "==", 1),
            Compare.version("t", ">", 1),
            Compare.version("t", "!=", 3),
            Compare.value("t", "==", b"b"),
            Compare.value("t", ">", b"a"),
            Compare.value("t", "<", b"c"),
            Compare.exists("t"),
            Compare.missing("nope"),
            Compare.mod_revision("nope", "==", 0),
        ]
        fails = [
            Compare.mod_revision("t", "==", 1),
            Compare.version("t", "<", 2),
            Compare.value("t", "!=", b"b"),
            Compare.value("nope", "!=", b"b"),
            Compare.missing("t"),
            Compare.exists("nope"),
        ]
        for compare in holds:
            assert (await store.txn([compare], [], [])).succeeded, compare
        for compare in fails:
            assert not (await store.txn([compare], [], [])).succeeded, compare
        assert not (await store.txn(holds + fails[:1], [], [])).succeeded, "all must hold"
        assert await store.current_revision() == 2, "txns without writes take no revision"

    @case
    async def test_txn_branches_write_at_one_revision(self, store: Store, clock: FakeClock) -> None:
        await store.put("x", b"1")  # 1
        await store.put("y", b"1")  # 2
        result = await store.txn(
            [Compare.mod_revision("x", "==", 1)],
            [PutOp("x", b"2"), DeleteOp("y"), PutOp("z", b"1"), GetOp("x"), GetOp("", prefix=True)],
            [PutOp("failed", b"1")],
        )
        assert result.succeeded and result.revision == 3
        put_x, delete_y, put_z, get_x, get_all = result.responses
        assert put_x.prev_kvs == (KeyValue("x", b"1", 1, 1, 1),)
        assert delete_y.prev_kvs == (KeyValue("y", b"1", 2, 2, 1),)
        assert put_z.prev_kvs == ()
        assert get_x.kvs == (KeyValue("x", b"2", 1, 3, 2),), "reads see earlier ops"
        assert [kv.key for kv in get_all.kvs] == ["x", "z"]
        result = await store.txn([Compare.mod_revision("x", "==", 1)], [], [PutOp("f", b"")])
        assert not result.succeeded and result.revision == 4
        assert values((await store.range(""))[0]) == {"x": b"2", "z": b"1", "f": b""}

    @case
    async def test_txn_is_atomic(self, store: Store, clock: FakeClock) -> None:
        await store.put("keep", b"1")
        with pytest.raises(NotFound):
            await store.txn([], [PutOp("a", b"1"), PutOp("b", b"1", lease=424242)], [])
        with pytest.raises(Invalid):
            await store.txn([], [PutOp("a", b"1"), PutOp("a", b"2")], [])
        with pytest.raises(Invalid):
            await store.txn([], [PutOp("d/1", b"1"), DeleteOp("d/", prefix=True)], [])
        assert await store.current_revision() == 1
        assert values((await store.range(""))[0]) == {"keep": b"1"}

    @case
    async def test_invalid_input_is_refused(self, store: Store, clock: FakeClock) -> None:
        bad_calls = [
            store.put("", b"x"),
            store.put("k", "text"),  # type: ignore[arg-type]
            store.put("\ud800", b"x"),
            store.put("k", b"x", expect_mod_revision=-1),
            store.get(""),
            store.range("", limit=0),
            store.lease_grant(0),
            store.compact(5),
        ]
        for call in bad_calls:
            with pytest.raises(Invalid):
                await call
        with pytest.raises(Invalid):
            Compare.value("k", "==", 3)  # type: ignore[arg-type]
        with pytest.raises(Invalid):
            Compare.version("k", "==", b"3")  # type: ignore[arg-type]
        assert await store.current_revision() == 0

    @case
    async def test_ten_thousand_keys(self, store: Store, clock: FakeClock) -> None:
        record = b"{" + b'"x": 1, ' * 120 + b"}"
        for start in range(0, 10_000, 1_000):
            ops: list[PutOp | DeleteOp | GetOp] = [
                PutOp(f"tasks/{i:05}", record) for i in range(start, start + 1_000)
            ]
            await store.txn([], ops, [])
        kvs, revision = await store.range("tasks/")
        assert len(kvs) == 10_000 and revision == 10
        assert [kv.key for kv in kvs] == sorted(kv.key for kv in kvs)
