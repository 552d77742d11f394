"""The cluster's objects: nodes, stacks, services, tasks and events (Swarm vocabulary).

These models are what the store holds (as JSON), what the API serves, what the scheduler and
controllers reason about and what the agent drives. Times are UNIX seconds (float) from the
injectable clock of whoever writes them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shoal.model.compose_service import ServiceSpec
from shoal.model.network import Attachment, PublishedPort


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


# --- nodes -----------------------------------------------------------------------------------


class Availability(StrEnum):
    ACTIVE = "active"
    PAUSE = "pause"
    DRAIN = "drain"


class NodeState(StrEnum):
    UNKNOWN = "unknown"
    READY = "ready"
    DOWN = "down"


class NodeResources(Model):
    nano_cpus: int = 0  # 1 CPU = 1e9
    memory_bytes: int = 0


class NodeDescription(Model):
    """What the agent reports about its machine."""

    hostname: str
    os: str = "linux"
    arch: str = "x86_64"
    resources: NodeResources = NodeResources()
    runtimes: list[str] = Field(default_factory=list)
    engine_labels: dict[str, str] = Field(default_factory=dict)  # infra=physical|virtual …
    agent_version: str = ""


class NodeSpec(Model):
    """What the operator sets."""

    labels: dict[str, str] = Field(default_factory=dict)
    availability: Availability = Availability.ACTIVE
    role: str = "worker"


class NodeStatus(Model):
    state: NodeState = NodeState.UNKNOWN
    addr: str = ""
    heartbeat_at: float = 0.0
    message: str = ""


class Node(Model):
    id: str
    spec: NodeSpec = NodeSpec()
    description: NodeDescription
    status: NodeStatus = NodeStatus()
    created_at: float = 0.0


# --- stacks and services ---------------------------------------------------------------------


class ServiceMode(StrEnum):
    REPLICATED = "replicated"
    GLOBAL = "global"
    REPLICATED_JOB = "replicated-job"
    GLOBAL_JOB = "global-job"


class Stack(Model):
    name: str
    services: list[str] = Field(default_factory=list)
    networks: dict[str, Any] = Field(default_factory=dict)  # normalised Compose network specs
    volumes: dict[str, Any] = Field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    removing: bool = False


class UpdateState(StrEnum):
    """Where a rolling update of a service stands (Swarm's UpdateStatus states)."""

    UPDATING = "updating"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_PAUSED = "rollback_paused"
    ROLLBACK_COMPLETED = "rollback_completed"

    @property
    def rolling_back(self) -> bool:
        return self.value.startswith("rollback")

    @property
    def paused(self) -> bool:
        return self in (UpdateState.PAUSED, UpdateState.ROLLBACK_PAUSED)


class UpdateStatus(Model):
    state: UpdateState
    from_version: int
    to_version: int
    started_at: float = 0.0
    completed_at: float | None = None
    message: str = ""  # why it paused or rolled back


class SecretRef(Model):
    """A secret or config a service uses: the cluster object and the version its tasks get."""

    kind: str = "secret"  # secret | config
    name: str  # the cluster name (`<stack>_<key>` unless the Compose file sets `name:`)
    version: int


class AutoscaleState(Model):
    """What the autoscaler keeps of a service between passes (not part of the Compose spec).

    `min`/`max` override the file's floor and ceiling after `shoal scale` moved them; they hold
    only while the stack's `updated_at` is still `deployed_at` (a redeploy resets them).
    `last_change` is when replicas last changed by the autoscaler or `shoal scale` (cooldown).
    """

    min: int | None = None
    max: int | None = None
    deployed_at: float = 0.0
    last_change: float = 0.0


class Service(Model):
    """Desired state of one Compose service; `version` grows with every spec change."""

    id: str
    stack: str
    name: str
    spec: ServiceSpec
    version: int = 1
    previous_version: int | None = None
    vips: dict[str, str] = Field(default_factory=dict)  # network → virtual IP (endpoint_mode vip)
    ports: list[PublishedPort] = Field(default_factory=list)  # resolved `ports:` (deploy time)
    update_status: UpdateStatus | None = None  # the latest rolling update (None: never updated)
    created_at: float = 0.0
    updated_at: float = 0.0
    removing: bool = False
    autoscale: AutoscaleState | None = None  # x-shoal.autoscale: the autoscaler's own state
    # "secrets.<source>" / "configs.<source>" → what the tasks get (a new version rolls them)
    secret_versions: dict[str, SecretRef] = Field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.stack}_{self.name}"

    @property
    def mode(self) -> ServiceMode:
        raw = self.spec.deploy.mode if self.spec.deploy and self.spec.deploy.mode else None
        return ServiceMode(raw) if raw else ServiceMode.REPLICATED

    @property
    def replicas(self) -> int:
        deploy = self.spec.deploy
        if deploy and deploy.replicas is not None:
            return deploy.replicas
        if self.spec.scale is not None:
            return self.spec.scale
        return 1


# --- tasks -----------------------------------------------------------------------------------


class TaskState(StrEnum):
    """Swarm's task states, in lifecycle order."""

    NEW = "new"
    PENDING = "pending"
    ASSIGNED = "assigned"
    PREPARING = "preparing"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    SHUTDOWN = "shutdown"
    REJECTED = "rejected"
    ORPHANED = "orphaned"
    REMOVE = "remove"  # desired state only: stop, then delete the record

    @property
    def order(self) -> int:
        return _ORDER[self]

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


_ORDER = {s: i for i, s in enumerate(TaskState)}
TERMINAL_STATES = frozenset(
    {
        TaskState.COMPLETE,
        TaskState.FAILED,
        TaskState.SHUTDOWN,
        TaskState.REJECTED,
        TaskState.ORPHANED,
    }
)


class PortStatus(Model):
    target: int
    published: int | None = None
    protocol: str = "tcp"
    host_ip: str = ""


class HealthResult(Model):
    """One health probe: when it ran, how it ended (0 passed; -1 timed out), what it said."""

    start: float
    end: float
    exit_code: int
    output: str = ""  # at most 4 KiB, as Docker keeps


class TaskStatus(Model):
    state: TaskState = TaskState.NEW
    timestamp: float = 0.0
    message: str = ""
    error: str = ""
    exit_code: int | None = None
    container_id: str = ""
    pid: int | None = None
    started_at: float | None = None
    addresses: list[str] = Field(default_factory=list)
    ports: list[PortStatus] = Field(default_factory=list)
    health: str = ""  # "", starting, healthy, unhealthy
    health_log: list[HealthResult] = Field(default_factory=list)  # the last 5 probes
    failing_streak: int = 0  # consecutive failed probes (the agent's health monitor)


class Task(Model):
    """One replica slot of a service on one node, with an immutable copy of the spec it runs."""

    id: str
    stack: str
    service: str
    service_id: str
    slot: int | None = None  # replicated services; global ones use node_id instead
    spec_version: int
    spec: ServiceSpec
    node_id: str = ""
    networks: list[Attachment] = Field(default_factory=list)  # addresses, given at creation
    desired_state: TaskState = TaskState.RUNNING
    status: TaskStatus = TaskStatus()
    attempt: int = 0  # restarts of this slot so far (restart policy, back-off)
    pending_reasons: dict[str, str] = Field(default_factory=dict)  # filter → why not placed
    not_before: float = 0.0  # restart delay / back-off: do not start before this time
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def name(self) -> str:
        suffix = self.slot if self.slot is not None else self.node_id[:12]
        return f"{self.stack}_{self.service}.{suffix}"


# --- events ----------------------------------------------------------------------------------


class Event(Model):
    """An append-only record of a change or a failure; `revision` orders them."""

    revision: int = 0
    time: float
    type: str  # "service", "task", "node", "stack"
    action: str  # "create", "update", "remove", "state", "failed", …
    id: str
    stack: str = ""
    service: str = ""
    message: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
