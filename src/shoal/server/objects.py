"""Where each cluster object lives in the store, and how it is encoded.

Keys (values are the models' compact JSON):
  /nodes/<id>                          Node
  /stacks/<name>                       Stack
  /services/<stack>/<name>             Service
  /versions/<stack>/<name>/<v:08d>     ServiceSpec of every version (history, for rollback)
  /tasks/<stack>/<service>/<id>        Task
  /events/<time ns:020d>-<n:06d>       Event (its revision is the key's create revision)
  /networks/<name>                     Network (name = "<stack>_<network>")
  /endpoints/<stack>/<service>         Endpoints (derived: written by the endpoints controller)
  /kv/<key>                            the users' key/value space (`/v1/kv/<key>`)
  /volumes/<name>                      Volume (a named volume and the node it lives on)
"""

from __future__ import annotations

import itertools
import time
from typing import TypeVar

from pydantic import BaseModel

from shoal.model.cluster import Event, Node, Service, Stack, Task
from shoal.model.codec import decode, encode
from shoal.model.compose_service import ServiceSpec
from shoal.model.network import Endpoints, Network
from shoal.model.volume import Volume
from shoal.store import KeyValue, PutOp

M = TypeVar("M", bound=BaseModel)

NODES = "/nodes/"
STACKS = "/stacks/"
SERVICES = "/services/"
VERSIONS = "/versions/"
TASKS = "/tasks/"
EVENTS = "/events/"
NETWORKS = "/networks/"
ENDPOINTS = "/endpoints/"
KV = "/kv/"
VOLUMES = "/volumes/"

KINDS: dict[str, type[BaseModel]] = {
    NODES: Node,
    STACKS: Stack,
    SERVICES: Service,
    TASKS: Task,
    NETWORKS: Network,
    ENDPOINTS: Endpoints,
    VOLUMES: Volume,
}


def node_key(node_id: str) -> str:
    return f"{NODES}{node_id}"


def stack_key(name: str) -> str:
    return f"{STACKS}{name}"


def service_key(stack: str, name: str) -> str:
    return f"{SERVICES}{stack}/{name}"


def version_key(stack: str, name: str, version: int) -> str:
    return f"{VERSIONS}{stack}/{name}/{version:08d}"


def task_key(task: Task) -> str:
    return f"{TASKS}{task.stack}/{task.service}/{task.id}"


def network_key(name: str) -> str:
    return f"{NETWORKS}{name}"


def endpoints_key(stack: str, service: str) -> str:
    return f"{ENDPOINTS}{stack}/{service}"


def volume_key(name: str) -> str:
    return f"{VOLUMES}{name}"


def key_of(obj: BaseModel) -> str:
    if isinstance(obj, Node):
        return node_key(obj.id)
    if isinstance(obj, Stack):
        return stack_key(obj.name)
    if isinstance(obj, Service):
        return service_key(obj.stack, obj.name)
    if isinstance(obj, Task):
        return task_key(obj)
    if isinstance(obj, Network):
        return network_key(obj.name)
    if isinstance(obj, Endpoints):
        return endpoints_key(obj.stack, obj.service)
    if isinstance(obj, Volume):
        return volume_key(obj.name)
    raise TypeError(f"no key for {type(obj).__name__}")


_event_seq = itertools.count()


def event_key(now: float | None = None) -> str:
    ns = int((time.time() if now is None else now) * 1e9)
    return f"{EVENTS}{ns:020d}-{next(_event_seq) % 1_000_000:06d}"


def event_op(event: Event) -> PutOp:
    """The write that appends `event` (in the same transaction as the change it records)."""
    return PutOp(event_key(event.time), encode(event))


def kind_of(key: str) -> str | None:
    for prefix in KINDS:
        if key.startswith(prefix):
            return prefix
    return None


def decode_kv(kv: KeyValue) -> BaseModel | None:
    kind = kind_of(kv.key)
    if kind is None:
        return None
    return decode(KINDS[kind], kv.value)


def decode_event(kv: KeyValue) -> Event:
    event = decode(Event, kv.value)
    event.revision = kv.create_revision
    return event


__all__ = [
    "EVENTS",
    "KINDS",
    "NODES",
    "SERVICES",
    "STACKS",
    "TASKS",
    "VERSIONS",
    "ServiceSpec",
    "decode",
    "decode_event",
    "decode_kv",
    "encode",
    "event_key",
    "event_op",
    "key_of",
    "kind_of",
    "node_key",
    "service_key",
    "stack_key",
    "task_key",
    "version_key",
]
