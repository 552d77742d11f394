"""Describe this machine for registration: hostname, CPUs, memory, runtimes, physical/virtual."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

from shoal import __version__
from shoal.model.cluster import NodeDescription, NodeResources

_HYPERVISOR_VENDORS = (
    "kvm",
    "qemu",
    "vmware",
    "virtualbox",
    "xen",
    "microsoft",
    "bochs",
    "amazon ec2",
    "google compute engine",
    "openstack",
    "parallels",
    "bhyve",
)


def memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def detect_infra() -> str:
    """`virtual` on a VM or in a container, else `physical` (systemd-detect-virt's rules)."""
    tool = shutil.which("systemd-detect-virt")
    if tool:
        try:
            result = subprocess.run([tool], capture_output=True, text=True, timeout=2)
            if result.stdout.strip() and result.stdout.strip() != "none":
                return "virtual"
            if result.returncode != 0 and result.stdout.strip() == "none":
                return "physical"
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        if " hypervisor" in Path("/proc/cpuinfo").read_text():
            return "virtual"
    except OSError:
        pass
    for name in ("sys_vendor", "product_name"):
        try:
            value = Path(f"/sys/class/dmi/id/{name}").read_text().strip().lower()
        except OSError:
            continue
        if any(vendor in value for vendor in _HYPERVISOR_VENDORS):
            return "virtual"
    return "physical"


def describe(runtimes: list[str], labels: dict[str, str] | None = None) -> NodeDescription:
    engine_labels = {"infra": detect_infra(), **(labels or {})}
    return NodeDescription(
        hostname=socket.gethostname(),
        os=platform.system().lower(),
        arch=platform.machine(),
        resources=NodeResources(
            nano_cpus=(os.cpu_count() or 1) * 1_000_000_000, memory_bytes=memory_bytes()
        ),
        runtimes=runtimes,
        engine_labels=engine_labels,
        agent_version=__version__,
    )
