"""Upkeep a store owner runs in the background: lease expiry and automatic compaction.

Both work through the `Store` protocol only, so any backend gets them. The owner starts
`run_maintenance` in its own `asyncio.TaskGroup` and cancels it before closing the store:

    async with SqliteStore.open(path) as store, asyncio.TaskGroup() as tg:
        tg.create_task(run_maintenance(store, Compactor(store, CompactionPolicy())))
        ...
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from shoal.model.errors import Invalid

from .base import Clock, Store


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """How much history to keep: at least the last `keep_revisions` revisions and at least the
    last `keep_seconds` of history. Keeping the union means a watcher that fell behind by
    either measure can still resume. `None` turns a limit off; both `None` never compacts.
    """

    keep_revisions: int | None = 10_000
    keep_seconds: float | None = 600.0

    def __post_init__(self) -> None:
        if self.keep_revisions is not None and self.keep_revisions < 1:
            raise Invalid(f"keep_revisions must be >= 1, got {self.keep_revisions}")
        if self.keep_seconds is not None and self.keep_seconds <= 0:
            raise Invalid(f"keep_seconds must be > 0, got {self.keep_seconds}")


class Compactor:
    """Applies a `CompactionPolicy` each time `tick()` is called (etcd's periodic compactor).

    Revisions carry no timestamps, so the time limit works from samples: every tick records
    (now, current revision); revisions up to a sample taken at least `keep_seconds` ago are
    all older than that and may go.
    """

    def __init__(
        self, store: Store, policy: CompactionPolicy, *, clock: Clock = time.monotonic
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._compacted = 0

    async def tick(self) -> int | None:
        """Compact if the policy lets more history go; returns the new compact revision."""
        now = self._clock()
        current = await self._store.current_revision()
        self._samples.append((now, current))
        targets: list[int] = []
        if self._policy.keep_revisions is not None:
            targets.append(current - self._policy.keep_revisions + 1)
        if self._policy.keep_seconds is not None:
            expired = self._expired_revision(now - self._policy.keep_seconds)
            targets.append(expired + 1 if expired else 0)
        if not targets:
            return None
        target = min(min(targets), current)
        if target <= max(self._compacted, 1):  # compacting to 1 would drop nothing
            return None
        await self._store.compact(target)
        self._compacted = target
        return target

    def _expired_revision(self, cutoff: float) -> int:
        """The newest revision known to be committed at or before `cutoff` (0 if none)."""
        newest = None
        while self._samples and self._samples[0][0] <= cutoff:
            newest = self._samples.popleft()
        if newest is None:
            return 0
        self._samples.appendleft(newest)  # still the reference until a newer sample ages out
        return newest[1]


async def run_maintenance(
    store: Store, compactor: Compactor | None = None, *, interval: float = 0.5
) -> None:
    """Expire leases and compact every `interval` seconds until cancelled.

    A lease therefore lives up to `interval` past its TTL; keep it small against the TTLs used.
    """
    while True:
        await store.expire_leases()
        if compactor is not None:
            await compactor.tick()
        await asyncio.sleep(interval)
