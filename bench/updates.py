"""Rolling-update and self-healing benchmark (not a test), side by side with a one-node Swarm.

    sudo .venv/bin/python bench/updates.py [--replicas 20] [--no-swarm]

Both run 20 busybox httpd replicas with a CMD-SHELL health check (`wget` of the page, interval
1 s), update_config parallelism 2, delay 0, stop-first, tini as init; a published port.
1. Rolling update (a new env value, so every task is replaced): seconds from the command to
   the update completed (shoal: `shoal update --wait` returns 0; Swarm: UpdateStatus
   `completed`), while two client threads request the published port on 127.0.0.1 and (shoal)
   the service VIP in a loop: requests made, requests failed.
2. Self-healing: kill -9 of one task's main process → a healthy replacement serving (shoal: a
   new task of the service ready in the catalog; Swarm: the service back to 20 running and
   healthy), with restart delay 0. shoal's service sets `start_period: 10s, start_interval:
   100ms` so the first probe of a new task comes after 0.1 s (Docker 20.10's Swarm has no
   start_interval, so its first probe waits the 1 s interval).
Prints one JSON document. Every process started here is stopped by PID; containers, mounts,
bridges and iptables chains made here are cleaned up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from containers import REF, ShoalUp, machine
from peers.common import HostSnapshot, busybox_tar
from peers.dockerd import Docker

REPO = Path(__file__).resolve().parents[1]
IMAGE = "localhost/bench/upd:1"
CHECK = "wget -qO /dev/null http://127.0.0.1/ || exit 1"
SERVE = "mkdir -p /w && echo $$VERSION > /w/index.html && exec httpd -f -p 80 -h /w"


def compose(replicas: int, port: int) -> str:
    return f"""
name: ub
services:
  web:
    image: {IMAGE}
    build: ./img
    command: ["sh", "-c", "{SERVE}"]
    environment: {{VERSION: "1"}}
    ports: ["{port}:80"]
    healthcheck:
      test: ["CMD-SHELL", "{CHECK}"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 10s
      start_interval: 100ms
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: 2, delay: 0s, order: stop-first, monitor: 1s}}
      restart_policy: {{condition: any, delay: 0s}}
"""


class Load:
    """Client threads hammering URLs; counts requests and failures per URL."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.stop = threading.Event()
        self.counts = {name: [0, 0] for name in urls}  # made, failed
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(name, url), daemon=True)
            for name, url in urls.items()
        ]

    def _run(self, name: str, url: str) -> None:
        with httpx.Client(timeout=3) as client:
            while not self.stop.is_set():
                self.counts[name][0] += 1
                try:
                    client.get(url).raise_for_status()
                except httpx.HTTPError as exc:
                    self.counts[name][1] += 1
                    if len(self.errors) < 5:
                        self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)

    def report(self) -> dict[str, Any]:
        return {
            name: {"requests": made, "failed": failed}
            for name, (made, failed) in self.counts.items()
        } | {"first_errors": self.errors}


def shoal_api(up: ShoalUp) -> httpx.Client:
    token = (up.data / "token").read_text().strip()
    return httpx.Client(
        base_url=f"http://{up.addr}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def ready_ids(api: httpx.Client) -> set[str]:
    record = api.get("/v1/catalog/services/ub/web", params={"ready": "true"}).json()
    return {e["task"] for e in record["endpoints"]}


def shoal_bench(tmp: Path, replicas: int, kills: int) -> dict[str, Any]:
    up = ShoalUp(tmp / "data")
    port = ShoalUp(tmp / "x").port
    out: dict[str, Any] = {}
    (tmp / "img").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "busybox" / "Containerfile", tmp / "img")
    shutil.copy(shutil.which("busybox") or "/bin/busybox", tmp / "img" / "busybox")
    (tmp / "compose.yaml").write_text(compose(replicas, port))
    try:
        up.start()
        out["deploy_s"] = round(
            up.cli("deploy", "-f", str(tmp / "compose.yaml"), "--wait", "--timeout", "300"), 2
        )
        with shoal_api(up) as api:
            vip = next(iter(api.get("/v1/services/ub/web").json()["vips"].values()))
            urls = {"published": f"http://127.0.0.1:{port}/", "vip": f"http://{vip}/"}
            with Load(urls) as load:
                time.sleep(1)
                took = up.cli("update", "ub/web", "--env", "VERSION=2", "--wait", timeout=600)
                time.sleep(1)
            out["rolling_update"] = {"seconds": round(took, 2), **load.report()}
            samples = []
            for _ in range(kills):
                tasks = [
                    t
                    for t in api.get("/v1/tasks", params={"stack": "ub"}).json()
                    if t["status"]["state"] == "running" and t["id"] in ready_ids(api)
                ]
                victim = tasks[0]
                before = ready_ids(api)
                began = time.perf_counter()
                os.kill(victim["status"]["pid"], signal.SIGKILL)
                while True:
                    now = ready_ids(api)
                    if len(now - before) >= 1 and len(now) >= replicas:
                        break
                    if time.perf_counter() - began > 60:
                        raise RuntimeError("no healthy replacement after 60 s")
                    time.sleep(0.01)
                samples.append(time.perf_counter() - began)
                time.sleep(2)
            out["kill9_to_healthy_replacement"] = {
                "median_s": round(statistics.median(samples), 3),
                "max_s": round(max(samples), 3),
                "samples": [round(s, 3) for s in samples],
                "restart_delay_s": 0,
            }
    finally:
        try:
            up.cli("rm", "ub", "--wait", timeout=120)
        except Exception as exc:
            out["cleanup_error"] = str(exc)
        out["leftovers"] = up.stop()
    return out


def swarm_state(docker: Docker) -> tuple[int, int]:
    """(running, healthy) containers of the web service."""
    with docker.api() as c:
        filters = {"label": ["com.docker.swarm.service.name=web"], "status": ["running"]}
        found = c.get("/containers/json", params={"filters": json.dumps(filters)}).json()
    return len(found), sum(1 for x in found if "(healthy)" in x.get("Status", ""))


def wait_swarm(docker: Docker, replicas: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while swarm_state(docker) != (replicas, replicas):
        if time.monotonic() > deadline:
            raise RuntimeError(f"swarm not at {replicas} healthy: {swarm_state(docker)}")
        time.sleep(0.1)


def swarm_bench(tmp: Path, replicas: int, kills: int) -> dict[str, Any]:
    why = Docker.missing()
    if why:
        return {"available": False, "why": why}
    docker = Docker(tmp / "docker")
    out: dict[str, Any] = {"available": True}
    port = ShoalUp(tmp / "y").port
    try:
        docker.start()
        out["engine"] = docker.version
        docker.import_image(busybox_tar(tmp / "busybox.tar"), REF)
        docker.swarm_init()
        began = time.perf_counter()
        docker.cli(
            *("service", "create", "--detach", "--name", "web", "--init"),
            *("--replicas", str(replicas), "--publish", f"{port}:80"),
            *("--health-cmd", CHECK, "--health-interval", "1s", "--health-retries", "3"),
            *("--update-parallelism", "2", "--update-delay", "0s"),
            *("--restart-delay", "0s", "--env", "VERSION=1"),
            REF,
            *("sh", "-c", SERVE.replace("$$", "$")),
        )
        wait_swarm(docker, replicas, 300)
        out["deploy_s"] = round(time.perf_counter() - began, 2)
        with Load({"published": f"http://127.0.0.1:{port}/"}) as load:
            began = time.perf_counter()
            docker.cli("service", "update", "--detach", "--env-add", "VERSION=2", "web")
            while True:
                raw = docker.cli("service", "inspect", "web", "--format", "{{json .UpdateStatus}}")
                status = json.loads(raw or "null") or {}
                if status.get("State") == "completed":
                    break
                if time.perf_counter() - began > 600:
                    raise RuntimeError(f"swarm update not done: {status}")
                time.sleep(0.2)
            took = time.perf_counter() - began
        out["rolling_update"] = {"seconds": round(took, 2), **load.report()}
        samples = []
        for _ in range(kills):
            wait_swarm(docker, replicas, 120)
            with docker.api() as c:
                filters = {"label": ["com.docker.swarm.service.name=web"], "status": ["running"]}
                victim = c.get("/containers/json", params={"filters": json.dumps(filters)}).json()[
                    0
                ]
                pid = c.get(f"/containers/{victim['Id']}/json").json()["State"]["Pid"]
            began = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            wait_swarm(docker, replicas, 120)
            samples.append(time.perf_counter() - began)
        out["kill9_to_healthy_replacement"] = {
            "median_s": round(statistics.median(samples), 3),
            "max_s": round(max(samples), 3),
            "samples": [round(s, 3) for s in samples],
            "restart_delay_s": 0,
        }
    except Exception as exc:
        out.update(available=False, why=f"{type(exc).__name__}: {exc}"[:800])
    finally:
        docker.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=20)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--no-swarm", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (runc containers, CNI, iptables, dockerd)")
    tmp = Path(tempfile.mkdtemp(prefix="shoal-updbench-"))
    host = HostSnapshot(str(tmp), ())  # docker0, DOCKER* chains… are removed at the end
    result: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    try:
        result["shoal"] = shoal_bench(tmp / "shoal", args.replicas, args.kills)
        if not args.no_swarm:
            result["swarm"] = swarm_bench(tmp / "swarm", args.replicas, args.kills)
            s, w = result["shoal"], result["swarm"]
            if w.get("available") and "rolling_update" in s:
                result["ratios"] = {
                    "rolling_update": round(
                        s["rolling_update"]["seconds"] / w["rolling_update"]["seconds"], 3
                    ),
                    "kill9": round(
                        s["kill9_to_healthy_replacement"]["median_s"]
                        / w["kill9_to_healthy_replacement"]["median_s"],
                        3,
                    ),
                }
    finally:
        result["host_cleanup"] = host.restore()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
