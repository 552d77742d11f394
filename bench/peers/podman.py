"""Podman 4.3 as a peer, with everything private: storage root and runroot, tmp_dir, events file
and network config under our temp root, via CONTAINERS_CONF with the settings PLATFORM.md lists
(ulimits, runc, cgroupfs, file events, a default subnet of its own: 10.232.0.0/24).

Cleanup: `podman rm -af`, `podman rmi -af`, then common.HostSnapshot (podman0 bridge, NETAVARK
chains, netns-* namespaces, mounts under the temp root).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .common import run, wait_http

SUBNET = "10.232.0.0/24"


class Podman:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("tmp", "networks"):
            (root / sub).mkdir(exist_ok=True)
        conf = root / "containers.conf"
        conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{root}/events.log"\n'
            f'tmp_dir = "{root}/tmp"\n'
            "[network]\n"
            f'default_subnet = "{SUBNET}"\n'
            f'network_config_dir = "{root}/networks"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.base = [
            *("podman", "--root", str(root / "storage"), "--runroot", str(root / "run")),
            *("--storage-driver", "overlay"),
        ]
        self.version = ""

    @staticmethod
    def missing() -> str | None:
        if shutil.which("podman") is None:
            return "podman is not installed (apt-get install podman)"
        return None

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        return run([*self.base, *args], check=check, timeout=timeout, env=self.env)

    def start(self) -> None:
        self.version = self.cli("version", "--format", "{{.Client.Version}}").strip()

    def import_image(self, tar: Path, ref: str) -> None:
        self.cli("import", str(tar), ref)

    def run_http(self, name: str, ref: str, *, host_net: bool, port: int) -> float:
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
        self.cli("rm", "-f", "-t", "0", name, check=False)

    def pull(self, ref: str) -> float:
        began = time.perf_counter()
        self.cli("pull", "-q", "--tls-verify=false", ref)
        return time.perf_counter() - began

    def rmi(self, ref: str) -> None:
        self.cli("rmi", "-f", ref, check=False)

    def build(self, context: Path, tag: str, *, no_cache: bool) -> float:
        args = ["build", "--network", "none", "-q", "-t", tag]
        if no_cache:
            args.append("--no-cache")
        began = time.perf_counter()
        self.cli(*args, str(context))
        return time.perf_counter() - began

    def stop(self) -> None:
        self.cli("rm", "-af", "-t", "0", check=False, timeout=120)
        self.cli("rmi", "-af", check=False, timeout=120)
