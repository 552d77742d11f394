"""The one conformance suite every `Store` backend runs (containerd's snapshotter-suite habit).

It uses only the `Store` protocol, so an etcd backend joins by subclassing too:

    class TestMyStore(StoreConformance):
        def open_store(self, clock):
            return MyStore.open(clock=clock)  # an async context manager giving a fresh store

Backends whose leases expire on their own (etcd) override `pass_time` to sleep for real.
Needs pytest and hypothesis (the `dev` extra); nothing else in shoal imports it.
"""

from __future__ import annotations

from .harness import FakeClock, SuiteBase, assert_quiet, case, close, take
from .kv import KVCases
from .leases import LeaseCases
from .model import ModelCases, StoreMachine
from .watch import WatchCases


class StoreConformance(KVCases, WatchCases, LeaseCases, ModelCases):
    """Subclass as `Test…` in a test module and implement `open_store`."""


__all__ = [
    "FakeClock",
    "StoreConformance",
    "StoreMachine",
    "SuiteBase",
    "assert_quiet",
    "case",
    "close",
    "take",
]
