"""The per-container monitor, and the state-directory format it shares with the drivers.

`python -m shoal.runtime.monitor [--ready-fd N] <state_dir>` runs one container's workload:

* starts `spec.json`'s command in its own process group (stdin /dev/null, env from the spec
  only: the agent's environment, tokens included, never leaks in), then writes `pid`;
* writes every stdout/stderr line, timestamped, to `log/` (see `logs.py`) — files, never a pipe
  to the agent, so output survives the agent;
* forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 to the workload's group;
* when the workload's main process ends, SIGKILLs whatever is left of its group (as a container's
  PID namespace goes with its init), reaps it and writes `exit.json` atomically, then exits.

The driver starts it in a session of its own, so killing the agent and its process group leaves
monitor and workload running; the exit status waits in `exit.json` for whoever asks next. It
writes a byte to the `--ready-fd` pipe once `pid` (or a start failure in `exit.json`) is on disk.

Kept to the standard library (no pydantic, no asyncio): one of these runs per container.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shoal.runtime.logs import LineSplitter, LogWriter

SPEC = "spec.json"
STARTED = "started"  # created exclusively by the driver: at most one monitor per container
MONITOR_PID = "monitor.pid"  # {"pid", "start_ticks"}
PID = "pid"  # {"pid", "start_ticks", "started_at"} of the workload
EXIT = "exit.json"  # {"exit_code", "signal", "finished_at", "started_at", "error"}
MONITOR_LOG = "monitor.log"  # the monitor's own stderr: tracebacks only
LOG_DIR = "log"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
DRAIN_AFTER_EXIT = 1.0  # seconds to keep reading from processes that escaped the group


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    """Readers see the old file or the whole new one, never a partial write."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # 0600: spec.json carries the environment, secrets included.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as f:
            obj = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, ppid, start time in clock ticks since boot) from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def is_alive(pid: int, start_ticks: int | None) -> bool:
    """The process still runs (not a zombie) and is the same one: its start time matches,
    so a recycled pid is not mistaken for it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but belongs to someone else: the start time below decides
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_ticks is None or stat[2] == start_ticks


def start_ticks(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else stat[2]


class Monitor:
    def __init__(self, state_dir: Path, ready_fd: int | None) -> None:
        self.dir = state_dir
        self.ready_fd = ready_fd
        self.spec: dict[str, Any] = read_json(state_dir / SPEC) or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []
        self.started_at: float | None = None

    def forward(self, signo: int, _frame: object) -> None:
        if self.proc is None:
            self.pending.append(signo)  # delivered as soon as the workload exists
            return
        if self.proc.returncode is not None:
            return  # reaped: its pid may already belong to someone else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signo)

    def run(self) -> int:
        write_json_atomic(
            self.dir / MONITOR_PID, {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid())}
        )
        for forwarded in FORWARDED:
            signal.signal(forwarded, self.forward)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.proc = self.spawn(out_w, err_w)
        except (OSError, ValueError, LookupError) as exc:
            os.close(out_r)
            os.close(err_r)
            if isinstance(exc, OSError):
                code = 127 if exc.errno == errno.ENOENT else 126
                return self.finish(code, None, f"cannot start: {self.describe(exc)}")
            return self.finish(126, None, f"cannot start: {exc}")
        finally:
            os.close(out_w)
            os.close(err_w)
        self.started_at = time.time()
        pid = self.proc.pid
        record = {"pid": pid, "start_ticks": start_ticks(pid), "started_at": self.started_at}
        write_json_atomic(self.dir / PID, record)
        self.signal_ready()
        for signo in self.pending:
            self.forward(signo, None)
        self.pump(out_r, err_r)
        status = self.proc.wait()
        if status < 0:
            return self.finish(128 - status, -status, None)
        return self.finish(status, None, None)

    def spawn(self, out_w: int, err_w: int) -> subprocess.Popen[bytes]:
        env = {"PATH": DEFAULT_PATH}
        if self.spec.get("hostname"):
            env["HOSTNAME"] = self.spec["hostname"]
        env.update(self.spec.get("env") or {})
        return subprocess.Popen(
            self.spec["command"],
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=self.spec.get("working_dir") or "/",
            env=env,
            process_group=0,
            close_fds=True,
            **self.identity(),
        )

    def identity(self) -> dict[str, Any]:
        """`user: name|uid[:group|gid]` as Popen arguments. Only root can switch; others run
        as themselves (documented limit of the process driver)."""
        user = self.spec.get("user")
        if not user or os.geteuid() != 0:
            return {}
        name, _, group = str(user).partition(":")
        if name.isdigit():  # a bare uid need not be in /etc/passwd (then gid 0, as Docker)
            uid, primary = int(name), 0
            with contextlib.suppress(KeyError):
                primary = pwd.getpwuid(uid).pw_gid
        else:
            entry = pwd.getpwnam(name)
            uid, primary = entry.pw_uid, entry.pw_gid
        gid: int | str = (int(group) if group.isdigit() else group) if group else primary
        return {"user": uid, "group": gid, "extra_groups": []}

    def describe(self, exc: OSError) -> str:
        wd = self.spec.get("working_dir")
        if wd and exc.filename == wd:
            return f"working directory {wd}: {exc.strerror}"
        return f"{self.spec['command'][0]}: {exc.strerror}"

    def pump(self, out_r: int, err_r: int) -> None:
        """Copy output to the log until the workload is gone and its pipes are drained."""
        assert self.proc is not None
        spec = self.spec
        writer = LogWriter(
            self.dir / LOG_DIR,
            max_bytes=int(spec.get("log_max_bytes", 10 << 20)),
            max_files=int(spec.get("log_max_files", 3)),
        )
        splitters = {out_r: LineSplitter(), err_r: LineSplitter()}
        streams = {out_r: "stdout", err_r: "stderr"}
        sel = selectors.DefaultSelector()
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        exit_fd: int | None = None  # without pidfd (old kernel), notice the exit by polling
        with contextlib.suppress(OSError):
            exit_fd = os.pidfd_open(self.proc.pid)
            sel.register(exit_fd, selectors.EVENT_READ)
        deadline: float | None = None  # set once the main process has ended
        while True:
            if deadline is None and exit_fd is None and self.proc.poll() is not None:
                deadline = self.group_exited()
            if deadline is not None and not any(fd in sel.get_map() for fd in streams):
                break
            timeout = None if exit_fd is not None else 0.2
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break  # a process that left the group still holds the pipes: stop here
            for key, _ in sel.select(timeout):
                fd = key.fd
                assert isinstance(fd, int)
                if fd == exit_fd:
                    sel.unregister(fd)
                    os.close(fd)
                    exit_fd = None
                    deadline = self.group_exited()
                    continue
                data = os.read(fd, 65536)
                now = time.time()
                lines = splitters[fd].feed(data) if data else splitters[fd].flush()
                for line in lines:
                    writer.write(streams[fd], line, now)
                if not data:
                    sel.unregister(fd)
        sel.close()
        for fd in streams:
            for line in splitters[fd].flush():
                writer.write(streams[fd], line, time.time())
            os.close(fd)
        if exit_fd is not None:
            os.close(exit_fd)
        writer.close()

    def group_exited(self) -> float:
        """The main process ended: end the rest of its group, allow a moment to drain."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return time.monotonic() + DRAIN_AFTER_EXIT

    def finish(self, code: int, signo: int | None, error: str | None) -> int:
        record = {
            "exit_code": code,
            "signal": signo,
            "started_at": self.started_at,
            "finished_at": time.time(),
            "error": error,
        }
        write_json_atomic(self.dir / EXIT, record)
        self.signal_ready()
        return 0

    def signal_ready(self) -> None:
        if self.ready_fd is None:
            return
        with contextlib.suppress(OSError):  # the agent went away while starting us
            os.write(self.ready_fd, b"1")
        os.close(self.ready_fd)
        self.ready_fd = None


def main(argv: list[str]) -> int:
    ready_fd: int | None = None
    if len(argv) == 3 and argv[0] == "--ready-fd":
        ready_fd, argv = int(argv[1]), argv[2:]
    if len(argv) != 1:
        print("usage: python -m shoal.runtime.monitor [--ready-fd N] STATE_DIR", file=sys.stderr)
        return 2
    state_dir = Path(argv[0]).resolve()
    # Hold nothing of the agent's: an inherited socket would keep its port busy after it dies.
    keep = {0, 1, 2} if ready_fd is None else {0, 1, 2, ready_fd}
    for fd in range(3, max(keep) + 1):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.closerange(max(keep) + 1, os.sysconf("SC_OPEN_MAX"))
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.chdir("/")  # never pin the agent's working directory (or its mount)
    monitor = Monitor(state_dir, ready_fd)
    try:
        return monitor.run()
    except BaseException as exc:
        # Never leave a workload unsupervised: a monitor that fails takes it down and says why.
        if monitor.proc is not None and monitor.proc.poll() is None:
            os.killpg(monitor.proc.pid, signal.SIGKILL)
            monitor.proc.wait()
        monitor.finish(137 if monitor.proc else 126, None, f"monitor failed: {exc!r}")
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
