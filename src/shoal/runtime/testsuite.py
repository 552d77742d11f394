"""The one conformance suite every `Runtime` runs (Nomad's driver harness habit).

    class TestMyRuntime(RuntimeConformance):
        def open_runtime(self, root: Path) -> Runtime:
            return MyRuntime(root)   # called again over the same root to simulate a restart

Workloads are described through `Workloads` (POSIX `sh`, so host processes and busybox images
both work); a driver that runs something else (the fake) overrides it. Each case gets a fresh
temporary root, runs under `asyncio.run` with a timeout, and afterwards every container a new
instance lists is stopped and removed, so no process outlives the case. Needs pytest.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

import pytest

from shoal.model.errors import Conflict, Invalid, NotFound

from .base import ContainerSpec, LogLine, Runtime, Stream


class Workloads:
    """The argv for each behaviour the suite needs."""

    def sleep(self, seconds: float) -> list[str]:
        return ["sleep", str(seconds)]

    def exit(self, code: int) -> list[str]:
        return ["sh", "-c", f"exit {code}"]

    def sleep_then_exit(self, seconds: float, code: int) -> list[str]:
        return ["sh", "-c", f"sleep {seconds}; exit {code}"]

    def trap_term(self) -> list[str]:
        """Ignores SIGTERM, prints `ready` once it does, then sleeps a minute."""
        return ["sh", "-c", "trap '' TERM; echo ready; sleep 60"]

    def lines(self, lines: list[tuple[Stream, str]], gap: float) -> list[str]:
        """Writes each line to its stream, `gap` seconds apart, then exits 0."""
        parts = [f"echo {text}" + (" >&2" if stream == "stderr" else "") for stream, text in lines]
        return ["sh", "-c", f"; sleep {gap}; ".join(parts)]

    def print_env_and_cwd(self, name: str) -> list[str]:
        return ["sh", "-c", f'echo "${name}"; pwd']

    def missing_binary(self) -> list[str]:
        return ["/nonexistent/shoal-no-such-binary"]


Case = Callable[[Any, Runtime, Path], Coroutine[Any, Any, None]]


class SuiteBase:
    workloads: ClassVar[Workloads] = Workloads()
    working_dir: ClassVar[str] = "/tmp"  # exists on the host and in the test images
    case_timeout: ClassVar[float] = 30.0

    def open_runtime(self, root: Path) -> Runtime:
        """A runtime keeping its state under `root`; may be called again for the same root."""
        raise NotImplementedError

    def spec(self, id: str, command: list[str], **fields: Any) -> ContainerSpec:
        labels = {"shoal.task": id, "shoal.stack": "suite", "shoal.service": "svc"}
        return ContainerSpec(id=id, name=f"suite-{id}", labels=labels, command=command, **fields)

    async def run_case(self, fn: Case) -> None:
        with tempfile.TemporaryDirectory(prefix="shoal-rt-") as tmp:
            root = Path(tmp)
            try:
                async with asyncio.timeout(self.case_timeout):
                    await fn(self, self.open_runtime(root), root)
            finally:
                await clean_up(self.open_runtime(root))


def case(fn: Case) -> Callable[[SuiteBase], None]:
    """Make an async case a synchronous test method (pytest-asyncio is not needed)."""

    def test(self: SuiteBase) -> None:
        asyncio.run(self.run_case(fn))

    test.__name__ = test.__qualname__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


async def clean_up(rt: Runtime) -> None:
    for state in await rt.list():
        await rt.stop(state.id, grace=0)
        await rt.remove(state.id)


async def collect(lines: AsyncIterator[LogLine], timeout: float = 10.0) -> list[LogLine]:
    out: list[LogLine] = []
    try:
        async with asyncio.timeout(timeout):
            async for line in lines:
                out.append(line)
    finally:
        if isinstance(lines, AsyncGenerator):
            await lines.aclose()
    return out


async def wait_for_line(rt: Runtime, id: str, text: str, timeout: float = 10.0) -> None:
    lines = rt.logs(id, follow=True)
    try:
        async with asyncio.timeout(timeout):
            async for line in lines:
                if line.text == text:
                    return
    finally:
        if isinstance(lines, AsyncGenerator):
            await lines.aclose()
    raise AssertionError(f"{id} ended without writing {text!r}")


class RuntimeConformance(SuiteBase):
    """Subclass as `Test…` and implement `open_runtime`."""

    @case
    async def test_available(self, rt: Runtime, root: Path) -> None:
        assert await rt.available()
        assert await rt.list() == []

    @case
    async def test_create_start_and_state(self, rt: Runtime, root: Path) -> None:
        created = await rt.create(self.spec("c1", self.workloads.sleep(30)))
        assert (created.id, created.status, created.pid) == ("c1", "created", None)
        assert created.labels["shoal.task"] == "c1"
        assert (await rt.state("c1")).status == "created"
        started = await rt.start("c1")
        assert started.status == "running" and started.pid and started.started_at
        assert started.exit_code is None
        assert (await rt.start("c1")).status == "running", "start of a running one is a no-op"
        assert [(s.id, s.status) for s in await rt.list()] == [("c1", "running")]

    @case
    async def test_exit_code(self, rt: Runtime, root: Path) -> None:
        await rt.create(self.spec("c1", self.workloads.exit(3)))
        await rt.start("c1")
        ended = await rt.wait("c1")
        assert (ended.status, ended.exit_code, ended.error) == ("exited", 3, None)
        assert ended.started_at and ended.finished_at and ended.finished_at >= ended.started_at
        assert await rt.wait("c1") == ended, "waiting again returns at once"
        assert await rt.state("c1") == ended
        with pytest.raises(Conflict):
            await rt.start("c1")

    @case
    async def test_stop_kills_after_grace_when_term_is_ignored(
        self, rt: Runtime, root: Path
    ) -> None:
        await rt.create(self.spec("c1", self.workloads.trap_term()))
        await rt.start("c1")
        await wait_for_line(rt, "c1", "ready")
        t0 = time.monotonic()
        stopped = await rt.stop("c1", grace=0.5)
        took = time.monotonic() - t0
        assert (stopped.status, stopped.exit_code) == ("exited", 137)
        assert 0.45 <= took < 5, took

    @case
    async def test_stop_is_fast_when_term_is_honoured(self, rt: Runtime, root: Path) -> None:
        await rt.create(self.spec("c1", self.workloads.sleep(60), stop_grace_period=20))
        await rt.start("c1")
        t0 = time.monotonic()
        stopped = await rt.stop("c1")
        assert time.monotonic() - t0 < 3
        assert (stopped.status, stopped.exit_code) == ("exited", 143)
        assert await rt.stop("c1") == stopped, "stopping an exited container changes nothing"

    @case
    async def test_kill(self, rt: Runtime, root: Path) -> None:
        await rt.create(self.spec("c1", self.workloads.sleep(60)))
        await rt.start("c1")
        with pytest.raises(Invalid):
            await rt.kill("c1", "SIGNOPE")
        await rt.kill("c1", "KILL")
        ended = await rt.wait("c1")
        assert ended.exit_code == 137
        with pytest.raises(Conflict):
            await rt.kill("c1", 15)

    @case
    async def test_logs(self, rt: Runtime, root: Path) -> None:
        sent: list[tuple[Stream, str]] = [("stdout", "one"), ("stderr", "two"), ("stdout", "3")]
        await rt.create(self.spec("c1", self.workloads.lines(sent, 0.05)))
        await rt.start("c1")
        await rt.wait("c1")
        lines = await collect(rt.logs("c1"))
        assert [(x.stream, x.text) for x in lines] == sent
        assert [x.time for x in lines] == sorted(x.time for x in lines)
        assert [x.text for x in await collect(rt.logs("c1", tail=2))] == ["two", "3"]
        assert await collect(rt.logs("c1", tail=0)) == []
        since = await collect(rt.logs("c1", since=lines[1].time))
        assert [x.text for x in since] == ["two", "3"]
        assert await collect(rt.logs("c1", since=lines[-1].time + 1)) == []

    @case
    async def test_follow_ends_when_the_container_exits(self, rt: Runtime, root: Path) -> None:
        sent: list[tuple[Stream, str]] = [("stdout", f"line{i}") for i in range(4)]
        await rt.create(self.spec("c1", self.workloads.lines(sent, 0.1)))
        follow_before_start = rt.logs("c1", follow=True)
        await rt.start("c1")
        lines = await collect(rt.logs("c1", follow=True))
        assert [x.text for x in lines] == [text for _, text in sent]
        assert (await rt.state("c1")).status == "exited"
        assert [x.text for x in await collect(follow_before_start)] == [t for _, t in sent]
        tailed = await collect(rt.logs("c1", follow=True, tail=1))
        assert [x.text for x in tailed] == ["line3"], "follow of an exited container ends"

    @case
    async def test_env_and_working_dir(self, rt: Runtime, root: Path) -> None:
        command = self.workloads.print_env_and_cwd("SHOAL_SUITE_VAR")
        env = {"SHOAL_SUITE_VAR": "hello  world"}
        await rt.create(self.spec("c1", command, env=env, working_dir=self.working_dir))
        await rt.start("c1")
        assert (await rt.wait("c1")).exit_code == 0
        lines = await collect(rt.logs("c1"))
        assert [x.text for x in lines] == ["hello  world", self.working_dir]

    @case
    async def test_readoption_after_agent_restart(self, rt: Runtime, root: Path) -> None:
        await rt.create(self.spec("long", self.workloads.sleep(60)))
        await rt.create(self.spec("short", self.workloads.sleep_then_exit(0.2, 5)))
        await rt.start("long")
        await rt.start("short")
        del rt  # the agent goes away; "short" ends while nobody watches
        await asyncio.sleep(1.5)
        again = self.open_runtime(root)
        found = {s.id: s for s in await again.list()}
        assert sorted(found) == ["long", "short"]
        assert found["long"].status == "running" and found["long"].pid
        assert found["long"].labels["shoal.service"] == "svc"
        assert (found["short"].status, found["short"].exit_code) == ("exited", 5)
        assert (await again.wait("short")).exit_code == 5
        assert (await again.stop("long", grace=5)).exit_code == 143

    @case
    async def test_remove(self, rt: Runtime, root: Path) -> None:
        await rt.create(self.spec("c1", self.workloads.sleep(60), stop_grace_period=0.5))
        await rt.create(self.spec("c2", self.workloads.sleep(60)))
        await rt.start("c1")
        await rt.remove("c1")
        await rt.remove("c2")
        assert await rt.list() == []
        with pytest.raises(NotFound):
            await rt.state("c1")
        await rt.create(self.spec("c1", self.workloads.exit(0)))  # the id is free again

    @case
    async def test_unknown_ids_and_duplicates(self, rt: Runtime, root: Path) -> None:
        calls: list[Callable[[], Coroutine[Any, Any, object]]] = [
            lambda: rt.state("nope"),
            lambda: rt.start("nope"),
            lambda: rt.stop("nope"),
            lambda: rt.kill("nope", "TERM"),
            lambda: rt.remove("nope"),
            lambda: rt.wait("nope"),
            lambda: collect(rt.logs("nope")),
            lambda: rt.state("../nope"),
        ]
        for call in calls:
            with pytest.raises(NotFound):
                await call()
        await rt.create(self.spec("c1", self.workloads.sleep(1)))
        with pytest.raises(Conflict):
            await rt.create(self.spec("c1", self.workloads.sleep(1)))

    @case
    async def test_start_failure_is_reported_not_raised(self, rt: Runtime, root: Path) -> None:
        await rt.create(self.spec("c1", self.workloads.missing_binary()))
        state = await rt.start("c1")
        assert (state.status, state.exit_code) == ("exited", 127)
        assert state.error and "shoal-no-such-binary" in state.error
        assert await rt.state("c1") == state
        assert await rt.wait("c1") == state
