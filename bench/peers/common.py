"""Shared by the container benchmarks: statistics, HTTP polling, processes and host cleanup.

`HostSnapshot` records the links, network namespaces, iptables rules and chains, the FORWARD
policy and the cgroup directories before anything starts; `restore()` removes only what appeared
since and looks like ours or our peers' (docker*, veth*, br-*, podman*, shb*; DOCKER*, CNI-*,
NETAVARK*), plus every mount under the benchmark's temp root.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LINK_PREFIXES = ("docker", "veth", "br-", "podman", "shb", "cni")
CHAIN_PREFIXES = ("DOCKER", "CNI-", "NETAVARK")
RULE_MARKERS = (
    *("DOCKER", "CNI-", "NETAVARK", "docker0", "docker_gwbridge", "podman", "shb0"),
    *("172.17.", "172.18.", "10.231.", "10.232."),
)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values, 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(pct(ms, 50), 1),
        "p90_ms": round(pct(ms, 90), 1),
        "min_ms": round(min(ms), 1) if ms else 0.0,
        "max_ms": round(max(ms), 1) if ms else 0.0,
    }


def summary_s(seconds: list[float]) -> dict[str, Any]:
    return {
        "n": len(seconds),
        "median_s": round(pct(seconds, 50), 2),
        "p90_s": round(pct(seconds, 90), 2),
        "all_s": [round(s, 2) for s in seconds],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, timeout: float = 15.0, interval: float = 0.002) -> float:
    """Poll http://127.0.0.1:port/ until it answers 200; returns perf_counter() at that moment."""
    request = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    deadline = time.monotonic() + timeout
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as s,
        ):
            s.sendall(request)
            head = s.recv(32)
            if head.startswith(b"HTTP/1.") and head[9:12] == b"200":
                return time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no HTTP 200 on 127.0.0.1:{port} within {timeout} s")
        time.sleep(interval)


def run(argv: list[str], *, check: bool = True, timeout: float = 300, **kw: Any) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}… exited {done.returncode}: {done.stderr[-800:]}")
    return done.stdout


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found = [pid]
    i = 0
    while i < len(found):
        for children in Path(f"/proc/{found[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in children.read_text().split())
        i += 1
    return found


def processes_matching(name: str, needle: str) -> list[int]:
    """PIDs whose command name starts with `name` and whose command line contains `needle`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if comm.startswith(name) and needle in cmdline:
                out.append(int(entry.name))
    return out


def stop_pid(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, to the process we started (by PID)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def busybox_tar(path: Path) -> Path:
    """Debian's static busybox as a rootfs tarball (tests/images/busybox.py), plus
    /www/index.html for httpd. The same tarball feeds shoal, docker import and podman import."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.images.busybox import busybox_rootfs_tar

    path.write_bytes(busybox_rootfs_tar())
    with tarfile.open(path, "a") as archive:
        page = b"<h1>shoal bench</h1>\n"
        for name, kind, data in (("www", tarfile.DIRTYPE, b""), ("www/index.html", None, page)):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind is not None:
                info.type, info.mode = kind, 0o755
                archive.addfile(info)
            else:
                info.mode, info.size = 0o644, len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


# -- host state ------------------------------------------------------------------------------


def links() -> set[str]:
    out = run(["ip", "-o", "link"], check=False)
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def netns() -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"], check=False).splitlines()}


def iptables_lines() -> list[str]:
    return run(["iptables-save"], check=False).splitlines()


def mounts_under(root: str) -> list[str]:
    points = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == root or point.startswith(root.rstrip("/") + "/"):
            points.append(point)
    return points


def umount_all(root: str) -> list[str]:
    done = []
    for _ in range(3):  # stacked mounts come off one layer per pass
        points = mounts_under(root)
        if not points:
            break
        for point in sorted(points, key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
            done.append(point)
    return done


def cgroup_dirs(parent: str) -> list[Path]:
    """Every hierarchy's directory for the cgroup path `parent` that exists."""
    return [
        d / parent.strip("/") for d in CGROUP_ROOT.iterdir() if (d / parent.strip("/")).is_dir()
    ]


def remove_cgroup_tree(parent: str) -> list[str]:
    """rmdir a cgroup path in every hierarchy, deepest first (they must be empty of tasks)."""
    removed = []
    for top in cgroup_dirs(parent):
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
            removed.append(str(top))
    return removed


class HostSnapshot:
    """What the host looked like before the benchmark; `restore()` undoes what appeared."""

    def __init__(self, temp_root: str, cgroup_parents: Iterable[str]) -> None:
        self.temp_root = temp_root
        self.links = links()
        self.netns = netns()
        self.iptables = set(iptables_lines())
        self.forward_policy = self._forward_policy()
        self.cgroups = {p: bool(cgroup_dirs(p)) for p in cgroup_parents}
        self.removed: list[str] = []

    @staticmethod
    def _forward_policy() -> str:
        for line in run(["iptables", "-S", "FORWARD"], check=False).splitlines():
            if line.startswith("-P FORWARD"):
                return line.split()[2]
        return "ACCEPT"

    def restore(self) -> list[str]:
        self.removed += [f"mount {p}" for p in umount_all(self.temp_root)]
        for name in sorted(netns() - self.netns):
            if name.startswith(("shb", "cni-", "netns-")):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
                self.removed.append(f"netns {name}")
        for link in sorted(links() - self.links):
            if link.startswith(LINK_PREFIXES):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
                self.removed.append(f"link {link}")
        self._restore_iptables()
        if self._forward_policy() != self.forward_policy:
            run(["iptables", "-P", "FORWARD", self.forward_policy], check=False)
            self.removed.append(f"iptables FORWARD policy back to {self.forward_policy}")
        for parent, existed in self.cgroups.items():
            if not existed:
                self.removed += [f"cgroup {p}" for p in remove_cgroup_tree(parent)]
        return self.removed

    def _restore_iptables(self) -> None:
        table = ""
        rules: list[tuple[str, str]] = []
        chains: list[tuple[str, str]] = []
        for line in iptables_lines():
            if line.startswith("*"):
                table = line[1:]
            elif line in self.iptables:
                continue
            elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and any(m in line for m in RULE_MARKERS):
                rules.append((table, line[3:]))
        new_chains = {c for _, c in chains}
        for tbl, rule in rules:
            if rule.split()[0] in new_chains:
                continue  # flushed with its chain below
            subprocess.run(["iptables", "-t", tbl, "-D", *shlex.split(rule)], capture_output=True)
            self.removed.append(f"iptables -t {tbl} -D {rule}")
        for tbl, chain in chains:
            subprocess.run(["iptables", "-t", tbl, "-F", chain], capture_output=True)
        for tbl, chain in chains:
            subprocess.run(["iptables", "-t", tbl, "-X", chain], capture_output=True)
            self.removed.append(f"iptables -t {tbl} -X {chain}")
