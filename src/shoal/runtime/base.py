"""The `Runtime` protocol: how the agent creates, runs, stops and observes one container.

Every driver (`process` today, `runc` and `docker` next, `fake` in unit tests) implements it
and passes the one conformance suite in `testsuite.py`.

Lifecycle: `create` records the spec (status `created`), `start` launches it (`running`), the
workload ends by itself or by `stop`/`kill` (`exited`, with an exit code: a death by signal N
is reported as 128+N, as Docker does), `remove` forgets it. A container is started at most
once: a restart is a new container (a new task), so history stays immutable.

Drivers keep what they know in a state directory per container and a small monitor process
per container that outlives the agent (the conmon / containerd-shim design), so a restarted
agent re-adopts running containers and learns how the others ended through `list()`.
"""

from __future__ import annotations

import builtins
import re
import signal as _signal
from collections.abc import AsyncIterator
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shoal.model.errors import Invalid

ContainerStatus = Literal["created", "running", "exited", "unknown"]
Stream = Literal["stdout", "stderr"]

EXIT_CANNOT_EXECUTE = 126
"""The command exists but cannot be run (permission denied, not executable): shells' code."""
EXIT_NOT_FOUND = 127
"""The command (or the working directory) does not exist: shells' code."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def parse_signal(value: str | int) -> int:
    """`"SIGTERM"`, `"TERM"`, `"15"` or `15` → 15; anything else is `Invalid`."""
    if isinstance(value, int) or value.isdigit():
        number = int(value)
        if number in {s.value for s in _signal.Signals}:
            return number
        raise Invalid(f"unknown signal number {value}")
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        raise Invalid(f"unknown signal {value!r}", hint="use a name like SIGTERM") from None


def exit_code_for_signal(signo: int) -> int:
    """The exit code reported for a workload killed by `signo` (Docker's convention)."""
    return 128 + signo


class ContainerResources(BaseModel):
    """Limits for one container. Drivers without cgroups (`process`) ignore them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(default=None, gt=0)
    memory: int | None = Field(default=None, gt=0, description="bytes")
    pids: int | None = Field(default=None, gt=0)
    memory_reservation: int | None = Field(default=None, gt=0, description="bytes, soft limit")


class ContainerMount(BaseModel):
    """A host directory or file (a bind, or a named volume's directory) seen in the container."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str
    read_only: bool = False

    @field_validator("source", "target")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class ContainerSpec(BaseModel):
    """Everything a driver needs to run one container; the caller has already merged
    the image's entrypoint/cmd/env with the service's into `command` and `env`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="unique on the node (the task id); names the state directory")
    name: str
    labels: dict[str, str] = Field(default_factory=dict, description="task, stack, service")
    image: str = ""
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    stop_signal: str = "SIGTERM"
    stop_grace_period: float = Field(default=10.0, ge=0)
    hostname: str | None = None
    resources: ContainerResources = Field(default_factory=ContainerResources)
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    log_max_files: int = Field(default=3, ge=1)
    # Isolation settings: drivers without namespaces (`process`) ignore them.
    rootfs: str | None = Field(default=None, description="prepared root filesystem directory")
    read_only: bool = False
    tmpfs: dict[str, str] = Field(default_factory=dict, description="target -> mount options")
    mounts: list[ContainerMount] = Field(default_factory=list)
    files: dict[str, str] = Field(
        default_factory=dict, description="container path -> host file, bound read-only"
    )
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    privileged: bool = False
    sysctls: dict[str, str] = Field(default_factory=dict)
    ulimits: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="name (nofile, nproc, …) -> (soft, hard)"
    )
    init: bool = Field(default=True, description="run a minimal init (tini) as PID 1")
    no_new_privileges: bool = True
    seccomp: bool = Field(default=True, description="apply the default seccomp profile")
    netns: str | None = Field(default=None, description="network namespace path to join")

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        # The id becomes a directory name: no separators, no dot-dot, bounded length.
        if not _ID.match(value):
            raise ValueError("must be 1-128 of [A-Za-z0-9_.-], starting with a letter or digit")
        return value

    @field_validator("stop_signal")
    @classmethod
    def _known_signal(cls, value: str) -> str:
        try:
            parse_signal(value)
        except Invalid as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("working_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    @field_validator("rootfs", "netns")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    @field_validator("tmpfs", "files")
    @classmethod
    def _absolute_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value:
            if not target.startswith("/"):
                raise ValueError(f"{target!r}: container paths must be absolute")
        return value


class ContainerState(BaseModel):
    """What a driver observed about one container."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    status: ContainerStatus
    pid: int | None = None
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = Field(default=None, description="why it could not start or was lost")
    oom_killed: bool = False


class LogLine(BaseModel):
    """One line a container wrote, without its newline; `time` is Unix seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: float
    stream: Stream
    text: str


class Runtime(Protocol):
    """A container driver. Unknown ids raise `NotFound`; a second `create` of an id `Conflict`."""

    name: str

    async def available(self) -> bool:
        """Whether this driver can run containers on this machine."""
        ...

    async def create(self, spec: ContainerSpec) -> ContainerState:
        """Record `spec`; nothing runs yet (status `created`)."""
        ...

    async def start(self, id: str) -> ContainerState:
        """Launch a created container; returns once the workload runs or failed to start.

        A command that cannot be started (missing binary 127, not executable 126) is reported
        in the returned state (`exited`, `error` set), never raised. Starting a running
        container returns its state; an exited one cannot be started again (`Conflict`).
        """
        ...

    async def stop(self, id: str, *, grace: float | None = None) -> ContainerState:
        """Send the spec's stop signal, SIGKILL after `grace` (default: the spec's grace
        period); returns the exited state. Idempotent on a container that is not running."""
        ...

    async def kill(self, id: str, signal: str | int) -> None:
        """Deliver `signal` to the workload now (SIGKILL takes every process of it)."""
        ...

    async def remove(self, id: str) -> None:
        """Stop it if running, then forget it and delete its state and logs."""
        ...

    async def state(self, id: str) -> ContainerState:
        """The container's current state."""
        ...

    async def list(self) -> builtins.list[ContainerState]:
        """Every container this runtime's state knows, running or not, sorted by id.

        A fresh instance over the same state (an agent restart) sees the same list.
        """
        ...

    def logs(
        self,
        id: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: float | None = None,
    ) -> AsyncIterator[LogLine]:
        """The container's log lines, oldest first: those at or after `since`, then the last
        `tail` of them. With `follow`, keep yielding new lines; the iteration ends once the
        container has exited and its log is drained. Raises `NotFound` when called."""
        ...

    async def wait(self, id: str) -> ContainerState:
        """Block until the container has exited (or is lost: `unknown`); returns that state.
        A created container is waited for through its start."""
        ...


class ExecSession(Protocol):
    """A command started by `InteractiveExec.open_exec` (`exec_session.ExecSession` is one)."""

    tty: bool

    @property
    def message(self) -> str | None:
        """Why the command could not start (for stderr; `wait` then gives 126 or 127)."""
        ...

    @property
    def has_stdin(self) -> bool: ...

    async def read_output(self) -> bytes:
        """The next chunk of the terminal's output (or stdout); b"" at its end. Nothing is read
        ahead: a caller that stops reading stalls the command."""
        ...

    async def read_errors(self) -> bytes:
        """The next chunk of stderr; b"" at its end, and at once with a terminal."""
        ...

    async def write(self, data: bytes) -> bool:
        """Feed stdin, waiting while it is full; False once it takes no more."""
        ...

    def close_stdin(self) -> None: ...

    def resize(self, size: tuple[int, int]) -> None:
        """Set the terminal's (columns, rows); nothing without a terminal."""
        ...

    async def wait(self) -> int:
        """The exit code (128+N after signal N)."""
        ...

    async def close(self) -> None:
        """Kill whatever of the command still runs, release every fd and file. Idempotent."""
        ...


@runtime_checkable
class InteractiveExec(Protocol):
    """What a driver that can run extra commands in a running container adds to `Runtime`
    (`runc` and `process`; not `fake`): `shoal exec -i/-t` goes through it."""

    async def open_exec(
        self,
        id: str,
        argv: builtins.list[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        size: tuple[int, int] | None = None,
    ) -> ExecSession:
        """Start `argv` in the running container `id`, in its environment, working directory
        and user. With `tty`, on a new terminal of `size` (columns, rows) that is its stdin,
        stdout and stderr; else with pipes (stdin only when `stdin`). Returns once it runs, or
        a session whose `message` says why it could not start. Raises `NotFound` for an
        unknown id and `Conflict` when the container is not running. The caller must `close`
        the session: that kills what is left of the command."""
        ...
