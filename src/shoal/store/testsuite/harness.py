"""What the conformance cases stand on: a fake clock, the case decorator and watch helpers.

Cases are `async def case(self, store, clock)` methods. `@case` turns each into a plain
synchronous pytest test that opens a fresh store through the backend's `open_store`, runs the
case under `asyncio.run` with a timeout (a lost wake-up fails instead of hanging) and closes
the store. pytest-asyncio is not needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..base import Event, KeyValue, Store


class FakeClock:
    """A clock that moves only when told to; pass it where a `Clock` is expected."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SuiteBase:
    """Backend hooks. Override `open_store`; override `pass_time` if leases expire by themselves."""

    case_timeout = 20.0

    def open_store(self, clock: FakeClock) -> AbstractAsyncContextManager[Store]:
        """A fresh, empty store using `clock` for leases."""
        raise NotImplementedError

    async def pass_time(self, store: Store, clock: FakeClock, seconds: float) -> None:
        """Let `seconds` pass and let the store expire what is due."""
        clock.advance(seconds)
        await store.expire_leases()

    async def run_case(
        self, fn: Callable[[Any, Store, FakeClock], Coroutine[Any, Any, None]]
    ) -> None:
        clock = FakeClock()
        async with asyncio.timeout(self.case_timeout), self.open_store(clock) as store:
            await fn(self, store, clock)


Case = Callable[[Any, Store, FakeClock], Coroutine[Any, Any, None]]


def case(fn: Case) -> Callable[[SuiteBase], None]:
    """Make an async case a synchronous test method (see the module docstring)."""

    def test(self: SuiteBase) -> None:
        asyncio.run(self.run_case(fn))

    # Not functools.wraps: pytest would follow __wrapped__ and ask for `store`/`clock` fixtures.
    test.__name__ = test.__qualname__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


async def close(events: AsyncIterator[Event]) -> None:
    """Disconnect a watch now instead of whenever the garbage collector gets to it."""
    if isinstance(events, AsyncGenerator):
        await events.aclose()


async def take(events: AsyncIterator[Event], n: int, *, timeout: float = 5.0) -> list[Event]:
    """The next `n` events of a watch (fails after `timeout` seconds)."""
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await anext(events))
    return out


async def assert_quiet(events: AsyncIterator[Event], *, wait: float = 0.05) -> None:
    """The watch has nothing more to say right now. Ends the watch."""
    try:
        extra = await asyncio.wait_for(anext(events), wait)
    except TimeoutError:
        return
    finally:
        await close(events)
    raise AssertionError(f"unexpected event {extra}")


def summary(events: list[Event]) -> list[tuple[str, int, str, bytes]]:
    """(type, revision, key, value) of each event: what most assertions need."""
    return [(e.type.value, e.revision, e.kv.key, e.kv.value) for e in events]


def values(kvs: list[KeyValue]) -> dict[str, bytes]:
    return {kv.key: kv.value for kv in kvs}
