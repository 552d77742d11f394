"""shoal's store: an etcd-shaped key-value store (revisions, compare-and-swap, watch, leases).

`base.Store` is the protocol; `sqlite.SqliteStore` is the embedded backend and
`memory.MemoryStore` the fake for unit tests. Both pass `testsuite.StoreConformance`.
"""

from __future__ import annotations

from .base import (
    Clock,
    Compacted,
    Compare,
    DeleteOp,
    Event,
    EventType,
    GetOp,
    KeyValue,
    Op,
    OpResponse,
    PutOp,
    RevisionMismatch,
    Store,
    TxnResult,
)

__all__ = [
    "Clock",
    "Compacted",
    "Compare",
    "DeleteOp",
    "Event",
    "EventType",
    "GetOp",
    "KeyValue",
    "Op",
    "OpResponse",
    "PutOp",
    "RevisionMismatch",
    "Store",
    "TxnResult",
]
