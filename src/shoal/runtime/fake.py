"""An in-memory `Runtime` for agent unit tests: no processes, time from an injectable clock.

A container's command is a tiny script, steps separated by `";"` tokens:

    sleep N            (N seconds of the clock; "infinity" allowed)
    exit N             echo WORDS…          echo-err WORDS…      (stdout / stderr lines)
    printenv NAME      pwd                  ignore-term          (SIGTERM does nothing)

e.g. `["echo", "ready", ";", "sleep", "5", ";", "exit", "3"]`. Running off the end exits 0; an
unknown first word is a missing binary (exit 127 at start, `error` set). Scripts are evaluated
lazily against the clock, so state is exact at any reading and a container keeps "running"
while no runtime looks at it. Containers live in a `FakeHost`: several `FakeRuntime`s over one
host are an agent and its restarted self. Tests drive it further with `emit` and `finish`.

Waiting (`stop`'s grace, `wait`, `logs(follow=True)`) polls the clock, so with a clock that
never moves, a test must advance it from another task.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import math
import signal as _signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from shoal.model.errors import Conflict, NotFound

from .base import (
    EXIT_NOT_FOUND,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    LogLine,
    Stream,
    exit_code_for_signal,
    parse_signal,
)

_IGNORED_BY_DEFAULT = {_signal.SIGCHLD, _signal.SIGCONT, _signal.SIGURG, _signal.SIGWINCH}
_WORDS = {"sleep", "exit", "echo", "echo-err", "printenv", "pwd", "ignore-term"}


@dataclass
class _Container:
    spec: ContainerSpec
    steps: list[list[str]]
    status: ContainerStatus = "created"
    pid: int | None = None
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    pc: int = 0
    at: float = 0.0  # the clock reading the script has run up to
    ignore_term: bool = False
    logs: list[LogLine] = field(default_factory=list)


class FakeHost:
    """The machine: what outlives any one `FakeRuntime` (an agent restart)."""

    def __init__(self) -> None:
        self.containers: dict[str, _Container] = {}
        self.pids = itertools.count(1000)


class FakeRuntime:
    name = "fake"

    def __init__(
        self,
        host: FakeHost | None = None,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.005,
    ) -> None:
        self.host = host or FakeHost()
        self.clock = clock
        self.poll_interval = poll_interval
        self.is_available = True
        self.calls: builtins.list[tuple[str, str]] = []  # (operation, id), for assertions

    # -- test hooks ---------------------------------------------------------------------------

    def emit(self, id: str, stream: Stream, text: str) -> None:
        """The workload writes a line now."""
        c = self._get(id)
        c.logs.append(LogLine(time=self.clock(), stream=stream, text=text))

    def finish(self, id: str, exit_code: int) -> None:
        """The workload exits now with `exit_code`."""
        c = self._advanced(id)
        if c.status == "running":
            self._exit(c, exit_code, self.clock())

    # -- the protocol -------------------------------------------------------------------------

    async def available(self) -> bool:
        return self.is_available

    async def create(self, spec: ContainerSpec) -> ContainerState:
        self.calls.append(("create", spec.id))
        if spec.id in self.host.containers:
            raise Conflict(f"container {spec.id!r} already exists")
        groups = itertools.groupby(spec.command, lambda word: word == ";")
        c = _Container(spec, [list(words) for sep, words in groups if not sep])
        self.host.containers[spec.id] = c
        return self._view(c)

    async def start(self, id: str) -> ContainerState:
        self.calls.append(("start", id))
        c = self._advanced(id)
        if c.status == "running":
            return self._view(c)
        if c.status != "created":
            raise Conflict(f"container {id!r} has exited; it cannot be started again")
        now = self.clock()
        if not c.steps or c.steps[0][0] not in _WORDS:
            c.status, c.exit_code, c.finished_at = "exited", EXIT_NOT_FOUND, now
            c.error = f"cannot start: {c.spec.command[0]}: No such file or directory"
            return self._view(c)
        c.status, c.pid, c.started_at, c.at = "running", next(self.host.pids), now, now
        return self._view(self._advanced(id))

    async def stop(self, id: str, *, grace: float | None = None) -> ContainerState:
        self.calls.append(("stop", id))
        c = self._advanced(id)
        if c.status != "running":
            return self._view(c)
        grace = c.spec.stop_grace_period if grace is None else grace
        self._signal(c, parse_signal(c.spec.stop_signal))
        deadline = self.clock() + grace
        while self._advanced(id).status == "running" and self.clock() < deadline:
            await asyncio.sleep(self.poll_interval)
        if c.status == "running":
            self._signal(c, _signal.SIGKILL)
        return self._view(c)

    async def kill(self, id: str, signal: str | int) -> None:
        self.calls.append(("kill", id))
        signo = parse_signal(signal)
        c = self._advanced(id)
        if c.status != "running":
            raise Conflict(f"container {id!r} is not running")
        self._signal(c, signo)

    async def remove(self, id: str) -> None:
        self.calls.append(("remove", id))
        await self.stop(id)
        del self.host.containers[id]

    async def state(self, id: str) -> ContainerState:
        return self._view(self._advanced(id))

    async def list(self) -> builtins.list[ContainerState]:
        return [self._view(self._advanced(i)) for i in sorted(self.host.containers)]

    def logs(
        self,
        id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: float | None = None,
    ) -> AsyncIterator[LogLine]:
        self._get(id)
        return self._logs(id, follow, tail, since)

    async def _logs(
        self, id: str, follow: bool, tail: int | None, since: float | None
    ) -> AsyncIterator[LogLine]:
        c = self._advanced(id)
        lines = [x for x in c.logs if since is None or x.time >= since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            yield line
        seen = len(c.logs)
        while follow:
            ended = self._advanced(id).status == "exited"
            for line in c.logs[seen:]:
                if since is None or line.time >= since:
                    yield line
            seen = len(c.logs)
            if ended:
                return
            await asyncio.sleep(self.poll_interval)

    async def wait(self, id: str) -> ContainerState:
        while self._advanced(id).status != "exited":
            await asyncio.sleep(self.poll_interval)
        return self._view(self._get(id))

    # -- the simulation -----------------------------------------------------------------------

    def _get(self, id: str) -> _Container:
        try:
            return self.host.containers[id]
        except KeyError:
            raise NotFound(f"no container {id!r}") from None

    def _advanced(self, id: str) -> _Container:
        """The container with its script run up to the clock's present."""
        c = self._get(id)
        now = self.clock()
        while c.status == "running":
            if c.pc >= len(c.steps):
                self._exit(c, 0, c.at)
                break
            word, *args = c.steps[c.pc]
            if word == "sleep":
                seconds = math.inf if args[0] == "infinity" else float(args[0])
                if c.at + seconds > now:
                    break
                c.at += seconds
            elif word == "exit":
                self._exit(c, int(args[0]) if args else 0, c.at)
                break
            elif word in ("echo", "echo-err"):
                self._log(c, "stdout" if word == "echo" else "stderr", " ".join(args))
            elif word == "printenv":
                self._log(c, "stdout", c.spec.env.get(args[0], ""))
            elif word == "pwd":
                self._log(c, "stdout", c.spec.working_dir or "/")
            elif word == "ignore-term":
                c.ignore_term = True
            else:
                self._log(c, "stderr", f"{word}: not found")
                self._exit(c, EXIT_NOT_FOUND, c.at)
                break
            c.pc += 1
        return c

    def _log(self, c: _Container, stream: Stream, text: str) -> None:
        c.logs.append(LogLine(time=c.at, stream=stream, text=text))

    def _signal(self, c: _Container, signo: int) -> None:
        if signo in _IGNORED_BY_DEFAULT or (signo == _signal.SIGTERM and c.ignore_term):
            return
        self._exit(c, exit_code_for_signal(signo), self.clock())

    @staticmethod
    def _exit(c: _Container, code: int, at: float) -> None:
        c.status, c.exit_code, c.finished_at, c.pid = "exited", code, at, None

    @staticmethod
    def _view(c: _Container) -> ContainerState:
        return ContainerState(
            id=c.spec.id,
            name=c.spec.name,
            labels=dict(c.spec.labels),
            status=c.status,
            pid=c.pid,
            exit_code=c.exit_code,
            started_at=c.started_at,
            finished_at=c.finished_at,
            error=c.error,
        )
