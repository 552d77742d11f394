"""shoal's iptables rules on a node: service VIPs, published ports, masquerade and isolation.

`render` turns the node's whole desired state (`NodeFirewall`) into one `iptables-restore
--noflush` payload that redefines only shoal's own chains (declaring a chain flushes it, so each
table is replaced atomically), deletes shoal chains nobody needs any more, and adds the jumps
from the built-in chains that are missing (once each; extras are deleted). Nothing else is
touched, so Docker's or anyone's rules live on beside ours. `apply` reads `iptables-save`,
renders and restores, serialised by a lock; `cleanup` removes every SHOAL-* chain and jump.

nat: SHOAL-PREROUTING/OUTPUT send VIP:port and published ports to a chain per service VIP
(SHOAL-SVC-<key>-<n>, n = the VIP's index in the service) or per published port
(SHOAL-PUB-<proto>-<port>[-<n>]) that picks a backend kube-proxy style (statistic 1/n, 1/(n-1),
…, last unconditional) and DNATs (same port for VIPs, the target port for published ones).
SHOAL-POSTROUTING masquerades (1) DNATed traffic whose client shares the backend's bridge
(hairpin: else the reply would go straight back on L2 and miss the reverse NAT) or is the host
itself (127.0.0.1 needs it; route_localnet is set by cni.ensure_bridge), told apart by
`--ctstate DNAT` and the source, so no packet mark is needed, and (2) outbound traffic of
non-internal networks (the bridge plugin's ipMasq is off). Clients outside keep their address.

filter: SHOAL-FORWARD isolates networks (Docker's two-stage SHOAL-ISOLATION-1/2; DNATed
traffic, i.e. published ports, may cross), cuts internal networks off both ways, accepts the
networks' own traffic (the FORWARD policy may be DROP) and drops unsolicited traffic routed into
them. SHOAL-INPUT rejects, fast (tcp-reset / port-unreachable), traffic to a VIP that was not
DNATed (no backend, or a port the service does not serve), to a published port without backend,
and anything from a shoal bridge to the host except DNS on the gateway and the API ports.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from shoal.model.errors import Invalid, ShoalError

from .netns import run

PREFIX = "SHOAL-"
PROTOCOLS = ("tcp", "udp", "sctp")
JUMPS: dict[str, tuple[tuple[str, str], ...]] = {
    "nat": (
        ("PREROUTING", "SHOAL-PREROUTING"),
        ("OUTPUT", "SHOAL-OUTPUT"),
        ("POSTROUTING", "SHOAL-POSTROUTING"),
    ),
    "filter": (("INPUT", "SHOAL-INPUT"), ("FORWARD", "SHOAL-FORWARD")),
}
_KEY = re.compile(r"^[A-Za-z0-9]{1,16}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_JUMP = re.compile(r"\s-[jg] (SHOAL-\S+)")


@dataclass(frozen=True, slots=True)
class FwNetwork:
    bridge: str
    subnet: str
    gateway: str
    internal: bool = False


@dataclass(frozen=True, slots=True)
class FwService:
    key: str  # chain_key(stack, service)
    vips: tuple[tuple[str, str], ...] = ()  # (bridge, vip)
    ports: tuple[tuple[str, int], ...] = ()  # (protocol, port) served on the VIPs; () = all
    backends: tuple[tuple[str, str], ...] = ()  # (bridge, address) of the ready tasks


@dataclass(frozen=True, slots=True)
class FwPublished:
    protocol: str
    published: int
    target: int
    host_ip: str = ""  # "" = every local address, 127.0.0.1 included
    backends: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeFirewall:
    networks: tuple[FwNetwork, ...] = ()
    services: tuple[FwService, ...] = ()
    published: tuple[FwPublished, ...] = ()


def chain_key(stack: str, service: str) -> str:
    """A stable short id of a service for its chain names (12 hex digits)."""
    return hashlib.sha256(f"{stack}/{service}".encode()).hexdigest()[:12]


# --- validation --------------------------------------------------------------------------------


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:
        raise Invalid(f"firewall: bad {what} {value!r}: {exc}") from exc


def _proto(value: str) -> str:
    if value not in PROTOCOLS:
        raise Invalid(f"firewall: protocol {value!r} is not one of {', '.join(PROTOCOLS)}")
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise Invalid(f"firewall: port {value} is out of range 1-65535")
    return value


def _validate(fw: NodeFirewall, api_ports: Iterable[int]) -> None:
    for net in fw.networks:
        if not _IFNAME.match(net.bridge):
            raise Invalid(f"firewall: bad bridge name {net.bridge!r}")
        _ip(net.gateway, "gateway")
        try:
            ipaddress.IPv4Network(net.subnet, strict=False)
        except ValueError as exc:
            raise Invalid(f"firewall: bad subnet {net.subnet!r}: {exc}") from exc
    bridges = {n.bridge for n in fw.networks}
    for svc in fw.services:
        if not _KEY.match(svc.key):
            raise Invalid(f"firewall: bad service key {svc.key!r} (1-16 letters or digits)")
        for bridge, address in (*svc.vips, *svc.backends):
            if bridge not in bridges:
                raise Invalid(f"firewall: service {svc.key}: {bridge!r} is not a network here")
            _ip(address, "service address")
        for proto, port in svc.ports:
            _proto(proto), _port(port)
    for pub in fw.published:
        _proto(pub.protocol), _port(pub.published), _port(pub.target)
        if pub.host_ip:
            _ip(pub.host_ip, "host_ip")
        for address in pub.backends:
            _ip(address, "published backend")
    for port in api_ports:
        _port(port)


# --- rendering ---------------------------------------------------------------------------------


@dataclass
class _Table:
    """The chains of one table being rendered, in the order they are written."""

    chains: dict[str, list[str]] = field(default_factory=dict)

    def add(self, chain: str, rule: str) -> None:
        self.chains.setdefault(chain, []).append(f"-A {chain} {rule}")


def _ipkey(address: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(address)


def _pick(table: _Table, chain: str, destinations: list[str], proto: str = "") -> None:
    """kube-proxy's uniform choice: backend i of n with probability 1/(n-i), the last always."""
    table.chains.setdefault(chain, [])
    n = len(destinations)
    for i, dest in enumerate(destinations):
        odds = f"-m statistic --mode random --probability {1 / (n - i):.10f} "
        match = f"-p {proto} " if proto else ""  # DNAT to a port needs the protocol
        table.add(chain, f"{odds if i < n - 1 else ''}{match}-j DNAT --to-destination {dest}")


def _services(nat: _Table, filt: _Table, fw: NodeFirewall) -> None:
    returns: list[str] = []
    for svc in sorted(fw.services, key=lambda s: s.key):
        for n, (bridge, vip) in enumerate(sorted(svc.vips)):
            backends = sorted({a for b, a in svc.backends if b == bridge}, key=_ipkey)
            returns.append(vip)
            if backends:
                chain = f"SHOAL-SVC-{svc.key}-{n}"
                # No ports listed: every tcp and udp port, as Swarm's VIPs do (the port stays).
                served = sorted(set(svc.ports)) or [("tcp", 0), ("udp", 0)]
                for proto, port in served:
                    dport = f" -m {proto} --dport {port}" if port else ""
                    match = f"-d {vip}/32 -p {proto}{dport} -j {chain}"
                    nat.add("SHOAL-PREROUTING", f"-i {bridge} {match}")
                    nat.add("SHOAL-OUTPUT", match)
                _pick(nat, chain, backends)
            # whatever was not DNATed (no backend, another port) is refused, not served by the host
            filt.add("SHOAL-INPUT", f"-d {vip}/32 -p tcp -j REJECT --reject-with tcp-reset")
            filt.add("SHOAL-INPUT", f"-d {vip}/32 -j REJECT --reject-with icmp-port-unreachable")
    for vip in sorted(set(returns), key=_ipkey):  # a VIP serves its service's ports only
        nat.add("SHOAL-PREROUTING", f"-d {vip}/32 -j RETURN")
        nat.add("SHOAL-OUTPUT", f"-d {vip}/32 -j RETURN")


def _reject(proto: str) -> str:
    return "tcp-reset" if proto == "tcp" else "icmp-port-unreachable"


def _published(nat: _Table, filt: _Table, fw: NodeFirewall) -> None:
    groups: dict[tuple[str, int], list[FwPublished]] = {}
    for pub in fw.published:
        groups.setdefault((pub.protocol, pub.published), []).append(pub)
    rules: list[tuple[bool, str, str]] = []  # (any address, sort key, rule)
    for (proto, port), pubs in sorted(groups.items()):
        for n, pub in enumerate(sorted(pubs, key=lambda p: (p.host_ip != "", p.host_ip))):
            where = f"-d {pub.host_ip}/32" if pub.host_ip else "-m addrtype --dst-type LOCAL"
            match = f"{where} -p {proto} -m {proto} --dport {port}"
            if not pub.backends:
                filt.add("SHOAL-INPUT", f"{match} -j REJECT --reject-with {_reject(proto)}")
                continue
            chain = f"SHOAL-PUB-{proto}-{port}" + (f"-{n}" if n else "")
            rules.append((not pub.host_ip, f"{proto}{port:05d}", f"{match} -j {chain}"))
            backends = sorted(set(pub.backends), key=_ipkey)
            _pick(nat, chain, [f"{b}:{pub.target}" for b in backends], proto)
    for _, _, rule in sorted(rules):  # a specific host_ip before "every address"
        nat.add("SHOAL-PREROUTING", rule)
        nat.add("SHOAL-OUTPUT", rule)


def _postrouting(nat: _Table, nets: list[FwNetwork]) -> None:
    for net in nets:
        b, subnet = net.bridge, str(ipaddress.IPv4Network(net.subnet, strict=False))
        dnat = "-m conntrack --ctstate DNAT -j MASQUERADE"
        nat.add("SHOAL-POSTROUTING", f"-s {subnet} -o {b} {dnat}")  # hairpin
        nat.add("SHOAL-POSTROUTING", f"-o {b} -m addrtype --src-type LOCAL {dnat}")  # the host
        if not net.internal:
            nat.add("SHOAL-POSTROUTING", f"-s {subnet} ! -o {b} -j MASQUERADE")


def _forward(filt: _Table, nets: list[FwNetwork]) -> None:
    filt.add("SHOAL-FORWARD", "-j SHOAL-ISOLATION-1")
    filt.add("SHOAL-ISOLATION-1", "-m conntrack --ctstate DNAT -j RETURN")  # published ports
    filt.chains.setdefault("SHOAL-ISOLATION-2", [])
    for net in nets:
        b = net.bridge
        filt.add("SHOAL-ISOLATION-1", f"-i {b} ! -o {b} -j SHOAL-ISOLATION-2")
        filt.add("SHOAL-ISOLATION-2", f"-o {b} -j DROP")
        if net.internal:
            filt.add("SHOAL-FORWARD", f"-i {b} ! -o {b} -j DROP")
            filt.add("SHOAL-FORWARD", f"-o {b} ! -i {b} -j DROP")
    for net in nets:
        b = net.bridge
        filt.add("SHOAL-FORWARD", f"-o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        filt.add("SHOAL-FORWARD", f"-o {b} -m conntrack --ctstate DNAT -j ACCEPT")
        filt.add("SHOAL-FORWARD", f"-i {b} -j ACCEPT")
        filt.add("SHOAL-FORWARD", f"-o {b} -j DROP")  # unsolicited, routed in from elsewhere


def _input(filt: _Table, nets: list[FwNetwork], api_ports: Iterable[int]) -> None:
    for net in nets:
        b, gw = net.bridge, net.gateway
        for proto in ("udp", "tcp"):
            filt.add("SHOAL-INPUT", f"-i {b} -d {gw}/32 -p {proto} -m {proto} --dport 53 -j RETURN")
        for port in sorted(set(api_ports)):
            filt.add("SHOAL-INPUT", f"-i {b} -p tcp -m tcp --dport {port} -j RETURN")
        filt.add("SHOAL-INPUT", f"-i {b} -p tcp -j REJECT --reject-with tcp-reset")
        filt.add("SHOAL-INPUT", f"-i {b} -j REJECT --reject-with icmp-port-unreachable")


def _desired(fw: NodeFirewall, api_ports: Iterable[int]) -> dict[str, _Table]:
    nat = _Table({c: [] for c in ("SHOAL-PREROUTING", "SHOAL-OUTPUT", "SHOAL-POSTROUTING")})
    filt = _Table({c: [] for c in ("SHOAL-INPUT", "SHOAL-FORWARD")})
    filt.add("SHOAL-INPUT", "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    nets = sorted(fw.networks, key=lambda n: n.bridge)
    _services(nat, filt, fw)
    _published(nat, filt, fw)
    _postrouting(nat, nets)
    _forward(filt, nets)
    _input(filt, nets, api_ports)
    return {"nat": nat, "filter": filt}


@dataclass
class Saved:
    """What `iptables-save` says of one table: its chains and rules (as `-A …` lines)."""

    chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    def shoal_chains(self) -> list[str]:
        return [c for c in self.chains if c.startswith(PREFIX)]

    def jumps_into_shoal(self) -> list[str]:
        """Rules of other chains that jump to a shoal chain."""
        return [r for r in self.rules if not r.split()[1].startswith(PREFIX) and _JUMP.search(r)]


def parse_save(text: str) -> dict[str, Saved]:
    """The tables of an `iptables-save` dump."""
    tables: dict[str, Saved] = {}
    current = Saved()
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), Saved())
        elif line.startswith(":"):
            current.chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            current.rules.append(line.strip())
    return tables


def render_tables(
    fw: NodeFirewall, api_ports: Iterable[int] = (), current: str = ""
) -> dict[str, str]:
    """The iptables-restore --noflush payload that makes shoal's chains say `fw`, per table.

    `current` is the `iptables-save` output now (its shoal chains and jumps); with "" the
    payload assumes none exist yet.
    """
    api_ports = tuple(api_ports)
    _validate(fw, api_ports)
    saved = parse_save(current)
    sections: dict[str, str] = {}
    for name, table in _desired(fw, api_ports).items():
        now = saved.get(name, Saved())
        stale = sorted(set(now.shoal_chains()) - set(table.chains))
        out = [f"*{name}"]
        out += [f":{chain} - [0:0]" for chain in [*table.chains, *stale]]
        for rules in table.chains.values():
            out += rules
        for builtin, chain in JUMPS[name]:
            count = now.rules.count(f"-A {builtin} -j {chain}")
            if count == 0:
                out.append(f"-I {builtin} 1 -j {chain}")
            out += [f"-D {builtin} -j {chain}"] * max(0, count - 1)
        out += [f"-X {chain}" for chain in stale]
        out.append("COMMIT")
        sections[name] = "\n".join(out) + "\n"
    return sections


def render(fw: NodeFirewall, api_ports: Iterable[int] = (), current: str = "") -> str:
    """`render_tables` as one payload (nat, then filter)."""
    return "".join(render_tables(fw, api_ports, current).values())


def _intact(section: str, now: Saved) -> bool:
    """Whether the table still holds as many rules per shoal chain as `section` put there."""
    want = Counter(line.split()[1] for line in section.splitlines() if line.startswith("-A "))
    have = Counter(r.split()[1] for r in now.rules if r.split()[1].startswith(PREFIX))
    return want == have


def render_cleanup(current: str) -> str:
    """The payload that removes every shoal chain and every jump into one ("" if none)."""
    out: list[str] = []
    for name, now in sorted(parse_save(current).items()):
        chains, jumps = now.shoal_chains(), now.jumps_into_shoal()
        if not chains and not jumps:
            continue
        out.append(f"*{name}")
        out += [f":{chain} - [0:0]" for chain in chains]
        out += ["-D" + rule[2:] for rule in jumps]
        out += [f"-X {chain}" for chain in chains]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


# --- applying ----------------------------------------------------------------------------------

_applied: dict[tuple[str, str], str] = {}  # (prefix, table) → the section restored last
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


async def _save() -> str:
    return (await run("iptables-save")).check("iptables-save").stdout


async def _restore(payload: str) -> None:
    done = await run("iptables-restore", "-w", "--noflush", stdin=payload)
    if done.returncode != 0:
        raise ShoalError(f"iptables-restore failed: {done.stderr.strip() or done.stdout.strip()}")


def _canonical(text: str, prefix: str) -> str:
    """An iptables-save dump as if this agent's chains were called SHOAL-* (and any chain
    really called SHOAL-* were someone else's)."""
    if prefix == "SHOAL":
        return text
    return text.replace(PREFIX, "OTHER-" + PREFIX).replace(f"{prefix}-", PREFIX)


def _named(payload: str, prefix: str) -> str:
    return payload if prefix == "SHOAL" else payload.replace(PREFIX, f"{prefix}-")


def agent_prefix(identity: str) -> str:
    """The chain-name prefix of one agent: "SH" + 4 hex digits, so several agents on one
    machine (tests, a demo) keep their rules apart and iptables' 28-character limit holds."""
    return "SH" + hashlib.sha256(identity.encode()).hexdigest()[:4]


async def apply(fw: NodeFirewall, api_ports: Iterable[int] = (), *, prefix: str = "SHOAL") -> None:
    """Make the node's shoal rules say `fw`, atomically per table; idempotent.

    A table is left alone when this process last wrote exactly the same section and the table
    still has that many rules in each shoal chain (restoring costs ~20 ms a table with nft,
    reading ~5 ms); a flush by someone else changes the counts and brings the rules back.
    Chains are named `<prefix>-…` (default SHOAL-…).
    """
    async with _lock():
        current = _canonical(await _save(), prefix)
        saved = parse_save(current)
        sections = render_tables(fw, api_ports, current)
        todo = [
            text
            for name, text in sections.items()
            if _applied.get((prefix, name)) != text or not _intact(text, saved.get(name, Saved()))
        ]
        if todo:
            await _restore(_named("".join(todo), prefix))
        _applied.update({(prefix, name): text for name, text in sections.items()})


async def cleanup(*, prefix: str = "SHOAL") -> None:
    """Remove every `<prefix>-*` chain and every jump to one; safe when there are none."""
    async with _lock():
        for key in [k for k in _applied if k[0] == prefix]:
            del _applied[key]
        payload = render_cleanup(_canonical(await _save(), prefix))
        if payload:
            await _restore(_named(payload, prefix))
