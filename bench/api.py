"""API benchmark (not a test): shoal's server with 10,000 tasks, next to a one-node Docker Swarm.

    .venv/bin/python bench/api.py [--watchers 500] [--seconds 5] [--no-peer]

1. 10,000 task records: a stack of 100 services x 100 replicas deployed to a server without an
   agent (the tasks stay pending: nothing can place them), timed until GET /v1/tasks lists them.
2. Two concurrent keep-alive clients on loopback: GET /v1/services/{stack}/{name}, GET /v1/services
   and GET /v1/tasks?all=true (the list of 10,000): requests/s, p50/p99.
3. Watch fan-out: 500 SSE watchers of /v1/events/watch; 5 scale changes, each timed from the
   request to every watcher holding its event (p50/p99/max).
4. Memory: VmRSS of the server idle on an empty data dir and with the 10,000 tasks, and of
   `shoal up` (server + agent) idle with nothing deployed.
Then bench/peer_docker.py measures the same over Docker's API, and one JSON document is printed
with both side by side. Every process started here is stopped by PID; temp dirs are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from peer_docker import descendants, hammer, rss_mb, watch_fanout
from peer_docker import run as run_peer
from peers.common import stop_pid

STACK = "bench"
SERVICES = 100
REPLICAS = 100
CHANGES = 5


@dataclass
class Shoal:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    data_dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=60)

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM (peak) of the process, with its children if it has any, in MB."""
        pids = descendants(self.pid)
        out = {"rss_mb": round(sum(rss_mb(p) for p in pids), 1), "processes": len(pids)}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace`, by PID; then any child it left, by PID."""
    below = descendants(proc.pid)[1:] if proc.poll() is None else []
    stop_pid(proc, grace)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def shoal(kind: str, workdir: Path) -> Iterator[Shoal]:
    """`python -m shoal server` (or `up`) on free loopback ports with a fresh data dir."""
    data_dir = workdir / f"{kind}-data"
    port = free_port()
    args = [sys.executable, "-m", "shoal", kind, "--listen", f"127.0.0.1:{port}"]
    if kind == "up":
        args += ["--agent-listen", f"127.0.0.1:{free_port()}"]
    env = {**os.environ, "SHOAL_DATA_DIR": str(data_dir)}
    with open(workdir / f"{kind}.log", "wb") as log:
        proc = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log_text = (workdir / f"{kind}.log").read_text()[-2000:]
                raise RuntimeError(f"shoal {kind} exited with {proc.returncode}: {log_text}")
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"shoal {kind} not healthy after 60 s")
            time.sleep(0.05)
        token = (data_dir / "token").read_text().strip()
        yield Shoal(proc, url, token, data_dir)
    finally:
        stop(proc)


def project() -> dict[str, Any]:
    return {
        "services": {
            f"s{i:03}": {"image": "x", "command": ["sleep", "1"], "deploy": {"replicas": REPLICAS}}
            for i in range(SERVICES)
        }
    }


def load_tasks(server: Shoal) -> dict[str, Any]:
    """Deploy 100 x 100 and wait until GET /v1/tasks lists 10,000 tasks."""
    want = SERVICES * REPLICAS
    with server.client() as c:
        began = time.perf_counter()
        r = c.post(f"/v1/stacks/{STACK}/deploy", json={"project": project()})
        r.raise_for_status()
        deploy_s = time.perf_counter() - began
        count = 0
        while time.perf_counter() - began < 300:
            count = len(c.get("/v1/tasks").json())
            if count >= want:
                break
            time.sleep(0.5)
        return {
            "path": "API deploy (no agent: tasks stay pending)",
            "services": SERVICES,
            "replicas": REPLICAS,
            "deploy_request_s": round(deploy_s, 2),
            "tasks_listed": count,
            "until_10000_listed_s": round(time.perf_counter() - began, 2),
        }


def sse_events(line: str) -> list[dict[str, Any]]:
    if not line.startswith("data:"):
        return []
    try:
        doc = json.loads(line[5:])
    except ValueError:
        return []
    return [doc] if isinstance(doc, dict) else []


async def shoal_watch(server: Shoal, watchers: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=20)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers(), timeout=60, limits=limits
    ) as ac:

        async def change(name: str) -> None:
            r = await ac.post(f"/v1/services/{STACK}/{name}/scale", json={"replicas": REPLICAS + 1})
            r.raise_for_status()

        def matches(doc: dict[str, Any], name: str) -> bool:
            return doc.get("action") == "scale" and doc.get("service") == name

        result = await watch_fanout(
            ac,
            path="/v1/events/watch",
            watchers=watchers,
            parse=sse_events,
            matches=matches,
            change=change,
            targets=[f"s{i:03}" for i in range(CHANGES + 1)],
        )
        result["change"] = "POST /v1/services/{stack}/{name}/scale 100 -> 101 -> SSE event"
        return result


def raise_fd_limit(need: int) -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        soft = min(hard, max(need, 4096)) if hard != resource.RLIM_INFINITY else max(need, 4096)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return {"soft": soft, "hard": hard}


def measure_shoal(workdir: Path, watchers: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"version": metadata.version("shoal")}
    with shoal("up", workdir) as up:
        with up.client() as c:
            deadline = time.monotonic() + 30
            while not c.get("/v1/nodes").json() and time.monotonic() < deadline:
                time.sleep(0.1)
            nodes = len(c.get("/v1/nodes").json())
        time.sleep(3)
        out["up_idle"] = {"nodes": nodes, **up.memory()}
    with shoal("server", workdir) as server:
        time.sleep(3)
        out["server_idle_empty"] = server.memory()
        out["load"] = load_tasks(server)
        time.sleep(3)
        out["server_10000_tasks"] = server.memory()
        out["get_service"] = hammer(server.client, f"/v1/services/{STACK}/s050", seconds=seconds)
        out["list_services"] = hammer(server.client, "/v1/services", seconds=seconds)
        out["list_tasks_10000"] = hammer(
            server.client, "/v1/tasks?all=true", seconds=seconds, max_requests=30, min_requests=10
        )
        out["watch"] = asyncio.run(shoal_watch(server, watchers))
        out["server_after_all"] = server.memory()
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_mb"] = int(line.split()[1]) // 1024
    return info


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def side_by_side(s: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    """shoal's number, Docker's, and shoal/docker where both measured the same thing."""
    if not d.get("available"):
        return {"docker": "not measured", "why": d.get("why")}
    rows: dict[str, Any] = {}

    def row(name: str, shoal_v: float | None, docker_v: float | None, note: str = "") -> None:
        rows[name] = {
            "shoal": shoal_v,
            "docker": docker_v,
            "shoal_over_docker": ratio(shoal_v, docker_v),
        }
        if note:
            rows[name]["note"] = note

    for key, dkey in (("get_service", "get_service"), ("list_services", "list_services")):
        row(f"{key}_requests_per_s", s[key]["requests_per_s"], d[dkey]["requests_per_s"])
        row(f"{key}_p99_ms", s[key]["p99_ms"], d[dkey]["p99_ms"])
    row(
        "list_tasks_requests_per_s",
        s["list_tasks_10000"]["requests_per_s"],
        d["list_tasks"]["requests_per_s"],
        "not comparable: shoal lists 10,000 tasks, Swarm 0",
    )
    rows["list_tasks_requests_per_s"]["shoal_over_docker"] = None
    sw, dw = s["watch"], d["watch"]
    note = f"{sw.get('watchers')} shoal watchers, {dw.get('watchers')} docker watchers"
    row("watch_p50_ms", sw.get("p50_ms"), dw.get("p50_ms"), note)
    row("watch_p99_ms", sw.get("p99_ms"), dw.get("p99_ms"), note)
    row("watch_max_ms", sw.get("max_ms"), dw.get("max_ms"), note)
    row(
        "idle_rss_mb_server",
        s["server_idle_empty"]["rss_mb"],
        d["idle_rss_mb"],
        "shoal server alone vs dockerd + containerd (swarm manager, nothing created)",
    )
    row("idle_rss_mb_up", s["up_idle"]["rss_mb"], d["idle_rss_mb"], "shoal up (server + agent)")
    return rows


def _sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-peer", action="store_true", help="skip Docker Swarm")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    limit = raise_fd_limit(2 * args.watchers + 256)  # inherited by the server
    workdir = Path(tempfile.mkdtemp(prefix="shoal-bench-api-"))
    began = time.time()
    try:
        shoal_results = measure_shoal(workdir, args.watchers, args.seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.no_peer:
        docker: dict[str, Any] = {"available": False, "why": "--no-peer"}
    else:
        docker = run_peer(args.watchers, args.seconds)
    s_watch, s_10k = shoal_results["watch"], shoal_results["server_10000_tasks"]
    doc = {
        "benchmark": "bench/api.py",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - began, 1),
        "machine": machine(),
        "fd_limit": limit,
        "goals": {
            "watch_p99_under_200ms": bool(s_watch.get("n")) and s_watch.get("p99_ms", 1e9) < 200,
            "rss_10000_tasks_at_most_150mb": s_10k["rss_mb"] <= 150,
        },
        "side_by_side": side_by_side(shoal_results, docker),
        "shoal": shoal_results,
        "docker_swarm": docker,
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
