"""The peer for bench/api.py: a one-node Docker Swarm's API, measured the same way as shoal's.

    .venv/bin/python bench/peer_docker.py [--watchers 500] [--seconds 5]

Starts a private dockerd (own data-root, exec-root, unix socket, pidfile; `--bridge=none
--iptables=false`), `swarm init` on 127.0.0.1, creates 100 services with 0 replicas, then measures
idle RSS (dockerd + containerd), GET /services/{id} and GET /tasks with two keep-alive clients,
and how long `/events` subscribers take to see a service update. Always leaves the machine as it
found it: swarm leave, SIGTERM (then SIGKILL) by PID, and removal of the bridge, iptables rules,
mounts and directories the daemon left behind. Without dockerd it returns
{"available": false, "why": ...}. `run()` is what bench/api.py calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

SERVICES = 100
CHANGES = 5


# -- helpers (the numeric and process ones live in peers/common.py, shared with containers.py) --
from peers.common import (  # noqa: E402
    HostSnapshot,
    descendants,
    rss_mb,
    stop_pid,
    summary_ms,
)


def hammer(
    make_client: Callable[[], httpx.Client],
    path: str,
    *,
    seconds: float,
    clients: int = 2,
    max_requests: int | None = None,
    min_requests: int = 0,
) -> dict[str, Any]:
    """`clients` threads, each with its own keep-alive client, GET `path` until `seconds` have
    passed (and at least `min_requests` are done) or `max_requests` are done in all."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    body_bytes: list[int] = []

    def enough() -> bool:
        with lock:
            done = len(latencies) + len(errors)
        if max_requests is not None and done >= max_requests:
            return True
        return time.perf_counter() >= stop_at and done >= min_requests

    def worker() -> None:
        with make_client() as client:
            client.get(path).raise_for_status()  # connect and warm up, not counted
            while not enough():
                began = time.perf_counter()
                try:
                    response = client.get(path)
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(str(exc))
                    continue
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took)
                    body_bytes.append(len(response.content))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return {
        "path": path,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        **summary_ms(latencies),
        "errors": len(errors),
        "body_bytes": int(statistics.median(body_bytes)) if body_bytes else 0,
    }


async def watch_fanout(
    client: httpx.AsyncClient,
    *,
    path: str,
    watchers: int,
    parse: Callable[[str], list[dict[str, Any]]],
    matches: Callable[[dict[str, Any], str], bool],
    change: Callable[[str], Any],
    targets: list[str],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Open `watchers` streams of `path`; for each target, call `change(target)` (a coroutine
    function) and time, per watcher, how long until it holds an event with matches(doc, target).
    The first target is a warm-up (it also proves every watch is registered) and is not counted.
    `parse` turns one text line of the stream into zero or more documents."""
    connected = 0
    all_connected = asyncio.Event()
    current: dict[str, Any] = {"target": None, "t0": 0.0, "got": {}, "done": asyncio.Event()}
    failures: list[str] = []

    async def watcher(i: int) -> None:
        nonlocal connected
        try:
            async with client.stream("GET", path, timeout=httpx.Timeout(30.0, read=None)) as r:
                r.raise_for_status()
                connected += 1
                if connected == watchers:
                    all_connected.set()
                async for line in r.aiter_lines():
                    for doc in parse(line):
                        target = current["target"]
                        if target is None or i in current["got"] or not matches(doc, target):
                            continue
                        current["got"][i] = time.perf_counter() - current["t0"]
                        if len(current["got"]) == watchers:
                            current["done"].set()
        except (httpx.HTTPError, OSError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            all_connected.set()

    began = time.perf_counter()
    tasks = [asyncio.create_task(watcher(i)) for i in range(watchers)]
    try:
        await asyncio.wait_for(all_connected.wait(), 60)
        connect_s = time.perf_counter() - began
        if failures:
            return {"watchers": watchers, "connected": connected, "error": failures[0]}
        rounds: list[dict[str, Any]] = []
        all_latencies: list[float] = []
        for n, target in enumerate(targets):
            await asyncio.sleep(0.3)
            current.update(target=target, got={}, done=asyncio.Event())
            current["t0"] = time.perf_counter()
            await change(target)
            request_s = time.perf_counter() - current["t0"]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(current["done"].wait(), timeout)
            got = list(current["got"].values())
            current["target"] = None
            if n == 0:
                continue  # warm-up
            rounds.append(
                {
                    **summary_ms(got),
                    "missed": watchers - len(got),
                    "change_request_ms": round(request_s * 1000, 1),
                }
            )
            all_latencies.extend(got)
        return {
            "watchers": watchers,
            "connect_all_s": round(connect_s, 2),
            "changes": len(rounds),
            **summary_ms(all_latencies),
            "missed": sum(r["missed"] for r in rounds),
            "per_change": rounds,
        }
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def docker_daemon(root: str) -> Iterator[tuple[str, subprocess.Popen[bytes], dict[str, Any]]]:
    """dockerd on private paths, as a one-node Swarm; everything undone on exit."""
    sock = f"{root}/docker.sock"
    state = HostSnapshot(root, ())
    run_docker_existed = Path("/run/docker").exists()
    timings: dict[str, Any] = {}
    log = open(f"{root}/dockerd.log", "wb")  # noqa: SIM115 - closed in finally
    proc: subprocess.Popen[bytes] | None = None
    below: list[int] = []
    swarm = False
    try:
        began = time.perf_counter()
        proc = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                f"{root}/data",
                "--exec-root",
                f"{root}/exec",
                "-H",
                f"unix://{sock}",
                "--pidfile",
                f"{root}/docker.pid",
                "--bridge=none",
                "--iptables=false",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://docker") as c:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"dockerd exited with {proc.returncode}, see its log")
                try:
                    if c.get("/_ping").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("dockerd not ready after 30 s")
                time.sleep(0.05)
        timings["dockerd_ready_s"] = round(time.perf_counter() - began, 2)
        below = descendants(proc.pid)[1:]
        began = time.perf_counter()
        swarm = True
        subprocess.run(
            [
                *("docker", "-H", f"unix://{sock}", "swarm", "init"),
                *("--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"),
            ],
            check=True,
            capture_output=True,
        )
        timings["swarm_init_s"] = round(time.perf_counter() - began, 2)
        yield sock, proc, timings
    finally:
        try:
            if proc is not None and proc.poll() is None:
                below = sorted(set(below) | set(descendants(proc.pid)[1:]))
                if swarm:
                    subprocess.run(
                        ["docker", "-H", f"unix://{sock}", "swarm", "leave", "--force"],
                        capture_output=True,
                        timeout=30,
                    )
                stop_pid(proc, 20)
            for pid in below:  # containerd, started by our dockerd: gone with it, normally
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            log.close()
            timings["cleaned_up"] = state.restore()
            if not run_docker_existed and Path("/run/docker").exists():
                shutil.rmtree("/run/docker", ignore_errors=True)
                timings["cleaned_up"].append("dir /run/docker")
            shutil.rmtree(root, ignore_errors=True)


def _service_spec(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Name": name,
        "Labels": labels or {},
        "TaskTemplate": {"ContainerSpec": {"Image": "x", "Command": ["sleep", "1"]}},
        "Mode": {"Replicated": {"Replicas": 0}},
    }


def _docker_events(line: str) -> list[dict[str, Any]]:
    line = line.strip()
    if not line:
        return []
    try:
        doc = json.loads(line)
    except ValueError:
        return []
    return [doc] if isinstance(doc, dict) else []


def _measure(sock: str, proc: subprocess.Popen[bytes], watchers: int, seconds: float) -> Any:
    out: dict[str, Any] = {}

    def client() -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=sock), base_url="http://docker", timeout=30
        )

    time.sleep(3)  # settle after swarm init
    pids = descendants(proc.pid)
    out["processes"] = len(pids)
    out["idle_rss_mb"] = round(sum(rss_mb(p) for p in pids), 1)
    out["idle_rss_dockerd_mb"] = rss_mb(proc.pid)
    ids: dict[str, str] = {}
    with client() as c:
        began = time.perf_counter()
        for i in range(SERVICES):
            name = f"s{i:03}"
            r = c.post("/services/create", json=_service_spec(name))
            r.raise_for_status()
            ids[name] = r.json()["ID"]
        out["create_services"] = SERVICES
        out["create_services_s"] = round(time.perf_counter() - began, 2)
        out["tasks_held"] = len(c.get("/tasks").json())
    target = ids["s050"]
    out["get_service"] = hammer(client, f"/services/{target}", seconds=seconds)
    out["list_tasks"] = hammer(client, "/tasks", seconds=seconds, max_requests=None)
    out["list_services"] = hammer(client, "/services", seconds=seconds)

    async def events() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=20)
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=sock, limits=limits),
            base_url="http://docker",
            timeout=30,
        ) as ac:
            targets = [f"s{i:03}" for i in range(CHANGES + 1)]
            versions = {}  # read before the clock starts: the change is one POST, as in shoal
            for name in targets:
                r = await ac.get(f"/services/{ids[name]}")
                r.raise_for_status()
                versions[name] = r.json()["Version"]["Index"]

            async def change(name: str) -> None:
                version = versions[name]
                spec = _service_spec(name, {"bench": str(time.time())})
                r = await ac.post(f"/services/{ids[name]}/update?version={version}", json=spec)
                r.raise_for_status()

            def matches(doc: dict[str, Any], name: str) -> bool:
                actor = doc.get("Actor") or {}
                return (
                    doc.get("Type") == "service"
                    and doc.get("Action") == "update"
                    and actor.get("ID") == ids[name]
                )

            filters = json.dumps({"type": ["service"]})
            return await watch_fanout(
                ac,
                path=f"/events?filters={filters}",
                watchers=watchers,
                parse=_docker_events,
                matches=matches,
                change=change,
                targets=targets,
            )

    out["watch"] = asyncio.run(events())
    out["watch"]["change"] = "POST /services/{id}/update (a label; 0 replicas) -> /events"
    pids = descendants(proc.pid)
    out["rss_after_mb"] = round(sum(rss_mb(p) for p in pids), 1)
    return out


def run(watchers: int = 500, seconds: float = 5.0) -> dict[str, Any]:
    """Measure a one-node Docker Swarm; {"available": False, "why": ...} when impossible."""
    for tool in ("dockerd", "docker", "containerd"):
        if shutil.which(tool) is None:
            return {
                "available": False,
                "why": f"{tool} is not installed (apt-get install docker.io)",
            }
    if os.geteuid() != 0:
        return {"available": False, "why": "dockerd needs root"}
    if not port_free(2377):
        return {"available": False, "why": "127.0.0.1:2377 is taken (another swarm manager?)"}
    version = subprocess.run(["dockerd", "--version"], capture_output=True, text=True).stdout
    root = tempfile.mkdtemp(prefix="shoal-peer-", dir="/tmp")
    result: dict[str, Any] = {"available": True, "engine": version.strip()}
    try:
        with docker_daemon(root) as (sock, proc, timings):
            result.update(_measure(sock, proc, watchers, seconds))
        result.update(timings)
    except Exception as exc:
        result.update(available=False, why=f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["note"] = (
        "tasks_held is 0: 10,000 task records would need 10,000 real containers (or endlessly "
        "rejected tasks) in Swarm, so GET /tasks lists nothing and is not comparable with shoal's"
        " 10,000-task list"
    )
    return result


def _sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    print(json.dumps(run(args.watchers, args.seconds), indent=2))


if __name__ == "__main__":
    main()
