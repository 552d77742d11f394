"""Address allocation, done by the server alone so every node sees the same picture (pure).

- Networks get a subnet from the pool (default 10.213.0.0/16 in /24s: clear of Docker's
  172.17/16 and Podman's 10.88/16) unless the Compose file gives `ipam.config[].subnet`.
- Service VIPs are taken from the top of each network's subnet, task addresses from the bottom
  (after the gateway), so the two rarely meet; `ipv4_address` pins a task's address.
- Published ports: ranges expanded, a port without `published` gets one from the ephemeral
  range (30000-32767, like Swarm), and a port another service already publishes is a Conflict.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from shoal.model.compose_mounts import PortSpec
from shoal.model.errors import Conflict, Invalid, Unavailable
from shoal.model.network import Network, PublishedPort

DEFAULT_POOL = "10.213.0.0/16"
DEFAULT_PREFIX = 24
EPHEMERAL_PORTS = range(30000, 32768)


def bridge_name(network: str) -> str:
    """A Linux interface name (≤ 15 characters) unique to the network's name."""
    return "shl" + hashlib.sha256(network.encode()).hexdigest()[:12]


def _overlaps(subnet: ipaddress.IPv4Network, others: Iterable[ipaddress.IPv4Network]) -> bool:
    return any(subnet.overlaps(o) for o in others)


def new_networks(
    stack: str,
    declared: Mapping[str, Any],
    existing: Iterable[Network],
    *,
    pool: str = DEFAULT_POOL,
    prefix: int = DEFAULT_PREFIX,
    now: float = 0.0,
    avoid: Iterable[str] = (),
) -> list[Network]:
    """The networks a deploy of `stack` must create; `declared` is the normalised Compose
    `networks:` map. Existing ones keep their subnet; external ones must exist. Subnets are
    picked clear of `avoid` too (the host's routes: another bridge, a VPN…)."""
    known = {n.name: n for n in existing}
    taken = [ipaddress.IPv4Network(n.subnet) for n in known.values()]
    routed = [ipaddress.IPv4Network(r) for r in avoid]
    created: list[Network] = []
    for key, raw in sorted(declared.items()):
        spec = raw or {}
        name = spec.get("name") or f"{stack}_{key}"
        if spec.get("external"):
            if name not in known:
                raise Invalid(
                    f"network {key!r}: external network {name!r} does not exist",
                    hint="deploy the stack that declares it first, or drop `external: true`",
                )
            continue
        if spec.get("driver") not in (None, "bridge", "overlay"):
            raise Invalid(
                f"network {key!r}: driver {spec['driver']!r} is not supported",
                hint="shoal networks are bridges on each node; use driver: bridge or leave it out",
            )
        current = known.get(name)
        if current is not None:
            if current.stack != stack:
                raise Conflict(
                    f"network {key!r}: the name {name!r} belongs to stack {current.stack!r}",
                    hint="use `external: true` to join it, or give this network another name",
                )
            continue
        subnet = _declared_subnet(key, spec) or _free_subnet(pool, prefix, taken + routed)
        if _overlaps(subnet, taken):
            raise Conflict(
                f"network {key!r}: subnet {subnet} overlaps another shoal network",
                hint="pick a subnet outside the ones `shoal network ls` shows",
            )
        taken.append(subnet)
        gateway = _declared_gateway(spec) or str(next(subnet.hosts()))
        network = Network(
            name=name,
            stack=stack,
            subnet=str(subnet),
            gateway=gateway,
            bridge=bridge_name(name),
            internal=bool(spec.get("internal")),
            labels={str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
            created_at=now,
        )
        created.append(network)
        known[name] = network
    return created


def _declared_subnet(key: str, spec: Mapping[str, Any]) -> ipaddress.IPv4Network | None:
    for entry in (spec.get("ipam") or {}).get("config") or []:
        raw = entry.get("subnet")
        if not raw:
            continue
        try:
            subnet = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise Invalid(f"network {key!r}: {raw!r} is not a subnet") from None
        if not isinstance(subnet, ipaddress.IPv4Network):
            continue  # IPv6 subnets are not supported yet: the IPv4 one is used
        if subnet.prefixlen > 29:
            raise Invalid(f"network {key!r}: subnet {raw} is too small", hint="use /29 or larger")
        return subnet
    return None


def _declared_gateway(spec: Mapping[str, Any]) -> str | None:
    for entry in (spec.get("ipam") or {}).get("config") or []:
        if entry.get("gateway") and "." in entry["gateway"]:
            return str(entry["gateway"])
    return None


def _free_subnet(
    pool: str, prefix: int, taken: list[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network:
    for candidate in ipaddress.IPv4Network(pool).subnets(new_prefix=prefix):
        if not _overlaps(candidate, taken):
            return candidate
    raise Unavailable(
        f"the network pool {pool} has no free /{prefix} left",
        hint="remove unused stacks, or start the server with a larger --network-pool",
    )


def allocate(network: Network, used: set[str], *, top: bool = False) -> str:
    """A free address of `network` (not the gateway, network or broadcast address)."""
    subnet = ipaddress.IPv4Network(network.subnet)
    hosts = subnet.hosts()
    candidates = reversed(list(hosts)) if top else hosts
    for address in candidates:
        text = str(address)
        if text != network.gateway and text not in used:
            return text
    raise Unavailable(
        f"network {network.name} ({network.subnet}) has no free address",
        hint="give the network a larger ipam subnet, or run fewer tasks on it",
    )


def check_address(network: Network, address: str, used: set[str], who: str) -> str:
    """Validate a pinned `ipv4_address`."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise Invalid(f"{who}: ipv4_address {address!r} is not an IPv4 address") from None
    if parsed not in ipaddress.IPv4Network(network.subnet) or address == network.gateway:
        raise Invalid(
            f"{who}: ipv4_address {address} is not a usable address of network {network.name} "
            f"({network.subnet})",
            hint="declare the network's ipam subnet and pick an address inside it",
        )
    if address in used:
        raise Conflict(f"{who}: ipv4_address {address} is already in use")
    return address


# --- published ports ---------------------------------------------------------------------


def _port_range(raw: str, what: str) -> list[int]:
    first, _, last = raw.partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise Invalid(f"{what}: {raw!r} is not a port or a port range") from None
    if not 1 <= lo <= hi <= 65535:
        raise Invalid(f"{what}: {raw!r} is not a port range within 1-65535")
    return list(range(lo, hi + 1))


def expand_ports(service: str, ports: Iterable[PortSpec]) -> list[PublishedPort]:
    """Compose `ports` entries as one PublishedPort per port; `published: 0` = pick one."""
    out: list[PublishedPort] = []
    for entry in ports:
        what = f"service {service!r}: port {entry.target}"
        protocol = (entry.protocol or "tcp").lower()
        if protocol not in ("tcp", "udp"):
            raise Invalid(f"{what}: protocol {entry.protocol!r} is not supported (tcp or udp)")
        if entry.mode not in ("ingress", "host"):
            raise Invalid(f"{what}: mode {entry.mode!r} is not ingress or host")
        published = _port_range(str(entry.published), what) if entry.published else [0]
        if published != [0] and len(published) != 1:
            # A published range maps one-to-one onto consecutive targets ("9000-9001:9000-9001").
            targets = [entry.target + i for i in range(len(published))]
        else:
            targets = [entry.target]
        for target, port in zip(targets, published, strict=True):
            out.append(
                PublishedPort(
                    target=target,
                    published=port,
                    protocol=protocol,
                    mode=entry.mode,
                    host_ip=entry.host_ip or "",
                    name=entry.name or "",
                )
            )
    return out


def _clash(a: PublishedPort, b: PublishedPort) -> bool:
    same_ip = not a.host_ip or not b.host_ip or a.host_ip == b.host_ip
    return a.protocol == b.protocol and a.published == b.published and same_ip


def assign_ports(
    who: str,
    wanted: list[PublishedPort],
    taken: Mapping[str, list[PublishedPort]],
    previous: list[PublishedPort] | None = None,
) -> list[PublishedPort]:
    """Check `wanted` against the ports other services publish (`taken`: owner → ports) and
    give a port to entries without one (reusing the previous assignment on redeploys)."""
    claimed = [(owner, p) for owner, ports in taken.items() for p in ports]
    result: list[PublishedPort] = []
    reuse = [p for p in previous or [] if p.published]
    for port in wanted:
        if port.published:
            for owner, other in claimed:
                if _clash(port, other):
                    raise Conflict(
                        f"{who}: port {port.published}/{port.protocol} is already published "
                        f"by {owner}",
                        hint="publish another port, or remove the other service first",
                    )
            result.append(port)
            claimed.append((who, port))
            continue
        chosen = next(
            (
                p.published
                for p in reuse
                if p.target == port.target
                and p.protocol == port.protocol
                and not any(_clash(p, o) for _, o in claimed)
            ),
            None,
        ) or _free_port(port, [o for _, o in claimed])
        port = port.model_copy(update={"published": chosen})
        result.append(port)
        claimed.append((who, port))
    return result


def _free_port(port: PublishedPort, claimed: list[PublishedPort]) -> int:
    for candidate in EPHEMERAL_PORTS:
        if not any(_clash(port.model_copy(update={"published": candidate}), o) for o in claimed):
            return candidate
    raise Unavailable("no free port left in the ephemeral range 30000-32767")
