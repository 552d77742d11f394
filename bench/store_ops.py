"""Store benchmark (not a test): puts/s, CAS txns/s, listing 10,000 records, watch latency.

    .venv/bin/python bench/store_ops.py [--n 3000]

Runs each backend (SQLite with synchronous=FULL and NORMAL, memory) and prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from shoal.store.base import Compare, PutOp, Store
from shoal.store.memory import MemoryStore
from shoal.store.sqlite import SqliteStore

RECORD = json.dumps(
    {"id": "t" * 24, "service": "web", "state": "running", "spec": {"env": ["X=" + "y" * 40] * 18}}
).encode()


async def puts_per_second(store: Store, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await store.put(f"bench/put/{i % 500}", RECORD)
    return n / (time.perf_counter() - start)


async def concurrent_puts_per_second(store: Store, n: int, writers: int = 16) -> float:
    async def writer(w: int) -> None:
        for i in range(n // writers):
            await store.put(f"bench/conc/{w}/{i % 50}", RECORD)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return (n // writers * writers) / (time.perf_counter() - start)


async def cas_per_second(store: Store, n: int) -> float:
    await store.put("bench/cas", b"0")
    start = time.perf_counter()
    for _ in range(n):
        kv = await store.get("bench/cas")
        assert kv is not None
        result = await store.txn(
            [Compare.mod_revision(kv.key, "==", kv.mod_revision)],
            [PutOp(kv.key, str(int(kv.value) + 1).encode())],
            [],
        )
        assert result.succeeded
    return n / (time.perf_counter() - start)


async def list_ms(store: Store, count: int = 10_000) -> float:
    for start in range(0, count, 1_000):
        ops = [PutOp(f"bench/tasks/{i:06}", RECORD) for i in range(start, start + 1_000)]
        await store.txn([], list(ops), [])
    await store.put("bench/tasksx", RECORD)  # a neighbour the prefix must not return
    timings = []
    for _ in range(7):
        began = time.perf_counter()
        kvs, _ = await store.range("bench/tasks/")
        timings.append((time.perf_counter() - began) * 1000)
        assert len(kvs) == count
    return statistics.median(timings)


async def watch_latency_ms(store: Store, n: int) -> tuple[float, float]:
    """Median and p99 from calling put() to the watcher holding the event."""
    sent: dict[int, float] = {}
    got: list[float] = []
    events = store.watch("bench/lat/")

    async def consume() -> None:
        async for event in events:
            got.append((time.perf_counter() - sent[int(event.kv.value)]) * 1000)
            if len(got) == n:
                return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    for i in range(n):
        sent[i] = time.perf_counter()
        await store.put("bench/lat/k", str(i).encode())
        await asyncio.sleep(0)  # let the watcher run, as it would between requests
    await consumer
    got.sort()
    return statistics.median(got), got[int(len(got) * 0.99) - 1]


def backends(tmp: Path) -> dict[str, Callable[[], AbstractAsyncContextManager[Store]]]:
    @asynccontextmanager
    async def sqlite(durability: str) -> AsyncIterator[Store]:
        path = tmp / f"{durability}.db"
        async with SqliteStore.open(path, durability=durability) as store:  # type: ignore[arg-type]
            yield store

    return {
        "sqlite FULL": lambda: sqlite("full"),
        "sqlite NORMAL": lambda: sqlite("normal"),
        "memory": lambda: MemoryStore.open(),
    }


async def main(n: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        for name, opener in backends(Path(tmp)).items():
            async with opener() as store:
                puts = await puts_per_second(store, n)
                conc = await concurrent_puts_per_second(store, n)
                cas = await cas_per_second(store, n)
                listing = await list_ms(store)
                p50, p99 = await watch_latency_ms(store, min(n, 1_000))
            rows.append((name, puts, conc, cas, listing, p50, p99))
    print(f"record size {len(RECORD)} bytes, {n} operations per measurement")
    header = ("backend", "puts/s", "puts/s x16", "CAS txn/s", "list 10k ms", "watch p50 ms", "p99")
    print("{:<14} {:>9} {:>11} {:>10} {:>12} {:>13} {:>7}".format(*header))
    for name, puts, conc, cas, listing, p50, p99 in rows:
        print(
            f"{name:<14} {puts:>9,.0f} {conc:>11,.0f} {cas:>10,.0f} {listing:>12.1f}"
            f" {p50:>13.3f} {p99:>7.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3_000)
    asyncio.run(main(parser.parse_args().n))
