"""What a deploy and a new task need from networking, decided purely from cluster state.

`plan_stack` runs at deploy (dry runs too, so port clashes and bad subnets are refused before
anything is written): the networks to create, each service's VIPs and published ports.
`attach_task` runs when the server creates a task: one address per network of its service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shoal.model.cluster import Service, Task
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid
from shoal.model.network import Attachment, EndpointMode, Network, PublishedPort
from shoal.network import allocate

NO_NETWORK_MODES = ("host", "none")


def endpoint_mode(spec: ServiceSpec) -> EndpointMode:
    raw = spec.deploy.endpoint_mode if spec.deploy and spec.deploy.endpoint_mode else "vip"
    try:
        return EndpointMode(raw)
    except ValueError:
        raise Invalid(f"endpoint_mode {raw!r} is not vip or dnsrr") from None


def service_networks(
    stack: str, spec: ServiceSpec, declared: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(Compose key, full network name) of every network the service joins, in priority order
    (the first one gives eth0 and the default route)."""
    if spec.network_mode:
        return []  # host, none, service:x, container:x — no networks of ours
    joined = spec.networks or {}
    keys = sorted(
        joined,
        key=lambda k: (-((joined[k].priority or 0) if joined[k] else 0), k),  # type: ignore[union-attr]
    )
    out = []
    for key in keys:
        raw = declared.get(key) or {}
        out.append((key, raw.get("name") or f"{stack}_{key}"))
    return out


@dataclass
class StackNetworking:
    create: list[Network] = field(default_factory=list)
    vips: dict[str, dict[str, str]] = field(default_factory=dict)  # service → network → VIP
    ports: dict[str, list[PublishedPort]] = field(default_factory=dict)  # service → ports


def plan_stack(
    stack: str,
    services: Mapping[str, ServiceSpec],
    declared: Mapping[str, Any],
    networks: Iterable[Network],
    existing: Iterable[Service],
    *,
    pool: str = allocate.DEFAULT_POOL,
    now: float = 0.0,
    avoid: Iterable[str] = (),
) -> StackNetworking:
    """`existing`: every service of the cluster (this stack's current ones included);
    `avoid`: subnets new networks must not overlap (the host's routes)."""
    existing = list(existing)
    create = allocate.new_networks(stack, declared, networks, pool=pool, now=now, avoid=avoid)
    by_name = {n.name: n for n in networks} | {n.name: n for n in create}
    mine = {s.name: s for s in existing if s.stack == stack}
    others = [s for s in existing if s.stack != stack and not s.removing]
    used_vips = {vip for s in others for vip in s.vips.values()}
    taken = {f"{s.stack}/{s.name}": s.ports for s in others}
    out = StackNetworking(create=create)
    for name, spec in sorted(services.items()):
        who = f"service {name!r}"
        current = mine.get(name)
        joined = service_networks(stack, spec, declared)
        for key, full in joined:
            if full not in by_name:
                raise Invalid(f"{who}: network {key!r} is not declared in the stack")
        vips: dict[str, str] = {}
        if joined and endpoint_mode(spec) is EndpointMode.VIP:
            for _, full in joined:
                kept = current.vips.get(full) if current else None
                vip = kept or allocate.allocate(by_name[full], used_vips, top=True)
                used_vips.add(vip)
                vips[full] = vip
        out.vips[name] = vips
        wanted = allocate.expand_ports(name, spec.ports or [])
        if wanted and not joined and spec.network_mode != "host":
            raise Invalid(f"{who}: publishes ports but has network_mode {spec.network_mode!r}")
        if wanted and joined and all(by_name[full].internal for _, full in joined):
            raise Invalid(
                f"{who}: publishes ports but is only on internal networks",
                hint="internal networks are unreachable from outside; attach it to another one",
            )
        out.ports[name] = allocate.assign_ports(
            f"{stack}/{name}", wanted, taken, current.ports if current else None
        )
        taken[f"{stack}/{name}"] = out.ports[name]
    return out


def attach_task(
    task: Task, declared: Mapping[str, Any], networks: Mapping[str, Network], used: set[str]
) -> list[Attachment]:
    """Addresses for a new task; `used` (every address in use) is updated."""
    out = []
    for key, full in service_networks(task.stack, task.spec, declared):
        network = networks.get(full)
        if network is None:
            raise Invalid(f"task {task.name}: network {full} does not exist")
        settings = (task.spec.networks or {}).get(key)
        pinned = settings.ipv4_address if settings else None
        if pinned:
            address = allocate.check_address(network, pinned, used, f"task {task.name}")
        else:
            address = allocate.allocate(network, used)
        used.add(address)
        aliases = list(settings.aliases or []) if settings else []
        out.append(Attachment(network=full, address=address, aliases=aliases))
    return out
