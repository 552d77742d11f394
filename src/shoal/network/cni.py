"""CNI attachments: a task's interfaces on shoal's per-node bridges, made by calling the
reference `bridge` plugin directly (there is no cnitool here) with static IPAM.

The server allocates every address, so IPAM is `static`: each attachment carries its address
and the network's gateway. The bridge plugin creates the veth pair, attaches it to the bridge and
configures the container side. Its `ipMasq` stays off: outbound masquerade is one rule per
network in `firewall.py` (the plugin's per-container iptables chain costs ~10 ms per ADD, ~55 ms
per DEL, and leaks when DEL runs after the namespace is gone).

Every ADD is recorded in `<cache_dir>/<container_id>.json` (the config before the call, the
result right after), so `delete` can undo a crash half-way through `add`: DEL runs in reverse
order with the cached config and `prevResult`, as the CNI spec asks of a runtime.

Bridges are created by `ensure_bridge` before any task (VIPs and the DNS server live on them).
The plugin accepts an existing bridge only when the gateway address is its FIRST IPv4 address
(any other IPv4 address seen before it fails ADD with "already has an IP address different
from"), so the gateway goes on first and VIPs (/32) are only ever appended after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.model.errors import Conflict, Invalid, ShoalError, Unavailable

from .netns import run

CNI_PATH = "/usr/lib/cni"
CNI_VERSION = "1.0.0"  # the newest the 1.1.1 plugins speak (they list 0.1.0 … 1.0.0)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the spec's container ID alphabet
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_TRY_AGAIN = 11  # CNI error code: "try again later"


@dataclass(frozen=True, slots=True)
class BridgeNet:
    """One network on this node: a Linux bridge with its subnet and gateway."""

    name: str  # the network's name ("<stack>_<network>")
    bridge: str  # interface name, at most 15 characters
    subnet: str  # "10.213.3.0/24"
    gateway: str  # "10.213.3.1", the bridge's own address
    internal: bool = False  # no default route out of the subnet
    mtu: int | None = None

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet, strict=False).prefixlen


@dataclass(frozen=True, slots=True)
class Attach:
    """One interface of a task: `ifname` on `net` with a server-given `address` (no prefix)."""

    net: BridgeNet
    ifname: str
    address: str


def plugin_config(attach: Attach) -> dict[str, Any]:
    """The bridge plugin's network configuration for one attachment."""
    net = attach.net
    routes = [] if net.internal else [{"dst": "0.0.0.0/0", "gw": net.gateway}]
    config: dict[str, Any] = {
        "cniVersion": CNI_VERSION,
        "name": net.name,
        "type": "bridge",
        "bridge": net.bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "static",
            "addresses": [{"address": f"{attach.address}/{net.prefixlen}", "gateway": net.gateway}],
            "routes": routes,
        },
    }
    if net.mtu:
        config["mtu"] = net.mtu
    return config


def _check_id(container_id: str) -> None:
    if not _ID.match(container_id):
        raise Invalid(
            f"bad container id {container_id!r} for CNI",
            hint="use letters, digits, '_', '.' and '-'",
        )


def _check_attach(attach: Attach) -> None:
    if not _IFNAME.match(attach.ifname):
        raise Invalid(f"bad interface name {attach.ifname!r} (at most 15 characters)")
    try:
        address = ipaddress.IPv4Address(attach.address)
        gateway = ipaddress.IPv4Address(attach.net.gateway)
        subnet = ipaddress.IPv4Network(attach.net.subnet, strict=False)
    except ValueError as exc:
        raise Invalid(f"network {attach.net.name!r}: {exc}") from exc
    if gateway not in subnet:
        raise Invalid(f"network {attach.net.name!r}: gateway {gateway} is not in {subnet}")
    reserved = (gateway, subnet.network_address, subnet.broadcast_address)
    if address not in subnet or address in reserved:
        raise Invalid(
            f"address {address} of {attach.ifname} is not a host address of network "
            f"{attach.net.name!r} ({subnet}, gateway {gateway})"
        )


# --- the cache: what was added, so it can be undone -------------------------------------------


def _cache_file(cache_dir: Path, container_id: str) -> Path:
    return cache_dir / f"{container_id}.json"


def _write_cache(file: Path, record: dict[str, Any]) -> None:
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, file)


def _read_cache(file: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ShoalError(f"CNI cache {file} is corrupt: {exc}") from exc
    return record if isinstance(record, dict) else None


# --- calling the plugin ------------------------------------------------------------------------


async def _call(
    command: str, container_id: str, netns: str, ifname: str, config: dict[str, Any]
) -> dict[str, Any]:
    """Run the plugin named by `config["type"]`; its JSON result, or a ShoalError."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": CNI_PATH,
        "PATH": _PATH,
    }
    binary = os.path.join(CNI_PATH, str(config["type"]))
    if not os.access(binary, os.X_OK):
        raise Unavailable(
            f"CNI plugin {binary} is missing", hint="apt-get install containernetworking-plugins"
        )
    done = await run(binary, stdin=json.dumps(config), env=env)
    try:
        parsed = json.loads(done.stdout) if done.stdout.strip() else {}
    except ValueError:
        parsed = {}
    if done.returncode == 0:
        return parsed if isinstance(parsed, dict) else {}
    raise _plugin_error(command, ifname, config, parsed, done.stderr or done.stdout)


def _plugin_error(
    command: str, ifname: str, config: dict[str, Any], error: Any, raw: str
) -> ShoalError:
    what = f"CNI {command} of {ifname} on network {config.get('name')!r}"
    if not isinstance(error, dict) or "msg" not in error:
        return ShoalError(f"{what} failed: {raw.strip() or 'no output'}")
    text = f"{what} failed: {error['msg']}"
    if error.get("details"):
        text += f" ({error['details']})"
    if error.get("code") == _TRY_AGAIN:
        return Unavailable(text)
    return ShoalError(text)


# --- add / delete ------------------------------------------------------------------------------


async def add(
    container_id: str, netns_path: str, attachments: list[Attach], cache_dir: Path
) -> list[dict[str, Any]]:
    """Attach the namespace at `netns_path` to each network in turn; returns the CNI results.

    On a failure part-way everything added so far is deleted again before the error is raised.
    """
    _check_id(container_id)
    for attach in attachments:
        _check_attach(attach)
    cache_dir.mkdir(parents=True, exist_ok=True)
    file = _cache_file(cache_dir, container_id)
    if file.exists():
        raise Conflict(
            f"container {container_id!r} already has CNI attachments ({file})",
            hint="delete them first",
        )
    record: dict[str, Any] = {"netns": netns_path, "attachments": []}
    results: list[dict[str, Any]] = []
    for attach in attachments:
        config = plugin_config(attach)
        entry: dict[str, Any] = {"ifname": attach.ifname, "config": config, "result": None}
        record["attachments"].append(entry)
        _write_cache(file, record)  # before the call: a crash inside ADD is undone by DEL too
        try:
            result = await _call("ADD", container_id, netns_path, attach.ifname, config)
        except ShoalError:
            await _undo(container_id, netns_path, cache_dir)
            raise
        entry["result"] = result
        _write_cache(file, record)
        results.append(result)
    return results


async def _undo(container_id: str, netns_path: str, cache_dir: Path) -> None:
    """Best-effort cleanup after a failed ADD; the ADD's error is the one worth raising."""
    with contextlib.suppress(ShoalError):
        await delete(container_id, netns_path, cache_dir)


async def delete(container_id: str, netns_path: str | None, cache_dir: Path) -> None:
    """Undo `add` from the cache, last attachment first; nothing to do without a cache file.

    With the namespace gone (or `netns_path` None) the plugin is called with an empty CNI_NETNS:
    the container side died with the namespace and static IPAM holds no state, so the DEL only
    has host-side leftovers to clean and succeeds.
    """
    _check_id(container_id)
    file = _cache_file(cache_dir, container_id)
    record = _read_cache(file)
    if record is None:
        file.unlink(missing_ok=True)
        return
    netns = netns_path if netns_path and os.path.exists(netns_path) else ""
    entries: list[dict[str, Any]] = list(record.get("attachments", []))
    while entries:
        entry = entries[-1]
        config = dict(entry["config"])
        if entry.get("result"):
            config["prevResult"] = entry["result"]
        await _call("DEL", container_id, netns, entry["ifname"], config)
        entries.pop()
        record["attachments"] = entries
        _write_cache(file, record)  # what is left, should a later DEL fail
    file.unlink(missing_ok=True)


# --- bridges -----------------------------------------------------------------------------------


def bridge_mac(bridge: str) -> str:
    """A stable, locally administered MAC for `bridge`: a bridge without a fixed address takes
    its lowest port's, so it would change as tasks come and go and stale the ARP caches of the
    containers (and of the VIPs they resolved to it)."""
    digest = hashlib.sha256(bridge.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


async def _addresses(bridge: str) -> list[tuple[str, int]] | None:
    """The IPv4 addresses of `bridge` in kernel order, or None when there is no such link."""
    done = await run("ip", "-json", "-details", "addr", "show", "dev", bridge)
    if done.returncode != 0:
        if "does not exist" in done.stderr:
            return None
        done.check(f"ip addr show dev {bridge}")
    links = json.loads(done.stdout or "[]")
    link = links[0] if links else {}
    if link.get("linkinfo", {}).get("info_kind") != "bridge":
        raise Conflict(
            f"{bridge} exists and is not a bridge", hint=f"remove it (ip link del {bridge})"
        )
    infos = link.get("addr_info", [])
    return [(a["local"], int(a["prefixlen"])) for a in infos if a.get("family") == "inet"]


async def _batch(lines: list[str], what: str) -> None:
    if lines:
        (await run("ip", "-batch", "-", stdin="\n".join(lines) + "\n")).check(what)


def _set_route_localnet(bridge: str) -> None:
    """Let packets to 127.0.0.0/8 be DNATed out of this bridge (published ports on
    127.0.0.1); otherwise the kernel drops them as martians."""
    knob = Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
    try:
        knob.write_text("1")
    except OSError as exc:
        raise ShoalError(f"cannot set {knob}: {exc}") from exc


async def ensure_bridge(net: BridgeNet) -> None:
    """Make `net.bridge` exist, up, with the gateway as its first IPv4 address; idempotent."""
    gateway = (net.gateway, net.prefixlen)
    current = await _addresses(net.bridge)
    lines: list[str] = []
    if current is None:
        mtu = f" mtu {net.mtu}" if net.mtu else ""
        lines.append(f"link add {net.bridge} address {bridge_mac(net.bridge)}{mtu} type bridge")
        current = []
    if not current or current[0] != gateway:
        # the gateway must come first: take everything off, put the gateway on, the rest back
        lines += [f"addr del {a}/{n} dev {net.bridge}" for a, n in current]
        lines.append(f"addr add {net.gateway}/{net.prefixlen} dev {net.bridge}")
        lines += [f"addr add {a}/{n} dev {net.bridge}" for a, n in current if (a, n) != gateway]
    lines.append(f"link set {net.bridge} up")
    await _batch(lines, f"setting up bridge {net.bridge}")
    _set_route_localnet(net.bridge)


async def remove_bridge(net: BridgeNet) -> None:
    """Delete `net.bridge`; nothing to do when it is not there."""
    done = await run("ip", "link", "del", net.bridge)
    if done.returncode != 0 and "Cannot find device" not in done.stderr:
        done.check(f"ip link del {net.bridge}")


async def set_vips(bridge: str, vips: set[str]) -> None:
    """Make exactly `vips` (as /32) the bridge's addresses besides the gateway's."""
    try:
        parsed = sorted(ipaddress.IPv4Address(v) for v in vips)
    except ValueError as exc:
        raise Invalid(f"bad virtual IP: {exc}") from exc
    wanted = [str(v) for v in parsed]
    current = await _addresses(bridge)
    if current is None:
        raise ShoalError(f"bridge {bridge} does not exist", hint="ensure_bridge first")
    have = [a for a, n in current if n == 32]
    if current and current[0][1] == 32 and len(have) < len(current):
        stale, missing = have, wanted  # a VIP ahead of the gateway: put them all back after it
    else:
        stale = [a for a in have if a not in wanted]
        missing = [a for a in wanted if a not in have]
    lines = [f"addr del {a}/32 dev {bridge}" for a in stale]
    lines += [f"addr add {a}/32 dev {bridge}" for a in missing]
    await _batch(lines, f"setting the VIPs of {bridge}")
