"""DNS benchmark (not a test): shoal's DnsServer next to dnsmasq, both driven by dnsperf.

    .venv/bin/python bench/dns.py [--seconds 10] [--rate 5000] [--no-peer]

Both servers answer the same 200 services (`svcN.bench.shoal`: 1-3 A records each, and
`_http._tcp.svcN.bench.shoal` SRV) on 127.0.0.1; the query file mixes 50 % A hits, 20 % SRV
hits, 20 % NXDOMAIN and 10 % NODATA (AAAA of a name with only A records). shoal's server runs
in its own process (multiprocessing) with a resolver over a prebuilt table, dnsmasq (Debian
dnsmasq-base) from an addn-hosts file plus srv-host lines, in the foreground, stopped by PID.

The machine has 2 cores: the server under test is pinned to CPU 0 and dnsperf to CPU 1, so
neither steals the other's core and both servers get exactly one (shoal's is single-threaded,
and so is dnsmasq).
1. Max throughput: `dnsperf -c 1 -q 100 -l SECONDS`: one UDP socket (the server is one thread,
   more sockets add nothing but dnsperf work), 100 queries in flight, enough to keep the server's
   receive queue never empty (so qps measures the server, not the round trip) and well below
   the socket buffer (no drops).
2. Latency at a fixed rate: `dnsperf -Q RATE -l SECONDS -v`: -v prints each answer's latency
   (`> NOERROR name type 0.000123`), from which avg, p50, p99 and max are computed here.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from shoal.dns.codec import NOERROR, NXDOMAIN, SRV, A, Question, Record, Srv
from shoal.dns.server import Answer, DnsServer

SERVICES = 200
DOMAIN = "bench.shoal"
SERVER_CPU, CLIENT_CPU = 0, 1
MIX = (("A", 50), ("SRV", 20), ("NXDOMAIN", 20), ("NODATA", 10))


def addresses(i: int) -> list[str]:
    return [f"10.{200 + k}.{i // 250}.{i % 250 + 1}" for k in range(i % 3 + 1)]


def service(i: int) -> str:
    return f"svc{i}.{DOMAIN}"


def srv_name(i: int) -> str:
    return f"_http._tcp.{service(i)}"


class TableResolver:
    """Answers looked up in a dict built once, scoped by client address as the zone is."""

    def __init__(self) -> None:
        self.clients = {"127.0.0.1": DOMAIN}
        self.table: dict[tuple[str, int], Answer] = {}
        self.names: set[str] = set()
        for i in range(SERVICES):
            name = service(i)
            records = [Record(name, A, 1, ip) for ip in addresses(i)]
            self.table[name, A] = Answer(NOERROR, records)
            target = Srv(0, 10, 8080, name)
            self.table[srv_name(i), SRV] = Answer(NOERROR, [Record(srv_name(i), SRV, 1, target)])
            self.names.update((name, srv_name(i)))

    def resolve(self, client: str, question: Question) -> Answer | None:
        if client not in self.clients:
            return None
        answer = self.table.get((question.name, question.qtype))
        if answer is not None:
            return answer
        return Answer(NOERROR) if question.name in self.names else Answer(NXDOMAIN)


def query_file(path: Path, lines: int = 20_000) -> None:
    rng = random.Random(7)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    out = []
    for _ in range(lines):
        i = rng.randrange(SERVICES)
        kind = rng.choice(kinds)
        if kind == "A":
            out.append(f"{service(i)} A")
        elif kind == "SRV":
            out.append(f"{srv_name(i)} SRV")
        elif kind == "NXDOMAIN":
            out.append(f"missing{i}.{DOMAIN} A")
        else:
            out.append(f"{service(i)} AAAA")
    path.write_text("\n".join(out) + "\n")


# -- the servers ---------------------------------------------------------------------------


def serve_shoal(conn: Connection) -> None:
    """Child process: pinned to one CPU, serves until SIGTERM."""
    os.sched_setaffinity(0, {SERVER_CPU})

    async def main() -> None:
        server = DnsServer(TableResolver())
        conn.send(await server.listen("127.0.0.1", 0))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        conn.send(server.counters)
        await server.close()

    asyncio.run(main())


@contextmanager
def shoal_server() -> Iterator[tuple[int, dict[str, Any]]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_shoal, args=(child,), daemon=True)
    proc.start()
    counters: dict[str, Any] = {}
    try:
        if not parent.poll(30):
            raise RuntimeError("shoal's DNS server did not start")
        yield parent.recv(), counters
    finally:
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
            if parent.poll(10):
                counters.update(parent.recv())
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dnsmasq_server(binary: str, tmp: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    hosts = tmp / "hosts"
    hosts.write_text(
        "".join(f"{ip} {service(i)}\n" for i in range(SERVICES) for ip in addresses(i))
    )
    conf = tmp / "dnsmasq.conf"
    conf.write_text(
        "".join(f"srv-host={srv_name(i)},{service(i)},8080,0,10\n" for i in range(SERVICES))
    )
    port = free_port()
    args = [
        binary,
        "--keep-in-foreground",
        f"--conf-file={conf}",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        f"--local=/{DOMAIN.split('.')[-1]}/",  # names of ours that do not exist: NXDOMAIN
        "--pid-file=",
        "--user=root",
        "--local-ttl=1",
    ]
    proc = subprocess.Popen(args, preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}))
    try:
        wait_answering(port)
        yield port, {"version": dnsmasq_version(binary)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dnsmasq_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "?"


def wait_answering(port: int, deadline: float = 10) -> None:
    query = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x04svc0\x05bench\x05shoal\x00"
    query += struct.pack("!HH", A, 1)
    end = time.monotonic() + deadline
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < end:
            sock.sendto(query, ("127.0.0.1", port))
            try:
                sock.recv(512)
                return
            except OSError:
                continue
    raise RuntimeError(f"no DNS answer on 127.0.0.1:{port}")


# -- dnsperf -------------------------------------------------------------------------------


def dnsperf(binary: str, port: int, queries: Path, *args: str) -> str:
    cmd = [binary, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), *args]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CPU}),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


def summary(out: str) -> dict[str, Any]:
    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([\d.]+)", out)
        return float(match.group(1)) if match else 0.0

    codes = re.search(r"Response codes:\s+(.*)", out)
    sizes = re.search(r"request (\d+), response (\d+)", out)
    return {
        "qps": round(number("Queries per second")),
        "sent": int(number("Queries sent")),
        "lost": int(number("Queries lost")),
        "avg_latency_ms": round(number("Average Latency \\(s\\)") * 1000, 3),
        "response_codes": codes.group(1).strip() if codes else "",
        "avg_response_bytes": int(sizes.group(2)) if sizes else 0,
    }


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def latencies(out: str) -> dict[str, Any]:
    """From dnsperf -v: one `> RCODE name type seconds` line per answer, `> T ...` if lost."""
    seconds, timeouts = [], 0
    for line in out.splitlines():
        if not line.startswith("> "):
            continue
        fields = line.split()
        if fields[1] == "T":
            timeouts += 1
        else:
            seconds.append(float(fields[-1]))
    ms = sorted(s * 1000 for s in seconds)
    return {
        "answers": len(ms),
        "timeouts": timeouts,
        "avg_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "p999_ms": round(percentile(ms, 99.9), 3),
        "max_ms": round(ms[-1], 3),
    }


def measure(
    name: str,
    start: Callable[[], Any],
    perf: str,
    queries: Path,
    seconds: int,
    rate: int,
) -> dict[str, Any]:
    with start() as (port, info):
        dnsperf(perf, port, queries, "-l", "2", "-Q", "2000")  # warm-up
        peak = summary(dnsperf(perf, port, queries, "-c", "1", "-q", "100", "-l", str(seconds)))
        out = dnsperf(perf, port, queries, "-Q", str(rate), "-l", str(seconds), "-v")
        fixed = summary(out) | latencies(out)
    return {"server": name, **info, "max_throughput": peak, f"at_{rate}_qps": fixed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--no-peer", action="store_true")
    opts = parser.parse_args()
    perf = shutil.which("dnsperf")
    if perf is None:
        sys.exit("dnsperf is missing: apt-get install -y dnsperf")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: one for the server, one for dnsperf")
    peer = None if opts.no_peer else shutil.which("dnsmasq")
    results = []
    with tempfile.TemporaryDirectory(prefix="shoal-bench-dns-") as tmp:
        queries = Path(tmp) / "queries.txt"
        query_file(queries)
        results.append(measure("shoal", shoal_server, perf, queries, opts.seconds, opts.rate))
        if peer is not None:

            def start_peer() -> Any:
                return dnsmasq_server(peer, Path(tmp))

            results.append(measure("dnsmasq", start_peer, perf, queries, opts.seconds, opts.rate))
    report(results, opts.rate, opts.seconds)


def report(results: list[dict[str, Any]], rate: int, seconds: int) -> None:
    fixed_key = f"at_{rate}_qps"
    mix = ", ".join(f"{kind} {weight}%" for kind, weight in MIX)
    print(f"{SERVICES} services, queries: {mix}; {seconds} s per run; server on CPU {SERVER_CPU}")
    header = ("server", "max qps", "lost", f"@{rate}: qps", "avg ms", "p50 ms", "p99 ms", "max ms")
    print("{:<9} {:>9} {:>6} {:>12} {:>8} {:>8} {:>8} {:>8}".format(*header))
    for r in results:
        peak, fixed = r["max_throughput"], r[fixed_key]
        print(
            f"{r['server']:<9} {peak['qps']:>9,} {peak['lost']:>6} {fixed['qps']:>12,}"
            f" {fixed['avg_ms']:>8.3f} {fixed['p50_ms']:>8.3f} {fixed['p99_ms']:>8.3f}"
            f" {fixed['max_ms']:>8.3f}"
        )
    for r in results:
        print(f"  {r['server']}: {r['max_throughput']['response_codes']}")
    out = {
        "benchmark": "dns",
        "python": sys.version.split()[0],
        "services": SERVICES,
        "mix": dict(MIX),
        "seconds": seconds,
        "goal": {"qps": 5000, "p99_ms": 5},
        "dnsperf_max": "-c 1 -q 100",
        "dnsperf_fixed": f"-Q {rate} -v",
        "results": results,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
