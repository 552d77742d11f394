"""The names shoal's DNS server answers, built from networks and endpoints records (pure).

Names are scoped: a container sees the names of services on the networks it is on, nothing
else. For a client in stack S asking `q` (an optional `.shoal` suffix is dropped):
  1. `q` as given: `web.S`, `tasks.web.S`, `_http._tcp.web.S`, `<alias>.S`, `<hostname>.S`;
  2. `q.S`: the bare names of the client's own stack (`web`, `tasks.web`, aliases, hostnames);
  3. bare names of other stacks that share a network with the client (external networks).
`<service>` answers its VIP on the shared network (`endpoint_mode: vip`) or every ready task's
address (`dnsrr`); `tasks.<service>` always the ready tasks' addresses; SRV records list the
service's target ports. Names under `.shoal` that do not exist are NXDOMAIN at once; other
names are not ours (`None`): the server forwards them if the client has upstreams.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from shoal.dns.codec import AAAA, ANY, NOERROR, NXDOMAIN, SRV, A, Question, Record, Srv
from shoal.dns.server import Answer
from shoal.model.network import DOMAIN, EndpointMode, Endpoints, Network

TTL = 1
"""Seconds: answers follow task changes within a second, so caches may not keep them longer."""

_SUFFIX = "." + DOMAIN
_turn = itertools.count()  # rotates multi-address answers: round-robin across clients


@dataclass(frozen=True, slots=True)
class Client:
    stack: str
    networks: frozenset[str]


@dataclass(slots=True)
class _Entry:
    network: str
    stack: str
    addresses: list[str] = field(default_factory=list)  # A records
    srv: list[Srv] = field(default_factory=list)


def _qualify(name: str, stack: str) -> str:
    return f"{name.lower()}.{stack}"


class Zone:
    """An immutable snapshot of every name; rebuild it on change (cheap: dicts of lists)."""

    def __init__(self) -> None:
        self.names: dict[str, list[_Entry]] = {}  # qualified name → one entry per network
        self.bare: dict[str, list[_Entry]] = {}  # unqualified name → entries of every stack
        self.clients: dict[str, Client] = {}  # task address → who asks

    @classmethod
    def build(cls, networks: Iterable[Network], endpoints: Iterable[Endpoints]) -> Zone:
        zone = cls()
        known = {n.name for n in networks}
        for record in endpoints:
            zone._add_service(record, known)
        return zone

    def _put(self, name: str, stack: str, entry: _Entry) -> None:
        self.names.setdefault(_qualify(name, stack), []).append(entry)
        self.bare.setdefault(name.lower(), []).append(entry)

    def _add_service(self, record: Endpoints, known: set[str]) -> None:
        stack, service = record.stack, record.service
        for task in record.tasks:
            client = Client(stack, frozenset(task.addresses))
            for address in task.addresses.values():
                self.clients[address] = client
        for network in sorted({n for t in record.tasks for n in t.addresses} | set(record.vips)):
            if network not in known:
                continue
            ready = [t.addresses[network] for t in record.ready if network in t.addresses]
            vip = record.vips.get(network)
            main = [vip] if record.mode is EndpointMode.VIP and vip else ready
            self._put(service, stack, _Entry(network, stack, main))
            self._put(f"tasks.{service}", stack, _Entry(network, stack, ready))
            aliases = {a for t in record.tasks for a in t.aliases.get(network, [])}
            for alias in sorted(aliases):
                self._put(alias, stack, _Entry(network, stack, main))
            hosts: dict[str, list[str]] = {}
            for task in record.ready:
                if network in task.addresses:
                    hosts.setdefault(task.id, []).append(task.addresses[network])
                    if task.hostname:
                        hosts.setdefault(task.hostname, []).append(task.addresses[network])
            for host, addresses in hosts.items():
                self._put(host, stack, _Entry(network, stack, addresses))
            target = f"{service}.{stack}{_SUFFIX}"
            for port in record.ports:
                if port.name:
                    srv = Srv(0, 0, port.target, target)
                    entry = _Entry(network, stack, srv=[srv])
                    self._put(f"_{port.name}._{port.protocol}.{service}", stack, entry)
            for number in record.target_ports:
                entry = _Entry(network, stack, srv=[Srv(0, 0, number, target)])
                self._put(f"_{number}._tcp.{service}", stack, entry)

    # --- the Resolver protocol -----------------------------------------------------------------

    def resolve(self, client: str, question: Question) -> Answer | None:
        name = question.name
        ours = name == DOMAIN or name.endswith(_SUFFIX)
        if ours:
            name = name[: -len(_SUFFIX)] if name != DOMAIN else ""
        asker = self.clients.get(client)
        entries = self._find(name, asker)
        if not entries:
            return Answer(NXDOMAIN, []) if ours else None
        return Answer(NOERROR, _records(question, entries))

    def _find(self, name: str, asker: Client | None) -> list[_Entry]:
        if asker is None:  # the host, or a process the zone does not know: sees every name
            return self.names.get(name) or self.bare.get(name) or []
        for candidates in (
            self.names.get(name),
            self.names.get(f"{name}.{asker.stack}"),
            self.bare.get(name),
        ):
            visible = [e for e in candidates or () if e.network in asker.networks]
            if visible:
                own = [e for e in visible if e.stack == asker.stack]
                return own or visible
        return []


def _records(question: Question, entries: list[_Entry]) -> list[Record]:
    qname, qtype = question.name, question.qtype
    out: list[Record] = []
    seen: set[object] = set()
    for entry in entries:
        if qtype in (A, ANY):
            for address in entry.addresses:
                if address not in seen:
                    seen.add(address)
                    out.append(Record(qname, A, TTL, address))
            if len(out) > 1:
                shift = next(_turn) % len(out)
                out = out[shift:] + out[:shift]
        if qtype in (SRV, ANY):
            for srv in entry.srv:
                if srv not in seen:
                    seen.add(srv)
                    out.append(Record(qname, SRV, TTL, srv))
    return out  # AAAA and the rest: no data (NOERROR, empty) — the name exists


__all__ = ["AAAA", "TTL", "Client", "Zone"]
