"""Networking objects: networks, a task's addresses on them, and a service's endpoints.

The server allocates every address (network subnets, service virtual IPs, task addresses) so
any node, the DNS server and the catalog see one consistent picture; agents only plumb what
they are told (CNI with static IPAM, iptables rules). `Endpoints` is derived data: written by
the server's endpoints controller from services and tasks, read by agents (DNS, VIP and port
rules) and by the catalog API.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


DOMAIN = "shoal"
"""The DNS domain of service names: `<service>.<stack>.shoal`."""


class Network(Model):
    """One Compose network of a stack (`<stack>_<name>`), materialised on the nodes that run
    tasks attached to it as a Linux bridge with its own subnet."""

    name: str  # full name: "<stack>_<network>" (or the Compose `name:`)
    stack: str  # the stack that declared it
    subnet: str  # "10.213.3.0/24"
    gateway: str  # "10.213.3.1": the bridge's address, where the node's DNS server answers
    bridge: str  # Linux interface name, at most 15 characters ("shl" + 12 hex)
    internal: bool = False  # no masquerade, no route out of the subnet
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: float = 0.0


class Attachment(Model):
    """A task's address on one network (allocated by the server when the task is created)."""

    network: str
    address: str  # "10.213.3.5" (the prefix length is the network's)
    aliases: list[str] = Field(default_factory=list)  # Compose network aliases


class EndpointMode(StrEnum):
    VIP = "vip"
    DNSRR = "dnsrr"


class PublishedPort(Model):
    """One published port of a service (ranges are expanded, one entry per port)."""

    target: int
    published: int
    protocol: str = "tcp"  # tcp | udp
    mode: str = "ingress"  # ingress (every node, every task) | host (only where a task runs)
    host_ip: str = ""  # "" = every address of the node
    name: str = ""


class EndpointTask(Model):
    """One task's view for discovery."""

    id: str
    node_id: str
    slot: int | None = None
    addresses: dict[str, str] = Field(default_factory=dict)  # network → address
    aliases: dict[str, list[str]] = Field(default_factory=dict)  # network → aliases
    hostname: str = ""
    ready: bool = False  # running and healthy (or without a health check): served by DNS/VIP


class Endpoints(Model):
    """Everything discovery needs about one service: its VIPs, ports and tasks."""

    stack: str
    service: str
    mode: EndpointMode = EndpointMode.VIP
    vips: dict[str, str] = Field(default_factory=dict)  # network → virtual IP
    ports: list[PublishedPort] = Field(default_factory=list)
    target_ports: list[int] = Field(default_factory=list)  # `expose` + published targets (SRV)
    tasks: list[EndpointTask] = Field(default_factory=list)
    updated_at: float = 0.0

    @property
    def ready(self) -> list[EndpointTask]:
        return [t for t in self.tasks if t.ready]
