"""What the runtimes that keep one state directory per container share.

Both `process` and `runc` keep `<root>/<id>/spec.json` plus whatever their monitor writes, and
read a container's state back from those files (that is how an agent re-adopts after a
restart). A subclass supplies `_state(path)` (the files → a ContainerState) and
`_log_reader(path)`; this base gives `state`, `list`, `logs` (with follow/tail/since) and `wait`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import signal as _signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from shoal.model.errors import Conflict, NotFound, Unavailable
from shoal.runtime.base import ContainerSpec, ContainerState, LogLine, parse_signal
from shoal.runtime.monitor import SPEC, STARTED

ENDED = ("exited", "unknown")


class LineReader(Protocol):
    """A container's log: what is there, then (`poll`) what was appended since."""

    def read_existing(self) -> builtins.list[LogLine]: ...

    def poll(self) -> builtins.list[LogLine]: ...

    def close(self) -> None: ...


KILL_TIMEOUT = 10.0  # after SIGKILL: only a process stuck in the kernel (D state) takes longer


class StateDirRuntime:
    root: Path
    _poll: float  # seconds between reads while following or waiting

    def _state(self, path: Path) -> ContainerState:
        raise NotImplementedError

    def _log_reader(self, path: Path) -> LineReader:
        raise NotImplementedError

    def _valid_id(self, id: str) -> bool:
        return "/" not in id and not id.startswith(".") and bool(id)

    def _dir(self, id: str) -> Path:
        path = self.root / id
        if not self._valid_id(id) or not (path / SPEC).exists():
            raise NotFound(f"no container {id!r} in {self.root}")
        return path

    def _new_dir(self, spec: ContainerSpec) -> Path:
        """The state directory of a new container (Conflict if the id is taken)."""
        path = self.root / spec.id
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            raise Conflict(f"container {spec.id!r} already exists") from None
        return path

    def _claim_start(self, path: Path) -> ContainerState | None:
        """Take the right to start the container; if it was already started, its state
        (Conflict when it has ended: a restart is a new container)."""
        try:
            os.close(os.open(path / STARTED, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            state = self._state(path)
            if state.status in ENDED:
                raise Conflict(
                    f"container {path.name!r} has {state.status}; it cannot be started again",
                    hint="create a new container",
                ) from None
            return state
        return None

    def _spec(self, path: Path) -> ContainerSpec:
        return ContainerSpec.model_validate_json((path / SPEC).read_bytes())

    async def _deliver(self, path: Path, signo: int) -> str | None:
        """Send `signo` to the container's workload; the driver's error text, or None."""
        raise NotImplementedError

    async def stop(self, id: str, *, grace: float | None = None) -> ContainerState:
        path = self._dir(id)
        state = self._state(path)
        if state.status != "running":
            return state
        spec = self._spec(path)
        grace = spec.stop_grace_period if grace is None else grace
        await self._deliver(path, parse_signal(spec.stop_signal))
        state = await self._until(path, lambda s: s.status != "running", grace)
        if state.status == "running":
            await self._deliver(path, _signal.SIGKILL)
            state = await self._until(path, lambda s: s.status != "running", KILL_TIMEOUT)
        return state

    async def kill(self, id: str, signal: str | int) -> None:
        path = self._dir(id)
        signo = parse_signal(signal)
        if self._state(path).status != "running":
            raise Conflict(f"container {id!r} is not running")
        error = await self._deliver(path, signo)
        if error is not None and self._state(path).status == "running":
            raise Unavailable(f"signal {signo} to {id} failed: {error}")

    async def state(self, id: str) -> ContainerState:
        return self._state(self._dir(id))

    async def list(self) -> builtins.list[ContainerState]:
        """Every container the state directory knows (re-adoption after an agent restart)."""
        if not self.root.is_dir():
            return []
        out: builtins.list[ContainerState] = []
        for path in sorted(self.root.iterdir()):
            if not path.name.startswith(".") and (path / SPEC).exists():
                with contextlib.suppress(NotFound):  # removed while we looked
                    out.append(self._state(path))
        return out

    def logs(
        self,
        id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: float | None = None,
    ) -> AsyncIterator[LogLine]:
        return self._logs(self._dir(id), follow, tail, since)

    async def _logs(
        self, path: Path, follow: bool, tail: int | None, since: float | None
    ) -> AsyncIterator[LogLine]:
        reader = self._log_reader(path)
        try:
            lines = [x for x in reader.read_existing() if since is None or x.time >= since]
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            for line in lines:
                yield line
            while follow:
                # Both monitors finish writing the log before they write the exit status, so
                # a read that starts after the container ended drains everything.
                ended = self._state(path).status in ENDED
                batch = reader.poll()
                for line in batch:
                    if since is None or line.time >= since:
                        yield line
                if ended:
                    return
                if not batch:
                    await asyncio.sleep(self._poll)
        finally:
            reader.close()

    async def wait(self, id: str) -> ContainerState:
        path = self._dir(id)
        return await self._until(path, lambda s: s.status in ENDED, None)

    async def _until(
        self, path: Path, done: Callable[[ContainerState], bool], timeout: float | None
    ) -> ContainerState:
        """Poll the state until `done` or `timeout` seconds; returns the last state read."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.002  # start fast: most stops finish within milliseconds
        while True:
            state = self._state(path)
            if done(state):
                return state
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return state
            await asyncio.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, self._poll)
