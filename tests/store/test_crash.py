"""`kill -9` a process in the middle of writing, many times: the store must come back whole.

The child (`crash_child.py`) moves money between accounts with compare-and-swap txns, writes
and deletes 2,000-key bulk txns, uses leases and compacts. After each kill we reopen the file
and check: the money adds up, bulk writes are all-or-nothing, nothing acknowledged was lost,
and the history (state at the compact revision + every later event) replays, gap-free, to the
current state with the invariant holding at every revision.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from shoal.store.base import Compacted, Event, EventType, KeyValue
from shoal.store.sqlite import SqliteStore
from shoal.store.testsuite import close

CHILD = Path(__file__).with_name("crash_child.py")
ACCOUNTS, START, BULK = 10, 100, 2_000
ROUNDS = 8


async def drain(events: AsyncIterator[Event], until: int) -> list[Event]:
    """Every event of the watch up to and including all of revision `until`."""
    out: list[Event] = []
    try:
        while not out or out[-1].revision < until:
            out.append(await asyncio.wait_for(anext(events), 5))
        while True:  # the rest of `until`, which follows at once
            out.append(await asyncio.wait_for(anext(events), 0.05))
    except TimeoutError:
        assert out[-1].revision == until, "the history stops early"
        return out
    finally:
        await close(events)


def check_invariants(state: dict[str, KeyValue]) -> None:
    bank = [int(state[f"bank/{i}"].value) for i in range(ACCOUNTS)]
    assert sum(bank) == ACCOUNTS * START and min(bank) >= 0, bank
    assert sum(k.startswith("bulk/") for k in state) in (0, BULK)


async def check(path: Path) -> int:
    async with SqliteStore.open(path) as store:
        revision = await store.current_revision()
        kvs, header = await store.range("")
        assert header == revision
        state = {kv.key: kv for kv in kvs}
        check_invariants(state)
        assert max(kv.mod_revision for kv in kvs) <= revision
        for kv in kvs:
            if kv.key.startswith("session/"):
                assert kv.lease is not None
                await store.lease_keepalive(kv.lease)  # the lease was committed with its key

        events = store.watch("", start_revision=1)
        try:
            await anext(events)
            base_revision = 0
        except Compacted as exc:
            base_revision = exc.compact_revision
        finally:
            await close(events)
        base = (await store.range("", revision=base_revision))[0] if base_revision else []
        replay = {kv.key: kv for kv in base}
        history = await drain(store.watch("", start_revision=base_revision + 1), revision)
        assert sorted({e.revision for e in history}) == list(range(base_revision + 1, revision + 1))
        for i, event in enumerate(history):
            assert event.prev_kv == replay.get(event.kv.key), f"history disagrees at {event}"
            if event.type is EventType.PUT:
                replay[event.kv.key] = event.kv
            else:
                del replay[event.kv.key]
            last_of_revision = i + 1 == len(history) or history[i + 1].revision != event.revision
            if last_of_revision and "bank/0" in replay:
                check_invariants(replay)  # holds after every revision, not just the last
        assert replay == state
        return revision


def test_kill_9_leaves_a_consistent_store(tmp_path: Path) -> None:
    path, acks = tmp_path / "crash.db", tmp_path / "acks"
    delays = random.Random(20_240_601)
    previous = 0
    for round_ in range(ROUNDS):
        durability = "full" if round_ % 2 == 0 else "normal"
        command = [sys.executable, str(CHILD), str(path), str(acks), str(round_), durability]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            assert child.stdout is not None and child.stderr is not None
            ready = child.stdout.readline()
            assert ready == "ready\n", child.stderr.read()
            time.sleep(delays.uniform(0.05, 0.5))
            assert child.poll() is None, f"the child died on its own: {child.stderr.read()}"
            child.send_signal(signal.SIGKILL)
            assert child.wait() == -signal.SIGKILL
        acknowledged = [int(line) for line in acks.read_text().split("\n")[:-1]]
        revision = asyncio.run(check(path))
        assert revision >= max(acknowledged), "an acknowledged write was lost"
        assert revision > previous, "the child made progress"
        previous = revision
