"""Real shoal processes for end-to-end tests: server, agent or `shoal up`, on free loopback ports.

Everything started here is stopped by PID at teardown, and so are the workloads the agent left
running (their pids are in the runtime's state directories), even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout: float = 40.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = check()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


class Cluster:
    def __init__(self, root: Path, runtime: str = "process") -> None:
        self.root = root
        self.runtime = runtime
        self.data = root / "data"
        self.port = free_port()
        self.agent_port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "SHOAL_DATA_DIR": str(self.data)},
            start_new_session=True,  # so kill -9 of its group hits only it
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_up(self) -> None:
        self._spawn(
            "up",
            "up",
            "--listen",
            self.addr,
            "--agent-listen",
            f"127.0.0.1:{self.agent_port}",
            "--runtime",
            self.runtime,
        )
        self.wait_ready()
        wait_until(self.node_ready)

    def start_server(self) -> None:
        self._spawn("server", "server", "--listen", self.addr)
        self.wait_ready()

    def start_agent(self) -> None:
        token = (self.data / "token").read_text().strip()
        self._spawn(
            "agent",
            "agent",
            "--join",
            self.addr,
            "--token",
            token,
            "--listen",
            f"127.0.0.1:{self.agent_port}",
            "--runtime",
            self.runtime,
        )
        wait_until(self.node_ready)

    def node_ready(self) -> bool:
        with self.client() as api:
            return any(n.status.state == "ready" for n in api.nodes())

    def wait_ready(self) -> None:
        import httpx

        wait_until(lambda: httpx.get(f"http://{self.addr}/v1/health", timeout=1).status_code == 200)

    def client(self) -> Client:
        token = (self.data / "token").read_text().strip()
        return Client(self.addr, token)

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def workload_pids(self) -> list[int]:
        pids = []
        for pid_file in self.data.glob("agent/containers/*/*pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pid_file.read_text().split()[0]))
        return pids

    def close(self) -> None:
        with contextlib.suppress(Exception), self.client() as api:
            for stack in api.stacks():
                api.remove_stack(stack["name"])
            wait_until(lambda: not api.stacks(), timeout=15)
        bridges = self.data / "agent" / "net" / "bridges.json"  # the agent's last network sync
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not bridges.exists() or bridges.read_text() == "{}", timeout=10)
        for name in list(self.procs):
            self.stop(name)
        for pid in self.workload_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.runtime == "runc":
            self._clean_runc()

    def _clean_runc(self) -> None:
        """Whatever a failed test left: containers (and their cgroups), then rootfs mounts."""
        import asyncio

        from shoal.images.rootfs import release_rootfs
        from shoal.runtime.runc import RuncRuntime

        runc_root = self.data / "agent" / "runc"
        if runc_root.exists():

            async def remove_all() -> None:
                runtime = RuncRuntime(runc_root)
                for state in await runtime.list():
                    with contextlib.suppress(Exception):
                        await runtime.remove(state.id)

            asyncio.run(remove_all())
        for directory in (self.data / "agent" / "rootfs").glob("*"):
            with contextlib.suppress(Exception):
                release_rootfs(directory)
        self._clean_network()

    def _clean_network(self) -> None:
        """What the agent could not tear down (a test killed it): namespaces, bridges, rules."""
        import asyncio
        import json

        from shoal.network import firewall, netns

        net = self.data / "agent" / "net"
        tasks = [p.stem for p in (net / "tasks").glob("*.json")]
        made = net / "bridges.json"
        bridges = list(json.loads(made.read_text())) if made.exists() else []
        if not tasks and not bridges:
            return

        async def clean() -> None:
            for task_id in tasks:
                with contextlib.suppress(Exception):
                    await netns.delete(f"shoal-{task_id}")
            for bridge in bridges:
                subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
            await firewall.cleanup(
                prefix=firewall.agent_prefix(str((self.data / "agent").resolve()))
            )

        asyncio.run(clean())


def shoal(c: Cluster, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against `c` (its address and admin token; stdin is not a terminal)."""
    env = {**os.environ, "SHOAL_ADDR": c.addr, "SHOAL_DATA_DIR": str(c.data)}
    env.pop("SHOAL_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


RUNC_USABLE = os.geteuid() == 0 and all(shutil.which(t) for t in ("runc", "conmon", "busybox"))
needs_runc = pytest.mark.skipif(
    not RUNC_USABLE, reason="needs root, runc, conmon and busybox-static"
)
CNI_USABLE = RUNC_USABLE and bool(shutil.which("iptables")) and Path("/usr/lib/cni/bridge").exists()
needs_cni = pytest.mark.skipif(not CNI_USABLE, reason="needs root, runc, conmon, busybox, CNI")


@contextlib.contextmanager
def cluster(root: Path, mode: str = "up", runtime: str = "process") -> Iterator[Cluster]:
    c = Cluster(root, runtime)
    try:
        if mode == "up":
            c.start_up()
        yield c
    finally:
        c.close()
