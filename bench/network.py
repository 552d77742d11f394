"""Networking benchmark (not a test): data path through VIPs and published ports against direct
container addresses, how fast a task change reaches DNS and the VIP, and DNS answered by a real
agent for a real container network.

    sudo .venv/bin/python bench/network.py [--rounds 5] [--seconds 10]

One `shoal up --runtime runc` in a temp dir deploys a stack built from examples/busybox:
`web` (busybox httpd serving a 64 MiB file, port 80 published on the host) and `client`
(sleeps; used for in-container transfers).
1. Throughput, rounds interleaved, median MB/s: from the host with curl to the task address,
   to the VIP and to 127.0.0.1:<published>; from the client container with busybox wget to the
   task address and to `web` (its VIP, hairpin-masqueraded through the node). Ratios against
   the direct path: the goal is >= 0.9 (iptables DNAT in the kernel, no userspace proxy).
2. Propagation: scale web 1 -> 2 -> 1 `--rounds` times; for every new task, the time from the
   moment its agent reported it running (the task status timestamp) until (a) shoal's DNS on the
   gateway answers its address for tasks.web and (b) the VIP's iptables chain has a DNAT to it;
   and for every removed task until both forget it. Goal < 1 s.
3. DNS served by the agent on the network's gateway (dnsperf -s GATEWAY): max qps and latency
   at 5,000 qps (p99 from dnsperf -v), for names of the deployed stack (A hits, tasks.*, SRV and
   NXDOMAIN).
Prints a table and one JSON line. Everything started here is stopped by PID; the stack is
removed, then `shoal up` stopped, then its leftovers cleaned (containers, mounts).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from containers import ShoalUp, machine

from dns import latencies, summary

REPO = Path(__file__).resolve().parents[1]
IMAGE = "localhost/bench/netbox:1"
BIG_MB = 64


def compose(port: int) -> str:
    return f"""
name: nb
services:
  web:
    image: {IMAGE}
    build: ./img
    command: ["sh", "-c", "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count={BIG_MB} \
2>/dev/null && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["{port}:80"]
    expose: ["80"]
    deploy: {{update_config: {{monitor: 1s}}}}
  client:
    image: {IMAGE}
    command: [sleep, "3000"]
    deploy: {{update_config: {{monitor: 1s}}}}
"""


def curl_mbps(url: str) -> float:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return float(out) / 1e6


def api(up: ShoalUp) -> httpx.Client:
    token = (up.data / "token").read_text().strip()
    return httpx.Client(
        base_url=f"http://{up.addr}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def running(client: httpx.Client, service: str) -> list[dict[str, Any]]:
    tasks = client.get("/v1/tasks", params={"stack": "nb"}).json()
    return [t for t in tasks if t["service"] == service and t["status"]["state"] == "running"]


REPEAT = 10  # in-container transfers per sample: busybox `time` has 10 ms resolution


def exec_mbps(client: httpx.Client, task: str, url: str) -> float:
    loop = f"for i in $(seq {REPEAT}); do wget -qO /dev/null {url}; done"
    script = f"time sh -c '{loop}'"
    result = client.post(f"/v1/tasks/{task}/exec", json={"argv": ["sh", "-c", script]}).json()
    found = re.search(r"real\s+(\d+)m\s*([\d.]+)s", result.get("stderr", ""))
    if result.get("exit_code") != 0 or not found:
        raise RuntimeError(f"in-container transfer failed: {result}")
    seconds = int(found.group(1)) * 60 + float(found.group(2))
    return REPEAT * BIG_MB * 1048576 / seconds / 1e6


def throughput(up: ShoalUp, port: int, rounds: int) -> dict[str, Any]:
    with api(up) as client:
        [web] = running(client, "web")
        [box] = running(client, "client")
        address = web["networks"][0]["address"]
        svc = client.get("/v1/services/nb/web").json()
        vip = next(iter(svc["vips"].values()))
        paths = {
            "host_to_task": f"http://{address}/big",
            "host_to_vip": f"http://{vip}/big",
            "host_to_published": f"http://127.0.0.1:{port}/big",
        }
        samples: dict[str, list[float]] = {k: [] for k in [*paths, "ctr_to_task", "ctr_to_vip"]}
        curl_mbps(paths["host_to_task"])  # warm-up
        for _ in range(rounds):
            for name, url in paths.items():
                samples[name].append(curl_mbps(url))
            samples["ctr_to_task"].append(exec_mbps(client, box["id"], f"http://{address}/big"))
            samples["ctr_to_vip"].append(exec_mbps(client, box["id"], "http://web/big"))
    med = {k: round(statistics.median(v), 1) for k, v in samples.items()}
    return {
        "mb_per_s": med,
        "ratios": {
            "vip_vs_direct_host": round(med["host_to_vip"] / med["host_to_task"], 3),
            "published_vs_direct_host": round(med["host_to_published"] / med["host_to_task"], 3),
            "vip_vs_direct_container": round(med["ctr_to_vip"] / med["ctr_to_task"], 3),
        },
        "file_mb": BIG_MB,
        "rounds": rounds,
    }


def dns_query(name: str) -> bytes:
    qid = random.randrange(65536)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def dns_has(gateway: str, name: str, address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(dns_query(name), (gateway, 53))
        try:
            reply = s.recv(4096)
        except TimeoutError:
            return False
    return socket.inet_aton(address) in reply[12:]


def vip_has(address: str) -> bool:
    rules = subprocess.run(
        ["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True, check=True
    ).stdout
    return f"--to-destination {address}" in rules


def propagation(up: ShoalUp, rounds: int) -> dict[str, Any]:
    added_dns, added_vip, removed_dns, removed_vip = [], [], [], []
    with api(up) as client:
        net = client.get("/v1/networks/nb_default").json()
        gateway = net["gateway"]
        for _ in range(rounds):
            before = {t["id"] for t in running(client, "web")}
            client.post("/v1/services/nb/web/scale", json={"replicas": 2})
            new: dict[str, Any] | None = None
            dns_at = vip_at = None
            deadline = time.time() + 30
            while time.time() < deadline and (dns_at is None or vip_at is None):
                if new is None:
                    fresh = [t for t in running(client, "web") if t["id"] not in before]
                    new = fresh[0] if fresh else None
                    address = new["networks"][0]["address"] if new else ""
                if new is not None:
                    now = time.time()
                    if dns_at is None and dns_has(gateway, "tasks.web.nb.shoal", address):
                        dns_at = now
                    if vip_at is None and vip_has(address):
                        vip_at = now
                time.sleep(0.005)
            assert new is not None and dns_at and vip_at, "new task never served"
            started = new["status"]["timestamp"]
            added_dns.append(dns_at - started)
            added_vip.append(vip_at - started)
            scaled = time.time()
            client.post("/v1/services/nb/web/scale", json={"replicas": 1})
            gone_dns = gone_vip = None
            while time.time() < deadline and (gone_dns is None or gone_vip is None):
                now = time.time()
                # which task goes is the controller's choice: wait until one address is gone
                kept = [t["networks"][0]["address"] for t in running(client, "web")]
                if len(kept) == 1:
                    other = address if kept[0] != address else None
                    if other is None:
                        gone_dns = gone_vip = now  # the old one went; measure it next round
                        break
                    if gone_dns is None and not dns_has(gateway, "tasks.web.nb.shoal", other):
                        gone_dns = now
                    if gone_vip is None and not vip_has(other):
                        gone_vip = now
                time.sleep(0.005)
            assert gone_dns and gone_vip, "removed task still served"
            removed_dns.append(gone_dns - scaled)
            removed_vip.append(gone_vip - scaled)
            time.sleep(1.5)

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "median_s": round(statistics.median(values), 3),
            "max_s": round(max(values), 3),
        }

    return {
        "running_to_dns": stats(added_dns),
        "running_to_vip": stats(added_vip),
        "scale_down_to_dns_gone": stats(removed_dns),
        "scale_down_to_vip_gone": stats(removed_vip),
        "rounds": rounds,
    }


def dns_perf(up: ShoalUp, seconds: int, tmp: Path) -> dict[str, Any]:
    perf = shutil.which("dnsperf")
    if perf is None:
        return {"skipped": "dnsperf not installed (apt-get install dnsperf)"}
    with api(up) as client:
        gateway = client.get("/v1/networks/nb_default").json()["gateway"]
    names = [
        "web.nb.shoal A",
        "client.nb.shoal A",
        "tasks.web.nb.shoal A",
        "_80._tcp.web.nb.shoal SRV",
        "nothing.nb.shoal A",
    ]
    queries = tmp / "queries.txt"
    queries.write_text("\n".join(names * 2000) + "\n")

    def run(*args: str) -> str:
        cmd = [perf, "-s", gateway, "-p", "53", "-d", str(queries), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout

    run("-l", "2", "-Q", "2000")  # warm-up
    peak = summary(run("-c", "1", "-q", "100", "-l", str(seconds)))
    out = run("-Q", "5000", "-l", str(seconds), "-v")
    return {"max_throughput": peak, "at_5000_qps": summary(out) | latencies(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (runc containers, CNI, iptables)")
    tmp = Path(tempfile.mkdtemp(prefix="shoal-netbench-"))
    up = ShoalUp(tmp / "data")
    port = ShoalUp(tmp / "x").port  # a free port for the published one
    result: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    try:
        (tmp / "img").mkdir()
        shutil.copy(REPO / "examples" / "busybox" / "Containerfile", tmp / "img")
        shutil.copy(shutil.which("busybox") or "/bin/busybox", tmp / "img" / "busybox")
        (tmp / "compose.yaml").write_text(compose(port))
        up.start()
        up.cli("deploy", "-f", str(tmp / "compose.yaml"), "--wait", "--timeout", "120")
        time.sleep(1)
        result["throughput"] = throughput(up, port, args.rounds)
        result["propagation"] = propagation(up, args.rounds)
        result["dns"] = dns_perf(up, args.seconds, tmp)
    finally:
        try:
            up.cli("rm", "nb", "--wait", timeout=60)
        except Exception as exc:
            result["cleanup_error"] = str(exc)
        result["leftovers"] = up.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
