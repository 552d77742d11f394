"""One interactive exec's command as the drivers hand it out: `ExecSession`.

Its terminal (a pty master) or its pipes, read and written through `console.py` (one chunk at
a time, never ahead of the reader); its exit code; and `close`, which SIGKILLs whatever still
runs of it (the process, its descendants, the session it leads), waits for that, and releases
every fd and temporary file. `spawn_detached` runs a command that starts the process and exits
(`runc exec --detach`) under the subreaper of `reaper.py`, so the exit code is still learnt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shoal

from .console import Size, read_chunk, set_size, write_all
from .monitor import DEFAULT_PATH, is_alive, start_ticks

KILL_WAIT = 5.0
"""Seconds to wait for killed processes (and a command's waiter) to be gone."""


class Pipes:
    """A command's stdin (or /dev/null), stdout and stderr: its ends, then ours."""

    def __init__(self, stdin: bool) -> None:
        self._fds: list[int] = []
        self.stdin: int | None = None
        try:
            if stdin:
                self.child_stdin, self.stdin = self._pair()
            else:
                self.child_stdin = os.open(os.devnull, os.O_RDONLY)
                self._fds.append(self.child_stdin)
            self.stdout, self.child_stdout = self._pair()
            self.stderr, self.child_stderr = self._pair()
        except BaseException:
            self.close()
            raise

    def _pair(self) -> tuple[int, int]:
        read, write = os.pipe()
        self._fds += [read, write]
        return read, write

    def started(self) -> None:
        """The command holds its ends now: ours must go, or the output never ends."""
        for fd in (self.child_stdin, self.child_stdout, self.child_stderr):
            self._fds.remove(fd)
            os.close(fd)

    def close(self) -> None:
        """Close every fd still held (all of them when the command did not start)."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def session(self, waiter: asyncio.subprocess.Process, pid: int, **more: Any) -> ExecSession:
        """Our ends, handed over to a session of the started command."""
        self._fds = []
        return ExecSession(
            tty=False,
            waiter=waiter,
            pid=pid,
            output=self.stdout,
            errors=self.stderr,
            stdin=self.stdin,
            **more,
        )


async def spawn_detached(
    argv: list[str], pid_file: Path, *, stdin: int, stdout: int, stderr: int
) -> tuple[asyncio.subprocess.Process, int | None]:
    """Run a command that starts a process and exits (`runc exec --detach --pid-file`) under
    the subreaper of `reaper.py`. Returns the waiter, whose exit code becomes the process's,
    and the process's pid; no pid when the command failed (the waiter exits with its code)."""
    ready_r, ready_w = os.pipe()
    helper = [sys.executable, "-P", "-S", "-m", "shoal.runtime.reaper"]
    helper += ["--ready-fd", str(ready_w), "--pid-file", str(pid_file), "--", *argv]
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "PYTHONPATH": str(Path(shoal.__file__).resolve().parent.parent),
    }
    try:
        waiter = await asyncio.create_subprocess_exec(
            *helper, stdin=stdin, stdout=stdout, stderr=stderr, env=env, pass_fds=(ready_w,)
        )
    except BaseException:
        os.close(ready_r)
        raise
    finally:
        os.close(ready_w)
    try:
        os.set_blocking(ready_r, False)
        reading = asyncio.ensure_future(_read_to_end(ready_r))
        try:
            said = await asyncio.shield(reading)
        except asyncio.CancelledError:
            # Let the start finish (runc takes ~50 ms), so that what it started is undone.
            pid = _pid(await reading)
            if pid is not None:
                kill_tree(pid, start_ticks(pid))
            await waiter.wait()
            raise
    finally:
        os.close(ready_r)
    return waiter, _pid(said)


async def _read_to_end(fd: int) -> bytes:
    said = b""
    while chunk := await read_chunk(fd):
        said += chunk
    return said


def _pid(said: bytes) -> int | None:
    return int(said) if said.strip().isdigit() else None


def _sessions() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, session id) of every process, from /proc."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[3]))
    return table


def kill_tree(pid: int, ticks: int | None) -> int:
    """SIGKILL `pid` (if it is still the process that started at `ticks`), its descendants and
    every member of the session it leads, and wait until they are dead; returns how many were
    signalled. A pid that leads a session is not recycled while the session has members, so
    those are always its own."""
    killed = 0
    signalled: set[int] = set()
    for _ in range(3):  # again, for what forked between the scan and the kill
        table = _sessions()
        victims = {p for p, (_, sid) in table.items() if sid == pid}
        if start_ticks(pid) == ticks and ticks is not None:
            victims.add(pid)
            children: dict[int, list[int]] = {}
            for p, (ppid, _) in table.items():
                children.setdefault(ppid, []).append(p)
            todo = [pid]
            while todo:
                for child in children.get(todo.pop(), []):
                    if child not in victims:
                        victims.add(child)
                        todo.append(child)
        victims.discard(os.getpid())
        if not victims:
            break
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        killed += len(victims)
        signalled |= victims
    deadline = time.monotonic() + KILL_WAIT  # SIGKILL lands asynchronously: see it done
    while any(is_alive(p, None) for p in signalled) and time.monotonic() < deadline:
        time.sleep(0.002)
    return killed


class ExecSession:
    """One exec'd command: its output, input, terminal size, exit code and cleanup.

    With a terminal, `output` and `stdin` are the pty master (stderr is merged into it);
    without, three pipes. A command that never started is `failed(code, message)`.
    """

    def __init__(
        self,
        *,
        tty: bool,
        waiter: asyncio.subprocess.Process | None,
        pid: int | None,
        output: int | None = None,
        errors: int | None = None,
        stdin: int | None = None,
        failure: tuple[int, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.tty = tty
        self.pid = pid
        self._ticks = start_ticks(pid) if pid else None
        self._waiter = waiter
        self._output = output
        self._errors = errors
        self._stdin = stdin
        self._failure = failure
        self._on_close = on_close
        self._closed = False
        for fd in {output, errors, stdin} - {None}:
            assert fd is not None
            os.set_blocking(fd, False)

    @classmethod
    def failed(
        cls, code: int, message: str, on_close: Callable[[], None] | None = None
    ) -> ExecSession:
        return cls(tty=False, waiter=None, pid=None, failure=(code, message), on_close=on_close)

    @property
    def message(self) -> str | None:
        """Why the command could not start (to show on stderr), or None."""
        return self._failure[1] if self._failure else None

    @property
    def has_stdin(self) -> bool:
        return self._stdin is not None

    async def read_output(self) -> bytes:
        """The next chunk of the terminal's output (or of stdout); b"" at its end."""
        return await read_chunk(self._output) if self._output is not None else b""

    async def read_errors(self) -> bytes:
        """The next chunk of stderr (none with a terminal); b"" at its end."""
        return await read_chunk(self._errors) if self._errors is not None else b""

    async def write(self, data: bytes) -> bool:
        """Feed the command's stdin; False (and the data dropped) once it cannot take more."""
        if self._stdin is None:
            return False
        try:
            await write_all(self._stdin, data)
        except OSError as exc:  # EPIPE: it closed its stdin; EIO: the terminal hung up
            if exc.errno not in (errno.EPIPE, errno.EIO):
                raise
            self.close_stdin()
            return False
        return True

    def close_stdin(self) -> None:
        """End of input: the pipe is closed (a terminal has no such thing: input just stops)."""
        fd, self._stdin = self._stdin, None
        if fd is not None and fd != self._output:
            _release(fd)

    def resize(self, size: Size) -> None:
        if self.tty and self._output is not None:
            set_size(self._output, size)

    async def wait(self) -> int:
        """The command's exit code (128+N when signal N ended it)."""
        if self._failure is not None:
            return self._failure[0]
        assert self._waiter is not None
        code = await self._waiter.wait()
        return 128 - code if code < 0 else code

    @property
    def running(self) -> bool:
        return self._waiter is not None and self._waiter.returncode is None

    async def close(self) -> None:
        """Kill what still runs of the command, reap its waiter, release fds and files."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.running and self.pid is not None:
                await asyncio.to_thread(kill_tree, self.pid, self._ticks)
            if self._waiter is not None and self._waiter.returncode is None:
                try:
                    await asyncio.wait_for(self._waiter.wait(), KILL_WAIT)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self._waiter.kill()
                    await self._waiter.wait()
        finally:
            for fd in {self._output, self._errors, self._stdin} - {None}:
                assert fd is not None
                _release(fd)
            self._output = self._errors = self._stdin = None
            if self._on_close is not None:
                self._on_close()


def _release(fd: int) -> None:
    loop = asyncio.get_running_loop()
    loop.remove_reader(fd)
    loop.remove_writer(fd)
    os.close(fd)


def exec_dir(prefix: str = "shoal-exec-") -> tuple[Path, Callable[[], None]]:
    """A private temporary directory (short enough for a unix socket path) and its remover."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    return path, lambda: shutil.rmtree(path, ignore_errors=True)
