"""`shoal exec -it` / `-i`: the real CLI on a real pty, through server and agent, into runc
containers (and host processes): terminal size and resize, exit codes, stdin from a pipe,
refusals with their hints, and nothing left running after the CLI is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from tests.e2e.cluster import RUNC_USABLE, Cluster, cluster, needs_runc, wait_until
from tests.images.busybox import make_busybox_image

RUNC_STACK = """
name: it
services:
  box:
    image: localhost/test/busybox:1
    command: [sleep, "300"]
    deploy:
      update_config: {monitor: 1s}
  once:
    image: localhost/test/busybox:1
    command: ["true"]
    deploy: {mode: replicated-job}
"""

HOST_STACK = """
name: hp
services:
  sleeper:
    image: none
    command: [sleep, "300"]
    working_dir: /tmp
    environment: {GREETING: hello-from-env}
"""


def env_for(c: Cluster) -> dict[str, str]:
    env = {**os.environ, "SHOAL_ADDR": c.addr, "SHOAL_DATA_DIR": str(c.data)}
    env.pop("SHOAL_TOKEN", None)
    return env


def shoal(
    c: Cluster, *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        env=env_for(c),
        input=stdin,
        timeout=60,
        cwd=cwd,
    )


def deploy(c: Cluster, tmp: Path, compose: str) -> None:
    (tmp / "compose.yaml").write_text(compose)
    done = shoal(c, "deploy", "-f", "compose.yaml", "--wait", "--timeout", "60", cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr


def set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """The CLI on a pty of our own that is its controlling terminal (so resizing the pty
    sends it SIGWINCH, as a terminal emulator does)."""

    def __init__(self, c: Cluster, args: list[str], cols: int, rows: int) -> None:
        self.master, slave = os.openpty()
        set_winsize(slave, cols, rows)
        self.proc = subprocess.Popen(
            ["setsid", "--ctty", sys.executable, "-m", "shoal", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env_for(c),
        )
        os.close(slave)
        self.output = b""

    def read_until(self, text: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not seen in {self.output!r}"
            if not self._read(left):
                raise AssertionError(f"the terminal closed before {text!r}: {self.output!r}")
        return self.output

    def _read(self, timeout: float) -> bool:
        import select

        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the CLI ended and closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            assert time.monotonic() < deadline, f"the CLI did not end: {self.output!r}"
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


@contextlib.contextmanager
def terminal(c: Cluster, args: list[str], cols: int = 100, rows: int = 30) -> Iterator[Terminal]:
    term = Terminal(c, args, cols, rows)
    try:
        yield term
    finally:
        term.close()


def reapers(c: Cluster) -> list[int]:
    """Host processes waiting for an exec of this cluster (one per open runc exec session)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes()
            if b"shoal.runtime.reaper" in argv and str(c.data).encode() in argv:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def runc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not RUNC_USABLE:
        pytest.skip("needs root, runc, conmon and busybox-static")
    root = tmp_path_factory.mktemp("exec-tty")
    with cluster(root, "up", runtime="runc") as c:
        make_busybox_image(ContentStore(c.data / "agent" / "images"), "localhost/test/busybox:1")
        deploy(c, root, RUNC_STACK)
        yield c


@needs_runc
def test_terminal_size_resize_and_exit_code(runc_stack: Cluster) -> None:
    with terminal(runc_stack, ["exec", "-it", "it/box", "sh"], cols=100, rows=30) as term:
        term.read_until(b"# ")
        term.type("stty size\r")
        term.read_until(b"30 100")
        set_winsize(term.master, 120, 40)  # the CLI gets SIGWINCH and passes the size on
        deadline = time.monotonic() + 10
        while b"40 120" not in term.output:
            assert time.monotonic() < deadline, term.output
            term.type("stty size\r")
            time.sleep(0.05)
            term._read(0.2)
        term.type("echo hi-$((1+2)); exit 7\r")
        assert term.finish() == 7
        assert b"hi-3" in term.output
    assert reapers(runc_stack) == []


@needs_runc
def test_stdin_from_a_pipe_and_separate_stderr(runc_stack: Cluster) -> None:
    piped = shoal(runc_stack, "exec", "-i", "it/box", "cat", stdin="data\n")
    assert (piped.returncode, piped.stdout) == (0, "data\n"), piped.stderr
    both = shoal(
        runc_stack,
        "exec",
        "-i",
        "it/box",
        "--",
        "sh",
        "-c",
        "wc -c; echo err >&2; exit 3",
        stdin="x" * 200_000,  # more than a pipe holds: input is streamed, not sent at once
    )
    assert both.returncode == 3, both.stderr
    assert both.stdout.strip() == "200000" and both.stderr == "err\n"
    tty_only = shoal(runc_stack, "exec", "-t", "it/box", "sh", "-c", "test -t 0 && echo on-a-tty")
    assert (tty_only.returncode, tty_only.stdout) == (0, "on-a-tty\n"), tty_only.stderr
    missing = shoal(runc_stack, "exec", "-i", "it/box", "nosuch")
    assert missing.returncode == 127
    assert 'exec: "nosuch": executable file not found in $PATH' in missing.stderr


@needs_runc
def test_refusals_say_why_and_what_to_do(runc_stack: Cluster) -> None:
    with runc_stack.client() as api:
        (job,) = api.tasks("it", "once", all=True)
    stopped = shoal(runc_stack, "exec", "-i", job.id, "sh")
    assert stopped.returncode == 1
    assert "is complete, not running: cannot exec into it" in stopped.stderr
    assert "hint: pick a running task with `shoal ps it`" in stopped.stderr
    no_tty = shoal(runc_stack, "exec", "-it", "it/box", "sh", stdin="")
    assert no_tty.returncode == 1 and "the input device is not a TTY" in no_tty.stderr
    absent = shoal(runc_stack, "exec", "-i", "nosuchtask", "sh")
    assert absent.returncode == 1 and "no task 'nosuchtask'" in absent.stderr
    assert "Traceback" not in stopped.stderr + no_tty.stderr + absent.stderr


@needs_runc
def test_killing_the_cli_kills_the_command(runc_stack: Cluster) -> None:
    def sleeping() -> str:
        ps = shoal(runc_stack, "exec", "it/box", "ps")
        assert ps.returncode == 0, ps.stderr
        return "\n".join(line for line in ps.stdout.splitlines() if "sleep 4242" in line)

    with terminal(runc_stack, ["exec", "-it", "it/box", "sh"]) as term:
        term.read_until(b"# ")
        term.type("sleep 4242 & sleep 4242\r")
        wait_until(sleeping, timeout=10, interval=0.05)
        os.kill(term.proc.pid, signal.SIGKILL)
        term.proc.wait(10)
    wait_until(lambda: sleeping() == "", timeout=10, interval=0.05)
    wait_until(lambda: reapers(runc_stack) == [], timeout=5, interval=0.05)


@needs_runc
def test_escape_keys_end_the_session(runc_stack: Cluster) -> None:
    with terminal(runc_stack, ["exec", "-it", "it/box", "sh"]) as term:
        term.read_until(b"# ")
        term.type("\x10\x11")
        assert term.finish() == 0
        assert b"left the session (ctrl-p ctrl-q)" in term.output
    wait_until(lambda: reapers(runc_stack) == [], timeout=5, interval=0.05)


def test_process_runtime_terminal_pipes_and_a_lost_agent(split: Cluster, tmp_path: Path) -> None:
    deploy(split, tmp_path, HOST_STACK)
    piped = shoal(split, "exec", "-i", "hp/sleeper", "--", "sh", "-c", "cat; pwd", stdin="data\n")
    assert (piped.returncode, piped.stdout) == (0, "data\n/tmp\n"), piped.stderr

    with terminal(split, ["exec", "-it", "hp/sleeper"], cols=90, rows=20) as term:
        term.read_until(b"# ")
        term.type('stty size; echo "$GREETING"; exit 3\r')
        assert term.finish() == 3
        assert b"20 90" in term.output and b"hello-from-env" in term.output

    with terminal(split, ["exec", "-it", "hp/sleeper", "sh"]) as term:
        term.read_until(b"# ")
        split.kill9("agent")
        assert term.finish() == 1
        assert b"lost the agent of node" in term.output
    gone = shoal(split, "exec", "-i", "hp/sleeper", "true")
    assert gone.returncode == 1 and "unreachable" in gone.stderr, gone.stderr
    split.start_agent()  # so that the stack can be removed at teardown
