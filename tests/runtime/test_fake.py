"""The fake runtime passes the conformance suite, and its test hooks work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal.model.errors import NotFound
from shoal.runtime.base import ContainerSpec, Runtime, Stream
from shoal.runtime.fake import FakeHost, FakeRuntime
from shoal.runtime.testsuite import RuntimeConformance, Workloads, collect


class FakeWorkloads(Workloads):
    def sleep(self, seconds: float) -> list[str]:
        return ["sleep", str(seconds)]

    def exit(self, code: int) -> list[str]:
        return ["exit", str(code)]

    def sleep_then_exit(self, seconds: float, code: int) -> list[str]:
        return ["sleep", str(seconds), ";", "exit", str(code)]

    def trap_term(self) -> list[str]:
        return ["ignore-term", ";", "echo", "ready", ";", "sleep", "60"]

    def lines(self, lines: list[tuple[Stream, str]], gap: float) -> list[str]:
        steps: list[str] = []
        for stream, text in lines:
            if steps:
                steps += [";", "sleep", str(gap), ";"]
            steps += ["echo" if stream == "stdout" else "echo-err", text]
        return steps

    def print_env_and_cwd(self, name: str) -> list[str]:
        return ["printenv", name, ";", "pwd"]


class TestFakeRuntime(RuntimeConformance):
    workloads = FakeWorkloads()

    def open_runtime(self, root: Path) -> Runtime:
        # One FakeHost per root: a second runtime over the same root is the restarted agent.
        hosts: dict[Path, FakeHost] = self.__dict__.setdefault("hosts", {})
        return FakeRuntime(hosts.setdefault(root, FakeHost()))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(id: str, *command: str) -> ContainerSpec:
    return ContainerSpec(id=id, name=id, command=list(command))


def test_scripts_follow_the_injected_clock() -> None:
    async def main() -> None:
        clock = Clock()
        rt = FakeRuntime(clock=clock)
        await rt.create(spec("a", "echo", "hi", ";", "sleep", "10", ";", "exit", "4"))
        assert (await rt.start("a")).status == "running"
        clock.now += 9.9
        assert (await rt.state("a")).status == "running"
        clock.now += 0.2
        done = await rt.state("a")
        assert (done.status, done.exit_code, done.finished_at) == ("exited", 4, 1010.0)
        assert [(x.time, x.text) for x in await collect(rt.logs("a"))] == [(1000.0, "hi")]

    asyncio.run(main())


def test_hooks_emit_and_finish() -> None:
    async def main() -> None:
        rt = FakeRuntime()
        await rt.create(spec("a", "sleep", "infinity"))
        await rt.start("a")
        follow = rt.logs("a", follow=True)
        rt.emit("a", "stderr", "boom")
        rt.finish("a", 2)
        assert [x.text for x in await collect(follow)] == ["boom"]
        assert (await rt.wait("a")).exit_code == 2
        assert rt.calls == [("create", "a"), ("start", "a")]
        with pytest.raises(NotFound):
            rt.finish("nope", 1)

    asyncio.run(main())


def test_stop_grace_is_measured_on_the_clock() -> None:
    async def main() -> None:
        clock = Clock()
        rt = FakeRuntime(clock=clock)
        await rt.create(spec("a", "ignore-term", ";", "sleep", "60"))
        await rt.start("a")
        stopping = asyncio.create_task(rt.stop("a", grace=30))
        await asyncio.sleep(0.05)
        assert not stopping.done(), "SIGTERM is ignored: waits for the grace period"
        clock.now += 30
        stopped = await stopping
        assert (stopped.exit_code, stopped.finished_at) == (137, 1030.0)

    asyncio.run(main())


def test_unavailable_switch() -> None:
    rt = FakeRuntime()
    rt.is_available = False
    assert asyncio.run(rt.available()) is False
