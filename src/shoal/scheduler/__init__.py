"""The scheduler: pure placement of pending tasks onto nodes from a snapshot of the cluster.

`schedule(Snapshot(nodes, tasks, pending, now))` returns one `Decision` per pending task: a
node, or `node_id=None` with per-filter reasons. It imports only `shoal.model`; the loop that
reads the store and commits decisions (with compare-and-swap) lives elsewhere.
"""

from __future__ import annotations

from shoal.scheduler.placement import schedule
from shoal.scheduler.scorers import DEFAULT_WEIGHTS, Weights
from shoal.scheduler.snapshot import Decision, Snapshot

__all__ = ["DEFAULT_WEIGHTS", "Decision", "Snapshot", "Weights", "schedule"]
