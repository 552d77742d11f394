"""Interactive exec below the agent: `console.py` (a pty master received over a console socket,
terminal sizes, killing what an exec left) and `open_exec` of the runc and process drivers —
sizes set before the command starts and changed while it runs, pipes with end of input, exit
codes, and `close` leaving no process, fd or temporary file behind.

The runc cases need root, runc, conmon, tini-static and busybox-static (skipped otherwise).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from shoal.model.errors import Conflict, NotFound
from shoal.runtime.base import ContainerSpec
from shoal.runtime.console import ConsoleSocket, get_size, set_size
from shoal.runtime.exec_session import ExecSession, kill_tree
from shoal.runtime.monitor import start_ticks
from shoal.runtime.process import ProcessRuntime
from shoal.runtime.runc import RuncRuntime
from shoal.runtime.testsuite import clean_up
from tests.runtime.test_runc import CGROUP_PARENT, _missing, assert_no_leaks, build_rootfs

Driver = RuncRuntime | ProcessRuntime
Scenario = Callable[[Driver, str], Awaitable[None]]


def test_console_socket_receives_a_pty_master(tmp_path: Path) -> None:
    async def main() -> None:
        console = ConsoleSocket(tmp_path / "console.sock")
        master, slave = os.openpty()

        def send() -> None:  # as runc does: connect, send the master with its name, close
            with socket.socket(socket.AF_UNIX) as peer:
                peer.connect(str(tmp_path / "console.sock"))
                socket.send_fds(peer, [os.ttyname(slave).encode()], [master])

        try:
            await asyncio.to_thread(send)
            received = await console.receive(timeout=5)
            try:
                assert not os.get_inheritable(received) and not os.get_blocking(received)
                os.write(received, b"ping\n")  # the very terminal: its slave reads it
                assert os.read(slave, 100) == b"ping\n"
                set_size(received, (132, 43))
                assert get_size(slave) == (132, 43)
            finally:
                os.close(received)
        finally:
            console.close()
            os.close(master)
            os.close(slave)
        assert not (tmp_path / "console.sock").exists()

    asyncio.run(main())


def test_console_socket_refuses_a_peer_without_fd_and_times_out(tmp_path: Path) -> None:
    async def main() -> None:
        console = ConsoleSocket(tmp_path / "c.sock")
        try:

            def send_nothing() -> None:
                with socket.socket(socket.AF_UNIX) as peer:
                    peer.connect(str(tmp_path / "c.sock"))
                    peer.sendall(b"/dev/pts/0")

            await asyncio.to_thread(send_nothing)
            with pytest.raises(OSError, match="sent no file descriptor"):
                await console.receive(timeout=5)
            with pytest.raises(TimeoutError):
                await console.receive(timeout=0.05)
        finally:
            console.close()

    asyncio.run(main())


def processes(prefix: str = "", holding: str = "") -> list[int]:
    """Host pids of processes whose command line starts with `prefix` and holds `holding`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if (
                entry.name.isdigit()
                and argv.startswith(prefix.encode())
                and holding.encode() in argv
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_kill_tree_takes_descendants_and_session_members() -> None:
    # A background job, one that left the session (still a child), and a grandchild.
    script = "sleep 601.1 & setsid sleep 601.2 & sh -c 'sleep 601.3 & wait' & wait"
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        wait_for(lambda: len(processes("sleep 601.")) == 3)
        assert kill_tree(proc.pid, start_ticks(proc.pid)) >= 5
        assert proc.wait(5) == -9
        wait_for(lambda: processes("sleep 601.") == [])
    finally:
        for pid in processes("sleep 601."):
            os.kill(pid, 9)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- open_exec of both drivers --------------------------------------------------------------


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    if _missing:
        pytest.skip(f"runc runtime needs {', '.join(_missing)}")
    with tempfile.TemporaryDirectory(prefix="shoal-busybox-") as tmp:
        build_rootfs(Path(tmp) / "rootfs")
        yield Path(tmp) / "rootfs"


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary directory of this test's own for the exec work directories (short: a unix
    socket path goes in it), so that other runs on the machine do not disturb the checks."""
    with tempfile.TemporaryDirectory(prefix="sx-") as tmp:
        monkeypatch.setattr(tempfile, "tempdir", tmp)
        yield Path(tmp)


@pytest.fixture(params=["process", "runc"])
def driver(request: pytest.FixtureRequest) -> Callable[[Scenario], None]:
    """Runs a scenario against a running `sleep` container of that driver, then removes it
    and checks that nothing is left: runc state and cgroups, exec temp dirs, fds, reapers."""
    rootfs = request.getfixturevalue("rootfs") if request.param == "runc" else None
    private_tmp: Path = request.getfixturevalue("private_tmp")  # after the shared rootfs

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            with tempfile.TemporaryDirectory(prefix="containers-") as tmp:
                root = Path(tmp)
                rt: Driver = (
                    RuncRuntime(root, cgroup_parent=CGROUP_PARENT)
                    if rootfs
                    else ProcessRuntime(root)
                )
                fds = open_fds()
                spec = ContainerSpec(
                    id="c1",
                    name="c1",
                    command=["sleep", "300"],
                    rootfs=str(rootfs) if rootfs else None,
                    env={"GREETING": "hello"},
                    working_dir="/tmp",
                )
                try:
                    await rt.create(spec)
                    await rt.start("c1")
                    async with asyncio.timeout(30):
                        await scenario(rt, "c1")
                    assert open_fds() == fds, "fds left open"
                    assert [p.name for p in private_tmp.iterdir()] == [root.name]
                    assert processes(holding=f"--pid-file {private_tmp}/") == []
                finally:
                    await clean_up(rt)
                    if rootfs:
                        assert_no_leaks(root)

        asyncio.run(main())

    return run


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) - {"0", "1", "2"}


async def read_until(session: ExecSession, text: bytes, seen: bytearray) -> None:
    while text not in seen:
        chunk = await session.read_output()
        assert chunk, f"output ended before {text!r}: {bytes(seen)!r}"
        seen += chunk


async def read_all(read: Callable[[], Awaitable[bytes]]) -> bytes:
    out = b""
    while chunk := await read():
        out += chunk
    return out


def test_terminal_sized_before_start_and_resized(driver: Callable[[Scenario], None]) -> None:
    async def scenario(rt: Driver, id: str) -> None:
        session = await rt.open_exec(id, ["sh"], tty=True, stdin=True, size=(100, 30))
        try:
            seen = bytearray()
            await session.write(b'stty size; echo "$GREETING-$TERM"; pwd\n')
            await read_until(session, b"30 100", seen)
            await read_until(session, b"hello-xterm", seen)
            await read_until(session, b"/tmp", seen)
            session.resize((120, 40))
            await session.write(b"stty size; exit 5\n")
            await read_until(session, b"40 120", seen)
            assert await session.wait() == 5
            assert await session.read_errors() == b""  # a terminal has one stream
        finally:
            await session.close()

    driver(scenario)


def test_pipes_with_end_of_input(driver: Callable[[Scenario], None]) -> None:
    async def scenario(rt: Driver, id: str) -> None:
        script = "cat; echo err >&2; exit 4"
        session = await rt.open_exec(id, ["sh", "-c", script], stdin=True)
        try:
            assert session.has_stdin and not session.tty

            async def feed() -> bool:
                written = await session.write(b"x" * 300_000)  # more than pipes hold
                session.close_stdin()
                return written

            feeding = asyncio.create_task(feed())
            await asyncio.sleep(0.2)
            assert not feeding.done()  # nothing reads the output: all waits, nothing piles up
            out, err = await asyncio.gather(
                read_all(session.read_output), read_all(session.read_errors)
            )
            assert await feeding
            assert (len(out), err, await session.wait()) == (300_000, b"err\n", 4)
            assert not await session.write(b"more")  # stdin is closed: dropped
        finally:
            await session.close()
        quiet = await rt.open_exec(id, ["sh", "-c", "read x || echo no-input"])
        try:
            assert not quiet.has_stdin  # without stdin, the command reads an empty one
            assert await read_all(quiet.read_output) == b"no-input\n"
            assert await quiet.wait() == 0
        finally:
            await quiet.close()

    driver(scenario)


def test_a_command_that_cannot_start(driver: Callable[[Scenario], None]) -> None:
    async def scenario(rt: Driver, id: str) -> None:
        for tty in (True, False):
            session = await rt.open_exec(id, ["nosuch", "arg"], tty=tty, stdin=True)
            try:
                assert await session.wait() == 127
                assert session.message is not None
                assert 'exec: "nosuch": executable file not found in $PATH' in session.message
                assert await session.read_output() == b""
            finally:
                await session.close()
        with pytest.raises(NotFound):
            await rt.open_exec("nope", ["sh"])
        await rt.stop(id, grace=0)
        with pytest.raises(Conflict, match="not running"):
            await rt.open_exec(id, ["sh"], tty=True)

    driver(scenario)


def test_close_kills_what_still_runs(driver: Callable[[Scenario], None]) -> None:
    async def scenario(rt: Driver, id: str) -> None:
        for tty in (True, False):
            session = await rt.open_exec(
                id, ["sh", "-c", "sleep 602.1 & exec sleep 602.2"], tty=tty, stdin=True
            )
            try:
                await asyncio.to_thread(wait_for, lambda: len(processes("sleep 602.")) == 2)
            finally:
                await session.close()
            assert processes("sleep 602.") == []
            assert await session.wait() == 137  # SIGKILL
        assert (await rt.state(id)).status == "running"  # the workload itself is untouched

    driver(scenario)
