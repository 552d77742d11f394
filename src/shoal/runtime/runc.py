"""The `runc` driver: real OCI containers, each watched by its own conmon.

State directory `<root>/<id>/`:

    spec.json           the ContainerSpec             bundle/config.json  the OCI config
    started             created once by `start`       sync.json   conmon's report of `runc create`
    conmon.pid          conmon (written by conmon)    container.pid   the container's init
    running.json        {started_at, pid, ticks…}    failed.json  a start that failed, for good
    container.log       conmon's k8s-file log         persist/exit, persist/oom, exited/<id>

`start` launches conmon (in its own session, so it outlives the agent), which runs `runc create`,
holds the container's stdio, writes the log (rotated at `log_max_bytes`) and, when the
container ends, its exit status (128+N for signal N) and whether it was OOM-killed; then
`start` runs `runc start`. Everything else reads those files or calls runc, so a new instance
over the same root (an agent restart) re-adopts what runs and learns how the rest ended.
runc keeps its own state under `<root>/.runc` and the cgroups live at `/<cgroup_parent>/<id>`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shoal.model.errors import Conflict, Invalid, NotFound, Unavailable

from . import cgroups
from .base import EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, ContainerSpec, ContainerState
from .console import ConsoleSocket, Size
from .exec_session import ExecSession, Pipes, exec_dir, kill_tree, spawn_detached
from .kubelog import KubeLogReader
from .monitor import SPEC, STARTED, is_alive, read_json, start_ticks, write_json_atomic
from .ocispec import (
    RLIMITS,
    Host,
    User,
    build_config,
    caps_from_mask,
    check_command,
    read_rootfs_file,
    resolve_user,
)
from .seccomp import DEFAULT_PROFILE, load_profile
from .statedir import StateDirRuntime

BUNDLE, SYNC = "bundle", "sync.json"
CONMON_PID, PID, RUNNING, FAILED = "conmon.pid", "container.pid", "running.json", "failed.json"
LOG, PERSIST, EXIT_DIR, SOCK, CONMON_LOG = (
    "container.log",
    "persist",
    "exited",
    "sock",
    "conmon.log",
)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecResult(BaseModel):
    """How a command run with `exec_in` ended; output only when it had no terminal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exit_code: int
    stdout: str = ""
    stderr: str = ""


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name, path=os.environ.get("PATH", "") + ":" + _PATH)
        if found:
            return found
    return None


def _status_mask(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return 0


def _max_rlimits() -> dict[str, int]:
    """Hard limits a container may not exceed: without CAP_SYS_RESOURCE (24) runc cannot raise
    them above the agent's own."""
    if _status_mask("CapEff") >> 24 & 1:
        return {}
    out: dict[str, int] = {}
    for name in sorted(RLIMITS):
        number = getattr(resource, f"RLIMIT_{name.upper()}", None)
        if number is not None:
            hard = resource.getrlimit(number)[1]
            if hard != resource.RLIM_INFINITY:
                out[name] = hard
    return out


class RuncRuntime(StateDirRuntime):
    """Runs containers with runc and conmon; state under `root` (created on first use)."""

    name = "runc"

    def __init__(
        self,
        root: Path | str,
        *,
        runc: str | None = None,
        conmon: str | None = None,
        init: str | None = None,
        seccomp_profile: Path = DEFAULT_PROFILE,
        cgroup_parent: str = "shoal",
        poll_interval: float = 0.05,
        start_timeout: float = 30.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.runc_root = self.root / ".runc"
        self.runc = runc or _find(("runc",))
        self.conmon = conmon or _find(("conmon",))
        self.init = init or _find(("tini-static", "tini"))
        self.cgroup_parent = cgroup_parent
        self._seccomp_path = seccomp_profile
        self._poll = poll_interval
        self._start_timeout = start_timeout

    async def available(self) -> bool:
        return os.geteuid() == 0 and bool(self.runc and self.conmon and self.init)

    def _cgroup(self, id: str) -> str:
        return f"/{self.cgroup_parent}/{id}"

    async def create(self, spec: ContainerSpec) -> ContainerState:
        if not spec.rootfs or not Path(spec.rootfs).is_dir():
            raise Invalid(
                f"container {spec.id!r}: rootfs {spec.rootfs!r} is not a directory",
                hint="the runc runtime needs the image prepared as a root filesystem",
            )
        path = self._new_dir(spec)
        try:
            config = build_config(spec, self._user(spec), self._host(spec))
            (path / BUNDLE).mkdir()
            write_json_atomic(path / BUNDLE / "config.json", config)
            write_json_atomic(path / SPEC, spec.model_dump(mode="json"))
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return self._state(path)

    def _user(self, spec: ContainerSpec) -> User:
        rootfs = Path(spec.rootfs or "/")
        passwd = read_rootfs_file(rootfs, "/etc/passwd")
        return resolve_user(spec.user, passwd, read_rootfs_file(rootfs, "/etc/group"))

    def _host(self, spec: ContainerSpec) -> Host:
        wants_seccomp = spec.seccomp and not spec.privileged
        return Host(
            init_path=self.init,
            seccomp_profile=load_profile(self._seccomp_path) if wants_seccomp else None,
            host_caps=caps_from_mask(_status_mask("CapBnd")),
            max_rlimits=_max_rlimits(),
            cgroup_parent=self.cgroup_parent,
        )

    async def start(self, id: str) -> ContainerState:
        path = self._dir(id)
        already = self._claim_start(path)
        if already is not None:
            return already
        spec = self._spec(path)
        problem = check_command(spec)
        if problem is not None:
            return self._fail(path, *problem)
        if not self.conmon or not self.runc:
            (path / STARTED).unlink(missing_ok=True)
            raise Unavailable("conmon or runc is not installed", hint="apt-get install conmon runc")
        report = await self._spawn_conmon(path, spec)
        if report is None:
            await self._discard(id)
            return self._fail(path, 126, f"conmon did not report, see {path / CONMON_LOG}")
        pid = report.get("pid")
        if not isinstance(pid, int) or pid < 0:
            message = str(report.get("message", "runc create failed")).strip()
            await self._discard(id)
            code = 127 if "no such file" in message.lower() else 126
            return self._fail(path, code, message)
        rc, _, err = await self._runc("start", id)
        if rc != 0:
            await self._discard(id)
            return self._fail(path, 126, f"runc start failed: {err.strip()}")
        conmon = _read_int(path / CONMON_PID)
        record = {
            "started_at": time.time(),
            "pid": pid,
            "ticks": start_ticks(pid),
            "conmon": conmon,
            "conmon_ticks": start_ticks(conmon) if conmon else None,
        }
        write_json_atomic(path / RUNNING, record)
        return self._state(path)

    async def _spawn_conmon(self, path: Path, spec: ContainerSpec) -> dict[str, object] | None:
        """Start conmon; returns its report of `runc create` ({"pid": N} or {"pid": -1,
        "message": …}). The report goes to a file, not a pipe: conmon must not die of SIGPIPE
        when the agent does."""
        assert self.conmon and self.runc
        for sub in (PERSIST, EXIT_DIR, SOCK):
            (path / sub).mkdir(exist_ok=True)
        sync_fd = os.open(path / SYNC, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        argv = [
            self.conmon,
            *("--cid", spec.id, "--cuuid", spec.id, "--name", spec.name),
            *("--runtime", self.runc, "--runtime-arg", "--root"),
            *("--runtime-arg", str(self.runc_root), "--bundle", str(path / BUNDLE)),
            *("--container-pidfile", str(path / PID), "--conmon-pidfile", str(path / CONMON_PID)),
            *("--log-path", f"k8s-file:{path / LOG}", "--log-size-max", str(spec.log_max_bytes)),
            *("--exit-dir", str(path / EXIT_DIR), "--persist-dir", str(path / PERSIST)),
            *("--socket-dir-path", str(path / SOCK), "--log-level", "error"),
        ]
        env = {"PATH": _PATH, "_OCI_SYNCPIPE": str(sync_fd)}
        try:
            with open(path / CONMON_LOG, "ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    pass_fds=(sync_fd,),
                    start_new_session=True,  # killing the agent's group spares conmon
                    cwd="/",
                )
        except OSError as exc:
            (path / STARTED).unlink(missing_ok=True)
            raise Unavailable(f"cannot run conmon ({self.conmon}): {exc}") from exc
        finally:
            os.close(sync_fd)
        await proc.wait()  # conmon forks its long-lived half and the first one exits at once
        deadline = time.monotonic() + self._start_timeout
        delay = 0.001
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                text = (path / SYNC).read_text()
                if text.endswith("\n"):
                    report = json.loads(text.splitlines()[0])
                    return report if isinstance(report, dict) else None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.004)  # runc create takes ~20-60 ms: notice it promptly
        return None

    def _fail(self, path: Path, code: int, error: str) -> ContainerState:
        record = {"exit_code": code, "error": error, "finished_at": time.time()}
        write_json_atomic(path / FAILED, record)
        return self._state(path)

    async def _discard(self, id: str) -> None:
        """Undo a half-made container: runc's state and its cgroups."""
        await self._runc("delete", "--force", id)
        cgroups.remove(self._cgroup(id))

    async def _runc(self, *args: str) -> tuple[int, str, str]:
        if not self.runc:
            raise Unavailable("runc is not installed", hint="apt-get install runc")
        proc = await asyncio.create_subprocess_exec(
            self.runc,
            "--root",
            str(self.runc_root),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def _deliver(self, path: Path, signo: int) -> str | None:
        rc, _, err = await self._runc("kill", path.name, str(signo))
        if rc == 0:
            return None
        return err.strip() or f"runc kill exited {rc}"

    async def remove(self, id: str) -> None:
        path = self._dir(id)
        state = await self.stop(id)
        if state.status == "running":
            raise Unavailable(f"container {id!r} did not stop; not removed")
        rc, _, err = await self._runc("delete", "--force", id)
        if rc != 0 and "does not exist" not in err and "not exist" not in err:
            raise Unavailable(f"runc delete {id} failed: {err.strip()}")
        await self._until(path, lambda _: not self._conmon_alive(path), 5.0)
        busy = cgroups.remove(self._cgroup(id))
        if busy:
            raise Unavailable(f"cgroups of {id!r} still hold processes: {busy}")
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)

    async def exec_in(
        self,
        id: str,
        argv: builtins.list[str],
        *,
        tty: bool = False,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run `argv` in the running container (its env, user, cwd, capabilities and seccomp).
        Without `tty` the output is captured; with it, the caller's terminal is used. After
        `timeout` seconds the command and everything it started are killed and TimeoutError
        raised (health checks: half the CPU of an `open_exec` session, no helper process)."""
        if not argv:
            raise Invalid("exec needs a command")
        path = self._dir(id)
        if self._state(path).status != "running":
            raise Conflict(f"container {id!r} is not running", hint="start it first")
        if tty:
            assert self.runc
            proc = await asyncio.create_subprocess_exec(
                self.runc, "--root", str(self.runc_root), "exec", "--tty", id, *argv
            )
            return ExecResult(exit_code=await proc.wait())
        if timeout is not None:
            return await self._exec_timed(path, id, argv, timeout)
        rc, out, err = await self._runc("exec", id, *argv)
        return ExecResult(exit_code=rc, stdout=out, stderr=err)

    async def _exec_timed(
        self, path: Path, id: str, argv: builtins.list[str], timeout: float
    ) -> ExecResult:
        assert self.runc
        pid_file = path / f"exec-{os.getpid()}-{time.monotonic_ns()}.pid"
        proc = await asyncio.create_subprocess_exec(
            *(self.runc, "--root", str(self.runc_root), "exec", "--pid-file", str(pid_file)),
            *(id, *argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (TimeoutError, asyncio.CancelledError):  # ours, or the caller's own deadline
            said = pid_file.read_bytes().strip() if pid_file.exists() else b""
            if said.isdigit():  # the command, as the host sees it, and all it started
                pid = int(said)
                await asyncio.to_thread(kill_tree, pid, start_ticks(pid))
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        finally:
            pid_file.unlink(missing_ok=True)
        code = proc.returncode or 0
        return ExecResult(
            exit_code=code, stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace")
        )

    async def open_exec(
        self,
        id: str,
        argv: builtins.list[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        size: Size | None = None,
    ) -> ExecSession:
        """Start `argv` in the running container, as `exec_in` does, with a terminal (its
        master comes over a console socket, sized before the command starts) or with pipes.

        runc hands a console over only when it detaches, so `runc exec --detach` runs under
        the subreaper of `reaper.py`, which waits for the command and exits with its code."""
        if not argv:
            raise Invalid("exec needs a command")
        path = self._dir(id)
        if self._state(path).status != "running":
            raise Conflict(f"container {id!r} is not running", hint="start it first")
        if not self.runc:
            raise Unavailable("runc is not installed", hint="apt-get install runc")
        work, remove = exec_dir()
        try:
            process = _exec_process(read_json(path / BUNDLE / "config.json"), argv, tty, size)
            write_json_atomic(work / "process.json", process)
            command = [self.runc, "--root", str(self.runc_root), "--log", str(work / "runc.log")]
            command += ["--log-format", "json", "exec", "--detach", "--pid-file", str(work / "pid")]
            command += ["--process", str(work / "process.json")]
            if tty:
                return await self._exec_tty(id, command, work, remove)
            return await self._exec_piped(id, command, work, remove, stdin)
        except BaseException:
            remove()
            raise

    async def _exec_tty(
        self, id: str, command: builtins.list[str], work: Path, remove: Callable[[], None]
    ) -> ExecSession:
        console = ConsoleSocket(work / "console.sock")
        try:
            with open(work / "runc.err", "wb") as err:
                waiter, pid = await spawn_detached(
                    [*command, "--console-socket", str(console.path), id],
                    work / "pid",
                    stdin=subprocess.DEVNULL,
                    stdout=err.fileno(),
                    stderr=err.fileno(),
                )
            if pid is None:
                return ExecSession.failed(*_exec_error(await waiter.wait(), work), on_close=remove)
            try:
                master = await console.receive()
            except BaseException as exc:
                await ExecSession(tty=True, waiter=waiter, pid=pid).close()
                if isinstance(exc, TimeoutError | OSError):
                    raise Unavailable(f"runc exec did not hand over a terminal: {exc}") from None
                raise
        finally:
            console.close()
        return ExecSession(
            tty=True, waiter=waiter, pid=pid, output=master, stdin=master, on_close=remove
        )

    async def _exec_piped(
        self,
        id: str,
        command: builtins.list[str],
        work: Path,
        remove: Callable[[], None],
        stdin: bool,
    ) -> ExecSession:
        # The command inherits runc's stdio (and so the waiter's).
        pipes = Pipes(stdin)
        try:
            waiter, pid = await spawn_detached(
                [*command, id],
                work / "pid",
                stdin=pipes.child_stdin,
                stdout=pipes.child_stdout,
                stderr=pipes.child_stderr,
            )
            pipes.started()
        except BaseException:
            pipes.close()
            raise
        if pid is None:  # what runc said on stderr is in its log, better worded: dropped
            pipes.close()
            return ExecSession.failed(*_exec_error(await waiter.wait(), work), on_close=remove)
        return pipes.session(waiter, pid, on_close=remove)

    async def stats(self, id: str) -> cgroups.CgroupStats:
        """CPU, memory and pids usage of a running container, from its cgroups."""
        path = self._dir(id)
        found = cgroups.stats(self._cgroup(id))
        if found is None or self._state(path).status != "running":
            raise Conflict(f"container {id!r} is not running")
        return found

    def _log_reader(self, path: Path) -> KubeLogReader:
        return KubeLogReader(path / LOG)

    def _conmon_alive(self, path: Path) -> bool:
        running = read_json(path / RUNNING)
        if running and running.get("conmon"):
            return is_alive(running["conmon"], running.get("conmon_ticks"))
        pid = _read_int(path / CONMON_PID)
        return pid is not None and is_alive(pid, None)

    def _exit(self, path: Path) -> tuple[int, float] | None:
        for file in (path / PERSIST / "exit", path / EXIT_DIR / path.name):
            with contextlib.suppress(FileNotFoundError, ValueError):
                code = int(file.read_text().strip())
                return code, file.stat().st_mtime
        return None

    def _state(self, path: Path) -> ContainerState:
        spec = read_json(path / SPEC)
        if spec is None:
            raise NotFound(f"no container {path.name!r} in {self.root}")
        base = {"id": spec["id"], "name": spec.get("name", ""), "labels": spec.get("labels", {})}
        failed = read_json(path / FAILED)
        if failed is not None:
            return ContainerState(
                **base,
                status="exited",
                exit_code=failed["exit_code"],
                error=failed.get("error"),
                finished_at=failed.get("finished_at"),
            )
        running = read_json(path / RUNNING)
        started_at = running.get("started_at") if running else None
        ended = self._exit(path)
        if ended is not None:
            code, finished_at = ended
            oom = (path / PERSIST / "oom").exists() or (
                code == 137 and cgroups.oom_kills(self._cgroup(path.name)) > 0
            )
            return ContainerState(
                **base,
                status="exited",
                exit_code=code,
                oom_killed=oom,
                started_at=started_at,
                finished_at=max(finished_at, started_at or 0),
            )
        if running is not None:
            if self._conmon_alive(path):
                pid = running["pid"]
                return ContainerState(**base, status="running", pid=pid, started_at=started_at)
            if is_alive(running["pid"], running.get("ticks")):
                error = "conmon is gone: the exit status will be lost"
                return ContainerState(
                    **base, status="running", pid=running["pid"], started_at=started_at, error=error
                )
            error = "conmon and the container ended without recording an exit status"
            return ContainerState(**base, status="unknown", started_at=started_at, error=error)
        if (path / STARTED).exists() and not self._conmon_alive(path):
            age = time.time() - (path / STARTED).stat().st_mtime
            if age > self._start_timeout:
                error = "start was interrupted before the container ran"
                return ContainerState(**base, status="unknown", error=error)
        return ContainerState(**base, status="created")


def _exec_process(
    config: dict[str, object] | None, argv: builtins.list[str], tty: bool, size: Size | None
) -> dict[str, object]:
    """The container's own process (env, user, cwd, capabilities, rlimits) running `argv`:
    what `runc exec ID ARGV…` would build, plus a terminal of `size` (TERM=xterm, as Docker)."""
    base = config.get("process") if config else None
    if not isinstance(base, dict):
        raise Unavailable("the container's OCI config has no process")
    process: dict[str, object] = {**base, "args": argv, "terminal": tty}
    process.pop("consoleSize", None)
    if tty:
        env = [str(e) for e in base.get("env", [])]
        if not any(e.startswith("TERM=") for e in env):
            process["env"] = [*env, "TERM=xterm"]
        if size is not None:
            process["consoleSize"] = {"width": size[0], "height": size[1]}
    return process


def _exec_error(code: int, work: Path) -> tuple[int, str]:
    """Why `runc exec` failed, from its JSON log: a command that could not start is 127 (not
    found) or 126 (cannot execute), as in a shell; anything else keeps runc's code."""
    message = ""
    with contextlib.suppress(OSError):
        for line in (work / "runc.log").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("level") in ("error", "fatal"):
                    message = str(record.get("msg", ""))
    if not message:
        with contextlib.suppress(OSError):
            message = (work / "runc.err").read_text(errors="replace").strip()
    why = message.rpartition("exec failed: ")[2]
    if "exec: " in why:
        why = why[why.index("exec: ") :]
        missing = "not found" in why or "no such file" in why
        return (EXIT_NOT_FOUND if missing else EXIT_CANNOT_EXECUTE), why + "\n"
    return code, (
        f"runc exec failed: {message}" if message else f"runc exec failed ({code})"
    ) + "\n"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
