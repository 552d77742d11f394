"""What one scheduling pass reads and returns, and the working state it builds from them.

`Snapshot` is the input (nodes, occupying tasks, pending tasks, the time), `Decision` the output.
`Requirements` is what a task asks of a node, read once per service version from its spec;
`NodeView` is a node's mutable bookkeeping for the pass (free resources, tasks per service),
so placements made earlier in the same call count for later ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from shoal.model.cluster import Availability, Node, NodeState, Task
from shoal.model.compose_service import ServiceSpec
from shoal.model.volume import named_sources

NANO = 1_000_000_000

# Docker/OCI and `uname -m` spell the same architectures differently.
ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}


def normalise_arch(arch: str) -> str:
    low = arch.lower()
    return ARCH_ALIASES.get(low, low)


@dataclass(frozen=True, slots=True)
class VolumeHome:
    """Where a named volume lives (`node_id` empty: nowhere yet, the first task picks)."""

    name: str
    node_id: str = ""
    removing: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The cluster as the scheduler sees it.

    `tasks` holds every task whose desired or actual state is not terminal (they hold resources
    and count for spread); `pending` the tasks to place now (a global task's preset `node_id`
    is the only node it may go to). Pending tasks may also appear in `tasks`: they are not
    counted as occupying anything. `volumes` maps a stack and a volume key of its `volumes:`
    to the volume's home (a task using it may only go there).
    """

    nodes: Sequence[Node]
    tasks: Sequence[Task]
    pending: Sequence[Task]
    now: float
    volumes: Mapping[str, Mapping[str, VolumeHome]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """A node for a task, or `node_id=None` and why not (filter name → reason, plus `summary`)."""

    task_id: str
    node_id: str | None
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed `KEY==VALUE` / `KEY!=VALUE` placement constraint."""

    key: str
    equal: bool
    value: str
    text: str


@dataclass(frozen=True, slots=True)
class Requirements:
    """What every task of one service version asks of a node (plus a global task's node)."""

    service_id: str
    nano_cpus: int = 0
    memory: int = 0
    constraints: tuple[Constraint, ...] = ()
    constraint_error: str | None = None  # a malformed constraint makes the task unplaceable
    platform: str | None = None  # as written, e.g. "linux/amd64"
    platform_os: str = ""  # "" = any
    platform_arch: str = ""  # normalised; "" = any
    runtime: str | None = None
    max_replicas: int = 0  # 0 = unlimited, as in Compose
    preferences: tuple[str, ...] = ()  # spread descriptors, outermost first
    preference_error: str | None = None
    preset_node: str = ""
    volume_node: str = ""  # the node where a named volume it mounts lives ("" = any)
    volume_name: str = ""
    volume_error: str | None = None  # its volumes cannot be had together (or are going away)
    unbound: tuple[str, ...] = ()  # volumes with no node yet: the first placement picks it

    @property
    def static_key(self) -> tuple[object, ...]:
        """Everything the per-service, state-independent filters look at."""
        return (
            tuple(c.text for c in self.constraints),
            self.constraint_error,
            self.preference_error,
            self.platform_os,
            self.platform_arch,
            self.runtime,
            self.volume_node,
            self.volume_error,
        )


def reservations(spec: ServiceSpec) -> tuple[int, int]:
    """(nano CPUs, memory bytes) reserved by a task of `spec`.

    Only reservations count, as in Swarm: `cpus`/`mem_limit` are limits, not promises.
    `mem_reservation` is the Compose (non-deploy) spelling of a memory reservation.
    """
    cpus = 0.0
    memory = 0
    deploy = spec.deploy
    res = deploy.resources.reservations if deploy and deploy.resources else None
    if res is not None:
        cpus = res.cpus or 0.0
        memory = res.memory or 0
    if not memory and spec.mem_reservation:
        memory = spec.mem_reservation
    return round(cpus * NANO), max(memory, 0)


class NodeView:
    """One node during a pass: its model plus what has been reserved on it so far."""

    __slots__ = (
        "active",
        "arch",
        "availability",
        "cap_cpu",
        "cap_mem",
        "free_cpu",
        "free_mem",
        "id",
        "index",
        "node",
        "os",
        "ready",
        "runtimes",
        "service_counts",
        "tasks",
    )

    def __init__(self, node: Node, index: int) -> None:
        res = node.description.resources
        self.node = node
        self.index = index
        self.id = node.id
        self.os = node.description.os.lower()
        self.arch = normalise_arch(node.description.arch)
        self.runtimes = frozenset(node.description.runtimes)
        self.availability = node.spec.availability
        self.ready = node.status.state == NodeState.READY
        self.active = self.availability == Availability.ACTIVE
        self.cap_cpu = res.nano_cpus
        self.cap_mem = res.memory_bytes
        self.free_cpu = res.nano_cpus
        self.free_mem = res.memory_bytes
        self.tasks = 0
        self.service_counts: dict[str, int] = {}

    def reserve(self, service_id: str, nano_cpus: int, memory: int) -> None:
        self.free_cpu -= nano_cpus
        self.free_mem -= memory
        self.tasks += 1
        self.service_counts[service_id] = self.service_counts.get(service_id, 0) + 1


def build_views(snapshot: Snapshot) -> list[NodeView]:
    """A `NodeView` per node, charged with the tasks already on it."""
    views = [NodeView(node, i) for i, node in enumerate(snapshot.nodes)]
    by_id = {v.id: v for v in views}
    pending = {t.id for t in snapshot.pending}
    cache: dict[tuple[str, int], tuple[int, int]] = {}
    for task in snapshot.tasks:
        if not task.node_id or task.id in pending:
            continue
        view = by_id.get(task.node_id)
        if view is None:
            continue  # a task on a node that left: it occupies nothing we can place on
        key = (task.service_id, task.spec_version)
        res = cache.get(key)
        if res is None:
            res = cache[key] = reservations(task.spec)
        view.reserve(task.service_id, *res)
    return views


# --- reading a task's requirements -------------------------------------------------------------

# Swarm's grammar (swarmkit manager/constraint): a dotted key, `==` or `!=`, a value without
# operator characters; values compare case-insensitively.
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9\-_.]*")
_VALUE_RE = re.compile(r"[A-Za-z0-9:\-_\s.*()?+\[\]\\^$|/]+")
NODE_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
LABEL_PREFIXES = ("node.labels.", "engine.labels.")


def _check_key(key: str) -> str | None:
    if not _KEY_RE.fullmatch(key):
        return f"invalid key {key!r}"
    if key in NODE_KEYS:
        return None
    for prefix in LABEL_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            return None
    known = ", ".join((*NODE_KEYS, "node.labels.KEY", "engine.labels.KEY"))
    return f"unknown attribute {key!r} (use {known})"


def parse_constraint(text: str) -> Constraint:
    """`node.labels.zone==eu` → `Constraint`; raises `ValueError` with a user-facing message."""
    for op in ("==", "!="):
        if op in text:
            key, _, value = text.partition(op)
            key, value = key.strip(), value.strip()
            break
    else:
        raise ValueError(f"invalid constraint {text!r}: expected KEY==VALUE or KEY!=VALUE")
    problem = _check_key(key)
    if problem is None and not _VALUE_RE.fullmatch(value):
        problem = f"invalid value {value!r}"
    if problem is not None:
        raise ValueError(f"invalid constraint {text!r}: {problem}")
    return Constraint(key=key, equal=op == "==", value=value, text=text.strip())


def read_requirements(service_id: str, spec: ServiceSpec) -> Requirements:
    """The placement-relevant parts of `spec`; malformed parts become errors, not exceptions."""
    nano_cpus, memory = reservations(spec)
    placement = spec.deploy.placement if spec.deploy else None
    constraints: list[Constraint] = []
    constraint_error = None
    preferences: list[str] = []
    preference_error = None
    max_replicas = 0
    if placement is not None:
        for text in placement.constraints or ():
            try:
                constraints.append(parse_constraint(text))
            except ValueError as exc:
                constraint_error = str(exc)
                break
        for pref in placement.preferences or ():
            descriptor = (pref.spread or "").strip()
            problem = _check_key(descriptor) if descriptor else "empty spread descriptor"
            if problem is not None:
                preference_error = f"invalid placement preference spread={descriptor!r}: {problem}"
                break
            preferences.append(descriptor)
        max_replicas = placement.max_replicas_per_node or 0
    os_name, arch = "", ""
    if spec.platform:
        # `os[/arch[/variant]]`; the variant is not something nodes report.
        parts = spec.platform.lower().split("/")
        os_name = parts[0]
        arch = normalise_arch(parts[1]) if len(parts) > 1 else ""
    runtime = None
    ext = spec.extensions.get("x-shoal")
    if isinstance(ext, dict) and isinstance(ext.get("runtime"), str):
        runtime = ext["runtime"]
    return Requirements(
        service_id=service_id,
        nano_cpus=nano_cpus,
        memory=memory,
        constraints=tuple(constraints),
        constraint_error=constraint_error,
        platform=spec.platform,
        platform_os=os_name,
        platform_arch=arch,
        runtime=runtime,
        max_replicas=max_replicas,
        preferences=tuple(preferences),
        preference_error=preference_error,
    )


class VolumeBindings:
    """The homes of named volumes during one pass: the snapshot's, plus the nodes picked in
    this pass for volumes that had none (so every task using one lands on the same node)."""

    def __init__(self, volumes: Mapping[str, Mapping[str, VolumeHome]]) -> None:
        self.volumes = volumes
        self.bound: dict[str, str] = {}

    def apply(self, req: Requirements, task: Task) -> Requirements:
        """`req` with the volume fields of `task` (every task of a group shares them)."""
        keys = named_sources(task.spec)
        declared = self.volumes.get(task.stack)
        if not keys or not declared:
            return req
        nodes: dict[str, str] = {}  # node → first volume living there
        unbound: list[str] = []
        for key in keys:
            home = declared.get(key)
            if home is None:
                continue  # no record: nothing to honour
            if home.removing:
                return replace(req, volume_error=f"volume {home.name} is being removed")
            node = home.node_id or self.bound.get(home.name, "")
            if node:
                nodes.setdefault(node, home.name)
            elif home.name not in unbound:
                unbound.append(home.name)
        if len(nodes) > 1:
            where = ", ".join(f"{name} on node {node}" for node, name in sorted(nodes.items()))
            return replace(req, volume_error=f"its volumes live on different nodes ({where})")
        node, name = next(iter(nodes.items()), ("", ""))
        return replace(req, volume_node=node, volume_name=name, unbound=tuple(unbound))

    def bind(self, req: Requirements, node_id: str) -> None:
        """`req`'s volumes without a home now live on `node_id` (for the rest of the pass)."""
        for name in req.unbound:
            self.bound.setdefault(name, node_id)
