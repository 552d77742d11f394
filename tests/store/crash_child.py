"""Child process for test_crash: moves money between accounts in txns until it is killed.

Usage: crash_child.py DB ACK_FILE SEED DURABILITY. After every acknowledged write it appends
the revision to ACK_FILE (no fsync: a killed process's writes survive in the page cache), so
the parent can check that nothing acknowledged was lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

from shoal.store.base import Compare, PutOp
from shoal.store.sqlite import SqliteStore

ACCOUNTS = 10
START = 100
BULK = 2_000


async def main(path: str, ack_path: str, seed: int, durability: str) -> None:
    rng = random.Random(seed)
    ack = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        async with SqliteStore.open(path, durability=durability) as store:  # type: ignore[arg-type]
            opening = [PutOp(f"bank/{i}", str(START).encode()) for i in range(ACCOUNTS)]
            await store.txn([Compare.missing("bank/0")], opening, [])
            print("ready", flush=True)
            lease = None
            n = 0
            while True:
                n += 1
                a, b = rng.sample(range(ACCOUNTS), 2)
                kva, kvb = await store.get(f"bank/{a}"), await store.get(f"bank/{b}")
                assert kva is not None and kvb is not None
                amount = rng.randint(0, int(kva.value))
                result = await store.txn(
                    [
                        Compare.mod_revision(kva.key, "==", kva.mod_revision),
                        Compare.mod_revision(kvb.key, "==", kvb.mod_revision),
                    ],
                    [
                        PutOp(kva.key, str(int(kva.value) - amount).encode()),
                        PutOp(kvb.key, str(int(kvb.value) + amount).encode()),
                        PutOp(f"journal/{n % 50:02}", f"{a}->{b}:{amount}".encode()),
                    ],
                    [],
                )
                assert result.succeeded
                os.write(ack, f"{result.revision}\n".encode())
                if n % 7 == 0:
                    await store.delete_prefix(f"journal/{rng.randint(0, 4)}")
                if n % 25 == 0:
                    if lease is not None:
                        await store.lease_revoke(lease)
                    lease = await store.lease_grant(1_000)
                    await store.put(f"session/{n}", b"alive", lease=lease)
                if n % 40 == 0:  # big commits make a kill in the middle of one likely
                    bulk = [PutOp(f"bulk/{i:04}", b"x" * 200) for i in range(BULK)]
                    await store.txn([], bulk, [])
                if n % 40 == 20:
                    await store.delete_prefix("bulk/")
                if n % 100 == 0:
                    await store.compact(max(0, await store.current_revision() - 150))
    finally:
        os.close(ack)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
