"""The `process` driver: a container is a host process (Nomad's raw_exec), no isolation.

Each container has a state directory `<root>/<id>/` (layout in `monitor.py`) and, once started,
a monitor process of its own (`python -m shoal.runtime.monitor`, in a new session) that runs the
workload, writes its logs and records its exit status. This driver only writes `spec.json`,
spawns monitors, sends signals and reads files — so any number of instances, in any process,
over the same root agree, and an agent restarted after `kill -9` re-adopts everything.

Limits, by design of a driver without namespaces or cgroups: `image`, `hostname` (only exported
as `$HOSTNAME`) and `resources` are ignored; `user` is applied only when running as root (others
run the workload as themselves); `oom_killed` is always false. The workload's environment is the
spec's `env` over a default `PATH`, never the agent's. Times are the monitor's wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal as _signal
import sys
import time
from pathlib import Path
from typing import Any

import shoal
from shoal.model.errors import Conflict, Invalid, NotFound, Unavailable

from .base import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    ContainerSpec,
    ContainerState,
    LogLine,
    Stream,
)
from .console import Size, set_size
from .exec_session import ExecSession, Pipes
from .logs import LogReader, Record
from .monitor import (
    DEFAULT_PATH,
    EXIT,
    LOG_DIR,
    MONITOR_LOG,
    MONITOR_PID,
    PID,
    SPEC,
    STARTED,
    Monitor,
    is_alive,
    proc_stat,
    read_json,
    write_json_atomic,
)
from .statedir import StateDirRuntime

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_READY_FD = 3


class ProcessRuntime(StateDirRuntime):
    """Runs containers as host processes, state under `root` (created on first use)."""

    name = "process"

    def __init__(
        self,
        root: Path | str,
        *,
        python: str = sys.executable,
        poll_interval: float = 0.05,
        start_timeout: float = 30.0,
    ) -> None:
        self.root = Path(root).resolve()
        self._python = python
        self._poll = poll_interval
        self._start_timeout = start_timeout

    async def available(self) -> bool:
        return sys.platform == "linux" and os.path.exists("/proc/self/stat")

    async def create(self, spec: ContainerSpec) -> ContainerState:
        path = self._new_dir(spec)
        write_json_atomic(path / SPEC, spec.model_dump(mode="json"))
        return self._state(path)

    async def start(self, id: str) -> ContainerState:
        path = self._dir(id)
        already = self._claim_start(path)
        if already is not None:
            return already
        await self._spawn_monitor(path)
        if not (path / PID).exists() and not (path / EXIT).exists():
            state = self._state(path)
            if state.status == "unknown" or not self._monitor_alive(path):
                # The monitor died before it could say anything: record that, for good.
                error = f"monitor failed to start, see {path / MONITOR_LOG}"
                write_json_atomic(path / EXIT, {"exit_code": None, "error": error})
        return self._state(path)

    async def _spawn_monitor(self, path: Path) -> None:
        r, w = os.pipe()
        if w == _READY_FD:  # dup2 onto itself would keep close-on-exec set
            w2 = os.dup(w)
            os.close(w)
            w = w2
        # -P: nothing in the agent's working directory can shadow a module; -S: no site, as the
        # monitor needs only the standard library and shoal (PYTHONPATH), and starts sooner.
        argv = [self._python, "-P", "-S", "-m", "shoal.runtime.monitor"]
        argv += ["--ready-fd", str(_READY_FD), str(path)]
        env = {
            "PATH": os.environ.get("PATH", DEFAULT_PATH),
            "PYTHONPATH": str(Path(shoal.__file__).resolve().parent.parent),
        }
        log_flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            os.posix_spawn(
                self._python,
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(path / MONITOR_LOG), log_flags, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                    (os.POSIX_SPAWN_DUP2, w, _READY_FD),
                ],
                setsid=True,  # its own session: killing the agent's group spares it
            )
        except OSError as exc:
            os.close(r)
            (path / STARTED).unlink(missing_ok=True)
            raise Unavailable(f"cannot run the monitor with {self._python}: {exc}") from exc
        finally:
            os.close(w)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(r, lambda: None if ready.done() else ready.set_result(None))
        try:
            async with asyncio.timeout(self._start_timeout):
                await ready
        except TimeoutError:
            pass  # a stuck monitor: the state says so
        finally:
            loop.remove_reader(r)
            os.close(r)

    async def _deliver(self, path: Path, signo: int) -> str | None:
        self._signal(path, signo)
        return None

    def _signal(self, path: Path, signo: int) -> None:
        """The stop signal goes to the main process, as Docker sends it to PID 1; SIGKILL takes
        the whole process group, as a container's processes die together."""
        record = read_json(path / PID)
        if record is None or not is_alive(record["pid"], record.get("start_ticks")):
            return  # already gone (or its pid recycled: never signal a stranger)
        try:
            if signo == _signal.SIGKILL:
                os.killpg(record["pid"], signo)
            else:
                os.kill(record["pid"], signo)
        except ProcessLookupError:
            pass

    async def remove(self, id: str) -> None:
        path = self._dir(id)
        state = await self.stop(id)
        if state.status == "running":
            raise Unavailable(f"container {id!r} did not stop; not removed")
        # The monitor exits right after writing exit.json: let it, and reap it if it is ours.
        await self._until(path, lambda _: not self._monitor_alive(path), 5.0)
        self._reap_monitor(path)
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)

    async def open_exec(
        self,
        id: str,
        argv: list[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        size: Size | None = None,
    ) -> ExecSession:
        """Start `argv` next to the running workload, in its environment, working directory and
        user, in a session of its own: on a new pty (sized before it starts, its controlling
        terminal through `setsid --ctty`) or with pipes."""
        if not argv:
            raise Invalid("exec needs a command")
        path = self._dir(id)
        if self._state(path).status != "running":
            raise Conflict(f"container {id!r} is not running", hint="start it first")
        spec = self._spec(path)
        env = {"PATH": DEFAULT_PATH, **({"HOSTNAME": spec.hostname} if spec.hostname else {})}
        env.update(spec.env)
        cwd = spec.working_dir or "/"
        if tty:
            env.setdefault("TERM", "xterm")
        problem = _unrunnable(argv[0], env["PATH"], cwd)
        if problem is not None:
            return ExecSession.failed(*problem)
        options = {"env": env, "cwd": cwd, **Monitor(path, None).identity()}
        try:
            if tty:
                return await _exec_tty(argv, size, options)
            return await _exec_piped(argv, stdin, options)
        except OSError as exc:  # raced with a change of the command or the directory
            code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXECUTE
            return ExecSession.failed(code, f'exec: "{argv[0]}": {exc.strerror}\n')

    def _valid_id(self, id: str) -> bool:
        return bool(_ID.match(id))

    def _log_reader(self, path: Path) -> _Lines:
        return _Lines(LogReader(path / LOG_DIR))

    def _monitor_alive(self, path: Path) -> bool:
        record = read_json(path / MONITOR_PID)
        return record is not None and is_alive(record["pid"], record.get("start_ticks"))

    def _reap_monitor(self, path: Path) -> None:
        """Collect the exit of a monitor this process spawned (it is our child until we die);
        only a zombie of ours with the recorded start time, so no other child is disturbed."""
        record = read_json(path / MONITOR_PID)
        if record is None:
            return
        stat = proc_stat(record["pid"])
        if stat and stat[0] == "Z" and stat[1] == os.getpid() and stat[2] == record["start_ticks"]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(record["pid"], os.WNOHANG)

    def _state(self, path: Path) -> ContainerState:
        spec = read_json(path / SPEC)
        if spec is None:
            raise NotFound(f"no container {path.name!r} in {self.root}")
        base = {"id": spec["id"], "name": spec.get("name", ""), "labels": spec.get("labels", {})}
        pid = read_json(path / PID)
        started_at = pid.get("started_at") if pid else None
        ended = read_json(path / EXIT)
        if ended is not None:
            self._reap_monitor(path)
            code = ended.get("exit_code")
            return ContainerState(
                **base,
                status="exited" if code is not None else "unknown",
                exit_code=code,
                started_at=started_at,
                finished_at=ended.get("finished_at"),
                error=ended.get("error"),
            )
        monitor_alive = self._monitor_alive(path)
        if pid is not None:
            if monitor_alive or is_alive(pid["pid"], pid.get("start_ticks")):
                lost = None if monitor_alive else "monitor gone: the exit status will be lost"
                return ContainerState(
                    **base, status="running", pid=pid["pid"], started_at=started_at, error=lost
                )
            error = "monitor and workload ended without recording an exit status"
            return ContainerState(**base, status="unknown", started_at=started_at, error=error)
        if (path / MONITOR_PID).exists() and not monitor_alive:
            error = f"monitor died before starting the workload, see {path / MONITOR_LOG}"
            return ContainerState(**base, status="unknown", error=error)
        if self._start_interrupted(path):
            error = "start was interrupted before the monitor ran"
            return ContainerState(**base, status="unknown", error=error)
        return ContainerState(**base, status="created")

    def _start_interrupted(self, path: Path) -> bool:
        """`started` exists, yet no monitor showed up in time: the agent died mid-start."""
        try:
            age = time.time() - (path / STARTED).stat().st_mtime
        except FileNotFoundError:
            return False
        return age > self._start_timeout and not (path / MONITOR_PID).exists()


def _unrunnable(command: str, path: str, cwd: str) -> tuple[int, str] | None:
    """Exit code and message when `command` cannot be started from `cwd`, as a shell says."""
    if not os.path.isdir(cwd):
        return EXIT_NOT_FOUND, f"exec: working directory {cwd}: no such directory\n"
    if "/" in command:
        found = os.path.join(cwd, command)
        if not os.path.exists(found):
            return EXIT_NOT_FOUND, f'exec: "{command}": no such file or directory\n'
        if not os.access(found, os.X_OK) or os.path.isdir(found):
            return EXIT_CANNOT_EXECUTE, f'exec: "{command}": permission denied\n'
        return None
    if shutil.which(command, path=path) is None:
        return EXIT_NOT_FOUND, f'exec: "{command}": executable file not found in $PATH\n'
    return None


async def _exec_tty(argv: list[str], size: Size | None, options: dict[str, Any]) -> ExecSession:
    setsid = shutil.which("setsid", path=DEFAULT_PATH)
    if setsid is None:
        raise Unavailable("setsid (util-linux) is not installed", hint="apt-get install util-linux")
    master, slave = os.openpty()
    try:
        if size is not None:
            set_size(master, size)
        # Not a group leader, `setsid` makes no fork: the pid is the command's own.
        proc = await asyncio.create_subprocess_exec(
            setsid, "--ctty", "--", *argv, stdin=slave, stdout=slave, stderr=slave, **options
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # else the terminal never hangs up: the output would not end
    return ExecSession(tty=True, waiter=proc, pid=proc.pid, output=master, stdin=master)


async def _exec_piped(argv: list[str], stdin: bool, options: dict[str, Any]) -> ExecSession:
    pipes = Pipes(stdin)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=pipes.child_stdin,
            stdout=pipes.child_stdout,
            stderr=pipes.child_stderr,
            start_new_session=True,
            **options,
        )
        pipes.started()
    except BaseException:
        pipes.close()
        raise
    return pipes.session(proc, proc.pid)


def _stream(value: str) -> Stream:
    return "stderr" if value == "stderr" else "stdout"


class _Lines:
    """The process monitor's JSON-lines records as LogLines."""

    def __init__(self, reader: LogReader) -> None:
        self._reader = reader

    def read_existing(self) -> list[LogLine]:
        return [_line(r) for r in self._reader.read_existing()]

    def poll(self) -> list[LogLine]:
        return [_line(r) for r in self._reader.poll()]

    def close(self) -> None:
        self._reader.close()


def _line(record: Record) -> LogLine:
    return LogLine(time=record.time, stream=_stream(record.stream), text=record.text)
