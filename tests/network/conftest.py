"""A small lab on the real kernel: test bridges with random /24s from 10.213.240.0/20 and
"containers" (network namespaces with CNI attachments, optionally serving their name with
busybox httpd on :8080). Everything a scenario makes is removed afterwards, even on failure:
processes by PID, CNI attachments, namespaces, bridges, and shoal's iptables chains when the
scenario applied any.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from shoal.network import cni, firewall, netns
from shoal.network.netns import Completed, run

BUSYBOX = "/bin/busybox"
POOL = ipaddress.IPv4Network("10.213.240.0/20")
HTTP_PORT = 8080

_missing = [
    what
    for what, ok in [
        ("root", os.geteuid() == 0),
        ("CNI plugins (containernetworking-plugins)", os.path.exists("/usr/lib/cni/bridge")),
        ("iptables", shutil.which("iptables-restore") is not None),
        ("busybox", os.path.exists(BUSYBOX)),
    ]
    if not ok
]
kernel_marks = [
    pytest.mark.root,
    pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"),
]
F = TypeVar("F", bound=Callable[..., object])


def needs_kernel(fn: F) -> F:
    """Mark a test that needs root, CNI plugins, iptables and busybox (skipped without)."""
    for mark in kernel_marks:
        fn = mark(fn)
    return fn


def _used_subnets() -> set[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-json", "route"], capture_output=True, text=True, check=True)
    used = set()
    for route in json.loads(out.stdout or "[]"):
        dst = route.get("dst", "")
        if "/" in dst:
            used.add(ipaddress.IPv4Network(dst, strict=False))
    return used


@dataclass
class Box:
    """A "container": a namespace with its addresses (network name → address)."""

    name: str
    ns: str
    addresses: dict[str, str]
    pid: int | None = None  # busybox httpd's

    @property
    def path(self) -> str:
        return netns.path(self.ns)


@dataclass
class Lab:
    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    nets: list[cni.BridgeNet] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    firewall_used: bool = False
    _subnets: list[ipaddress.IPv4Network] = field(default_factory=list)

    @property
    def cache(self) -> Path:
        return self.root / "cni"

    async def network(self, internal: bool = False) -> cni.BridgeNet:
        """A new bridge with a free /24 and its gateway (.1)."""
        if not self._subnets:
            used = _used_subnets()
            free = [s for s in POOL.subnets(new_prefix=24) if not any(s.overlaps(u) for u in used)]
            self._subnets = secrets.SystemRandom().sample(free, len(free))
        subnet = self._subnets.pop()
        index = len(self.nets)
        net = cni.BridgeNet(
            name=f"t{self.token}_n{index}",
            bridge=f"shlt{self.token}{index}",
            subnet=str(subnet),
            gateway=str(subnet[1]),
            internal=internal,
        )
        self.nets.append(net)
        await cni.ensure_bridge(net)
        return net

    def address(self, net: cni.BridgeNet, host: int) -> str:
        return str(ipaddress.IPv4Network(net.subnet)[host])

    async def namespace(self, name: str) -> Box:
        """A bare namespace (no attachment, no server), removed with the lab."""
        box = Box(name, f"shlt-{self.token}-{name}", {})
        self.boxes.append(box)
        await netns.create(box.ns)
        return box

    async def box(self, name: str, *places: tuple[cni.BridgeNet, int], serve: bool = True) -> Box:
        """A namespace attached to each (network, host number), serving `name` on :8080."""
        box = await self.namespace(name)
        attachments = [
            cni.Attach(net, f"eth{i}", self.address(net, host))
            for i, (net, host) in enumerate(places)
        ]
        await cni.add(box.ns, box.path, attachments, self.cache)
        box.addresses = {a.net.name: a.address for a in attachments}
        if serve:
            await self.serve(box)
        return box

    async def serve(self, box: Box) -> None:
        home = self.root / "www" / box.name
        home.mkdir(parents=True)
        (home / "index.html").write_text(box.name + "\n")
        argv = ["ip", "netns", "exec", box.ns, BUSYBOX, "httpd", "-f", "-p", str(HTTP_PORT)]
        box.pid = await self.spawn(*argv, "-h", str(home))
        await wait_listening(box.pid, HTTP_PORT)

    async def spawn(self, *argv: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        self.procs.append(proc)
        return proc.pid

    async def sh(self, box: Box, script: str) -> Completed:
        """Run a busybox shell script inside `box`'s namespace."""
        return await run("ip", "netns", "exec", box.ns, BUSYBOX, "sh", "-c", script)

    async def fetch(self, box: Box, url: str, times: int = 1) -> list[str]:
        """`times` HTTP GETs from inside `box`: the bodies, "" for each one that failed."""
        loop = f"for i in $(seq {times}); do timeout 5 wget -qO- {url} || echo; done"
        return (await self.sh(box, loop)).stdout.splitlines()

    async def apply(self, fw: firewall.NodeFirewall, api_ports: tuple[int, ...] = ()) -> None:
        self.firewall_used = True
        await firewall.apply(fw, api_ports)

    def fw_networks(self) -> tuple[firewall.FwNetwork, ...]:
        return tuple(
            firewall.FwNetwork(n.bridge, n.subnet, n.gateway, n.internal) for n in self.nets
        )

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()  # by its PID
                await proc.wait()
        for box in reversed(self.boxes):
            await cni.delete(box.ns, box.path, self.cache)
            await netns.delete(box.ns)
        for net in self.nets:
            await cni.remove_bridge(net)
        if self.firewall_used:
            await firewall.cleanup()


async def wait_listening(pid: int, port: int, timeout: float = 5.0) -> None:
    """Until the process `pid` has a socket bound to `port` (read in its own netns' view)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table, state in [("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")]:
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except FileNotFoundError:
                raise AssertionError(f"process {pid} died before listening") from None
            if any(_listens(line, port, state) for line in lines):
                return
        await asyncio.sleep(0.005)
    raise AssertionError(f"nothing listened on {port} within {timeout}s")


def _listens(line: str, port: int, state: str) -> bool:
    """A /proc/net/{tcp,udp}[6] line of a socket bound to `port`: TCP LISTEN (0A) or UDP (07)."""
    fields = line.split()
    return len(fields) > 3 and fields[1].endswith(f":{port:04X}") and fields[3] == state


Scenario = Callable[[Lab], Awaitable[None]]


@pytest.fixture
def lab() -> Iterator[Callable[[Scenario], None]]:
    """Runs `scenario(lab)` under asyncio with a timeout, then tears the lab down."""

    def runner(scenario: Scenario, timeout: float = 30.0) -> None:
        async def main() -> None:
            with tempfile.TemporaryDirectory(prefix="shoal-net-") as tmp:
                the_lab = Lab(Path(tmp))
                try:
                    async with asyncio.timeout(timeout):
                        await scenario(the_lab)
                finally:
                    await the_lab.close()

        asyncio.run(main())

    yield runner
