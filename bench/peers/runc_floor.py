"""The floor: bare `runc run -d` of a bundle, in the host netns or in a netns of our own wired
with CNI (loopback, bridge + host-local IPAM, portmap with snat) as PLATFORM.md describes.

CNI has no `cnitool` here: each plugin in /usr/lib/cni is called with the CNI_* environment and
its config on stdin, the previous result passed on as `prevResult`; DEL runs in reverse order.
The bridge is `shb0` on 10.231.0.0/24; host-local keeps its leases in our temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import run

CNI_PATH = "/usr/lib/cni"
CNI_VERSION = "0.4.0"
BRIDGE = "shb0"
SUBNET = "10.231.0.0/24"
CGROUP_PARENT = "shoalbench-floor"


@dataclass
class Attachment:
    """One container's netns and what CNI ADD returned, for DEL."""

    name: str
    path: str
    ports: list[dict[str, Any]]
    results: dict[str, Any] = field(default_factory=dict)


class Cni:
    def __init__(self, state_dir: Path) -> None:
        self.ipam_dir = state_dir / "ipam"
        self.ipam_dir.mkdir(parents=True, exist_ok=True)

    def _plugin(
        self, command: str, conf: dict[str, Any], cid: str, netns: str, ifname: str
    ) -> dict[str, Any]:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": CNI_PATH,
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        done = subprocess.run(
            [f"{CNI_PATH}/{conf['type']}"],
            input=json.dumps(conf).encode(),
            capture_output=True,
            env=env,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"CNI {conf['type']} {command}: {done.stdout!r} {done.stderr!r}")
        out = done.stdout.strip()
        return json.loads(out) if out else {}

    def _bridge_conf(self) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": "shoalbench",
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": True,
            "ipam": {
                "type": "host-local",
                "subnet": SUBNET,
                "dataDir": str(self.ipam_dir),
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }

    def _portmap_conf(self, ports: list[dict[str, Any]], prev: dict[str, Any]) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": "shoalbench",
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "snat": True,
            "runtimeConfig": {"portMappings": ports},
            "prevResult": prev,
        }

    def attach(self, name: str, ports: list[dict[str, Any]]) -> Attachment:
        """`ip netns add name`, then CNI ADD of lo, bridge and portmap."""
        run(["ip", "netns", "add", name])
        att = Attachment(name, f"/var/run/netns/{name}", ports)
        lo = {"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"}
        self._plugin("ADD", lo, name, att.path, "lo")
        att.results["bridge"] = self._plugin("ADD", self._bridge_conf(), name, att.path, "eth0")
        if ports:
            conf = self._portmap_conf(ports, att.results["bridge"])
            att.results["portmap"] = self._plugin("ADD", conf, name, att.path, "eth0")
        return att

    def detach(self, att: Attachment) -> None:
        """CNI DEL in reverse order, then `ip netns del`; best effort, every step tried."""
        steps: list[tuple[dict[str, Any], str]] = []
        if att.ports:
            steps.append((self._portmap_conf(att.ports, att.results.get("bridge", {})), "eth0"))
        bridge = self._bridge_conf()
        if "bridge" in att.results:
            bridge["prevResult"] = att.results["bridge"]
        steps.append((bridge, "eth0"))
        steps.append(({"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"}, "lo"))
        for conf, ifname in steps:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._plugin("DEL", conf, att.name, att.path, ifname)
        subprocess.run(["ip", "netns", "del", att.name], capture_output=True)


class BareRunc:
    """`runc run -d` with a config from `runc spec`, no init, no seccomp (runc's defaults)."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "runc-root"
        self.bundles = state_dir / "bundles"
        self.bundles.mkdir(parents=True, exist_ok=True)
        template = state_dir / "template"
        template.mkdir(exist_ok=True)
        run(["runc", "spec", "--bundle", str(template)])
        self.template = json.loads((template / "config.json").read_text())

    def config(self, cid: str, rootfs: Path, args: list[str], netns: str | None) -> dict[str, Any]:
        config = json.loads(json.dumps(self.template))
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        config["process"]["env"] = ["PATH=/bin", "HOME=/root"]
        config["root"] = {"path": str(rootfs), "readonly": False}
        config["hostname"] = cid
        linux = config["linux"]
        linux["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
        spaces = [n for n in linux["namespaces"] if n["type"] != "network"]
        if netns is not None:
            spaces.append({"type": "network", "path": netns})
        linux["namespaces"] = spaces  # without a network entry: the host's
        return config

    def start(self, cid: str, config: dict[str, Any]) -> None:
        bundle = self.bundles / cid
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config))
        # The container inherits these: a file, never a pipe (the call would wait for its EOF).
        with open(bundle / "runc.log", "wb") as log:
            done = subprocess.run(
                ["runc", "--root", str(self.root), "run", "-d", "--bundle", str(bundle), cid],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=60,
            )
        if done.returncode != 0:
            text = (bundle / "runc.log").read_text(errors="replace")[-800:]
            raise RuntimeError(f"runc run -d {cid} exited {done.returncode}: {text}")

    def remove(self, cid: str) -> None:
        base = ["runc", "--root", str(self.root)]
        subprocess.run([*base, "kill", cid, "KILL"], capture_output=True, timeout=30)
        for _ in range(100):
            done = subprocess.run([*base, "delete", "--force", cid], capture_output=True)
            if done.returncode == 0 or b"not exist" in done.stderr:
                break
            time.sleep(0.02)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP_PARENT / cid).rmdir()
        shutil.rmtree(self.bundles / cid, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Ids runc still knows under our root (should be none)."""
        if not self.root.exists():
            return []
        out = run(["runc", "--root", str(self.root), "list", "-q"], check=False)
        return out.split()
