"""Docker Engine as a peer: a private dockerd (own data-root, exec-root, socket, pidfile) with its
default bridge and iptables (for `-p 127.0.0.1:H:C`), later made a one-node Swarm.

Stopping: `swarm leave --force`, SIGTERM to dockerd's PID (SIGKILL after 20 s), SIGKILL to the
containerd it started if still there, and the host cleanup in common.HostSnapshot (docker0,
docker_gwbridge, DOCKER* chains, mounts under the temp root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from .common import descendants, processes_matching, rss_mb, run, stop_pid, wait_http

SWARM_LABEL = "com.docker.swarm.service.name"


class Docker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = str(root / "docker.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.swarm = False
        self.below: list[int] = []
        self.env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        self.version = ""

    @staticmethod
    def missing() -> str | None:
        for tool in ("dockerd", "docker", "containerd"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed (apt-get install docker.io)"
        return None

    def start(self) -> float:
        self.root.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        with open(self.root / "dockerd.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *("dockerd", "--data-root", str(self.root / "data")),
                    *("--exec-root", str(self.root / "exec"), "-H", f"unix://{self.sock}"),
                    *("--pidfile", str(self.root / "docker.pid")),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        with httpx.Client(transport=httpx.HTTPTransport(uds=self.sock), base_url="http://d") as c:
            while True:
                if self.proc.poll() is not None:
                    tail = (self.root / "dockerd.log").read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"dockerd exited with {self.proc.returncode}: {tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/_ping").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("dockerd not ready after 30 s")
                time.sleep(0.05)
        self.below = descendants(self.proc.pid)[1:]
        self.version = self.cli("version", "--format", "{{.Server.Version}}").strip()
        return time.perf_counter() - began

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        argv = ["docker", "-H", f"unix://{self.sock}", *args]
        return run(argv, check=check, timeout=timeout, env=self.env)

    def api(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.sock), base_url="http://d", timeout=30
        )

    # -- 1. start -> first HTTP 200 ----------------------------------------------------------

    def import_image(self, tar: Path, ref: str) -> None:
        self.cli("import", str(tar), ref)

    def run_http(self, name: str, ref: str, *, host_net: bool, port: int) -> float:
        """`docker run -d` of httpd; seconds from the command to the first HTTP 200."""
        if host_net:
            net = ["--network", "host"]
            cmd = ["/bin/httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]
        else:
            net = ["-p", f"127.0.0.1:{port}:80"]
            cmd = ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]
        began = time.perf_counter()
        self.cli("run", "-d", "--name", name, *net, ref, *cmd)
        return wait_http(port) - began

    def rm(self, name: str) -> None:
        self.cli("rm", "-f", name, check=False)

    # -- 2./3. Swarm: 20 replicas, memory ----------------------------------------------------

    def swarm_init(self) -> float:
        began = time.perf_counter()
        self.swarm = True
        self.cli(
            *("swarm", "init", "--advertise-addr", "127.0.0.1"),
            *("--listen-addr", "127.0.0.1:2377"),
        )
        return time.perf_counter() - began

    def _tasks(self, c: httpx.Client, service: str, *, running: bool) -> int:
        filters = {"label": [f"{SWARM_LABEL}={service}"]}
        if running:
            filters["status"] = ["running"]
        r = c.get("/containers/json", params={"all": "1", "filters": json.dumps(filters)})
        r.raise_for_status()
        return len(r.json())

    def service_cycle(self, service: str, ref: str, replicas: int, init: bool) -> dict[str, Any]:
        """create --replicas N → N containers running; memory; rm → no containers left."""
        out: dict[str, Any] = {"init": init}
        with self.api() as c:
            began = time.perf_counter()
            extra = ["--init"] if init else []
            self.cli(
                *("service", "create", "--detach", "--name", service, "--replicas", str(replicas)),
                *extra,
                *(ref, "sleep", "300"),
            )
            while self._tasks(c, service, running=True) < replicas:
                if time.perf_counter() - began > 180:
                    raise RuntimeError(f"swarm: {replicas} tasks not running after 180 s")
                time.sleep(0.05)
            out["create_to_running_s"] = round(time.perf_counter() - began, 2)
            time.sleep(2)  # settle, then measure memory
            out["memory"] = self.memory()
            began = time.perf_counter()
            self.cli("service", "rm", service)
            while self._tasks(c, service, running=False) > 0:
                if time.perf_counter() - began > 180:
                    raise RuntimeError("swarm: containers left 180 s after service rm")
                time.sleep(0.05)
            out["rm_to_none_s"] = round(time.perf_counter() - began, 2)
        return out

    def memory(self) -> dict[str, Any]:
        """RSS of dockerd + containerd (its child) + every containerd shim of this daemon."""
        assert self.proc is not None
        daemons = descendants(self.proc.pid)
        named = {
            p: Path(f"/proc/{p}/comm").read_text().strip()
            for p in daemons
            if Path(f"/proc/{p}/comm").exists()
        }
        core = [p for p, n in named.items() if n in ("dockerd", "containerd")]
        shims = processes_matching("containerd-shim", str(self.root))
        return {
            "dockerd_containerd_mb": round(sum(rss_mb(p) for p in core), 1),
            "shims": len(shims),
            "shims_mb": round(sum(rss_mb(p) for p in shims), 1),
            "total_mb": round(sum(rss_mb(p) for p in core + shims), 1),
        }

    # -- 5. build ----------------------------------------------------------------------------

    def build(self, context: Path, tag: str, *, no_cache: bool) -> float:
        args = ["build", "--network", "none", "-q", "-t", tag, "-f", str(context / "Containerfile")]
        if no_cache:
            args.append("--no-cache")
        began = time.perf_counter()
        self.cli(*args, str(context))
        return time.perf_counter() - began

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            below = set(self.below) | set(descendants(self.proc.pid)[1:])
            with contextlib.suppress(Exception):
                ids = self.cli("ps", "-aq", check=False, timeout=60).split()
                if ids:
                    self.cli("rm", "-f", *ids, check=False, timeout=120)
            if self.swarm:
                self.cli("swarm", "leave", "--force", check=False, timeout=60)
            stop_pid(self.proc, 20)
            for pid in sorted(below):  # containerd started by our dockerd: normally gone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in processes_matching("containerd-shim", str(self.root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
