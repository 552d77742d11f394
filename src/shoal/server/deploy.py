"""`deploy`: turn a Compose project into a plan of service changes, and commit it atomically.

Planning is pure (project + what exists → plan); committing is one store transaction guarded by
compare-and-swap on the stack and every service it touches, so two concurrent deploys of one
stack either both land one after the other or one gets a Conflict — never a mix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from shoal.model.cluster import Event, SecretRef, Service, Stack, UpdateState, UpdateStatus
from shoal.model.codec import encode
from shoal.model.compose import ComposeProject
from shoal.model.compose_service import ServiceSpec
from shoal.network.deployment import StackNetworking
from shoal.secrets.deploying import ref_changes
from shoal.server import objects
from shoal.store import Compare, Op, PutOp

Action = Literal["create", "update", "scale", "resume", "remove", "unchanged"]
SCALE_ONLY = frozenset({"deploy.replicas", "scale"})


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass
class ServiceChange:
    name: str
    action: Action
    changes: list[FieldChange] = field(default_factory=list)
    version: int = 1


@dataclass
class Plan:
    stack: str
    services: list[ServiceChange]

    @property
    def empty(self) -> bool:
        return all(s.action == "unchanged" for s in self.services)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "services": [
                {
                    "name": s.name,
                    "action": s.action,
                    "version": s.version,
                    "changes": [{"path": c.path, "old": c.old, "new": c.new} for c in s.changes],
                }
                for s in self.services
            ],
        }


def spec_dict(spec: ServiceSpec) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(spec.model_dump_json(exclude_none=True))
    return loaded


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def diff(old: ServiceSpec, new: ServiceSpec) -> list[FieldChange]:
    """Field-level differences, as dotted paths (lists compared whole)."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(spec_dict(old), "", a)
    _flatten(spec_dict(new), "", b)
    return [
        FieldChange(path, a.get(path), b.get(path))
        for path in sorted(set(a) | set(b))
        if a.get(path) != b.get(path)
    ]


def plan(
    name: str,
    project: ComposeProject,
    existing: list[Service],
    secret_refs: dict[str, dict[str, SecretRef]] | None = None,
) -> Plan:
    """`secret_refs`: per service, the secret/config versions it is to use (None: as now)."""
    by_name = {s.name: s for s in existing}
    changes: list[ServiceChange] = []
    for svc_name, spec in project.services.items():
        current = by_name.get(svc_name)
        if current is None or current.removing:
            changes.append(ServiceChange(svc_name, "create", version=1))
            continue
        delta = diff(current.spec, spec)
        refs = current.secret_versions if secret_refs is None else secret_refs.get(svc_name, {})
        delta += [FieldChange(*c) for c in ref_changes(current.secret_versions, refs)]
        if delta and all(c.path in SCALE_ONLY for c in delta):
            # Like `shoal scale`: more or fewer tasks, none of the running ones replaced.
            changes.append(ServiceChange(svc_name, "scale", delta, current.version))
        elif delta:
            changes.append(ServiceChange(svc_name, "update", delta, current.version + 1))
        elif current.update_status is not None and current.update_status.state.paused:
            # Deploying the same file again resumes a paused update (as `shoal update --resume`).
            changes.append(ServiceChange(svc_name, "resume", version=current.version))
        else:
            changes.append(ServiceChange(svc_name, "unchanged", version=current.version))
    for svc_name, current in by_name.items():
        if svc_name not in project.services and not current.removing:
            changes.append(ServiceChange(svc_name, "remove", version=current.version))
    _restart_dependents(project, changes)
    return Plan(name, changes)


def _restart_dependents(project: ComposeProject, changes: list[ServiceChange]) -> None:
    """`depends_on: {x: {restart: true}}`: a service whose dependency is updated is restarted
    (a new version with the same spec, so its tasks roll), as Compose restarts it."""
    updated = {c.name for c in changes if c.action == "update"}
    for change in changes:
        if change.action != "unchanged":
            continue
        deps = project.services[change.name].depends_on or {}
        causes = sorted(n for n, d in deps.items() if d.restart and n in updated)
        if causes:
            change.action = "update"
            change.version += 1
            change.changes = [FieldChange(f"depends_on.{n}", "updated", "restart") for n in causes]


@dataclass
class Commit:
    compares: list[Compare]
    ops: list[Op]


def build_commit(
    the_plan: Plan,
    project: ComposeProject,
    stack: tuple[Stack, int] | None,
    existing: dict[str, tuple[Service, int]],
    now: float,
    new_id: Any,
    networking: StackNetworking | None = None,
    secret_refs: dict[str, dict[str, SecretRef]] | None = None,
) -> Commit:
    """The compares and writes of a plan; `existing` maps service name → (service, mod_rev)."""
    networking = networking or StackNetworking()
    compares: list[Compare] = []
    ops: list[Op] = []
    name = the_plan.stack
    skey = objects.stack_key(name)
    if stack is None:
        compares.append(Compare.missing(skey))
        created = now
    else:
        compares.append(Compare.mod_revision(skey, "==", stack[1]))
        created = stack[0].created_at
    doc = json.loads(project.model_dump_json(exclude_none=True))
    new_stack = Stack(
        name=name,
        services=sorted(project.services),
        networks=doc.get("networks", {}),
        volumes=doc.get("volumes", {}),
        created_at=created,
        updated_at=now,
    )
    ops.append(PutOp(skey, encode(new_stack)))
    for network in networking.create:
        compares.append(Compare.missing(objects.network_key(network.name)))
        ops.append(PutOp(objects.network_key(network.name), encode(network)))
    for change in the_plan.services:
        key = objects.service_key(name, change.name)
        current = existing.get(change.name)
        if current is None:
            compares.append(Compare.missing(key))
        else:
            compares.append(Compare.mod_revision(key, "==", current[1]))
        if change.action == "unchanged":
            continue
        if change.action == "remove":
            assert current is not None
            removed = current[0].model_copy(update={"removing": True, "updated_at": now})
            ops.append(PutOp(key, encode(removed)))
            ops.append(service_event(now, "service", "remove", removed, "removing service"))
            continue
        if change.action == "resume":
            assert current is not None
            resumed = resume(current[0], now)
            ops.append(PutOp(key, encode(resumed)))
            ops.append(service_event(now, "service", "resume", resumed, "update resumed"))
            continue
        spec = project.services[change.name]
        addressing = {
            "vips": networking.vips.get(change.name, {}),
            "ports": networking.ports.get(change.name, []),
        }
        if secret_refs is not None:
            addressing["secret_versions"] = secret_refs.get(change.name, {})
        if change.action == "create":
            svc = Service(
                id=new_id(),
                stack=name,
                name=change.name,
                spec=spec,
                version=change.version,
                created_at=now,
                updated_at=now,
                **addressing,
            )
        elif change.action == "scale":
            assert current is not None
            svc = current[0].model_copy(update={"spec": spec, "updated_at": now, **addressing})
        else:
            assert current is not None
            svc = current[0].model_copy(
                update={
                    "spec": spec,
                    "version": change.version,
                    "previous_version": current[0].version,
                    "update_status": UpdateStatus(
                        state=UpdateState.UPDATING,
                        from_version=current[0].version,
                        to_version=change.version,
                        started_at=now,
                    ),
                    "updated_at": now,
                    **addressing,
                }
            )
        ops.append(PutOp(key, encode(svc)))
        if change.action != "scale":
            ops.append(PutOp(objects.version_key(name, change.name, change.version), encode(spec)))
        ops.append(service_event(now, "service", change.action, svc, f"version {change.version}"))
    return Commit(compares, ops)


def resume(service: Service, now: float) -> Service:
    """A paused update (or rollback) going on; its failures so far are forgiven."""
    update = service.update_status
    assert update is not None
    state = UpdateState.ROLLBACK_STARTED if update.state.rolling_back else UpdateState.UPDATING
    status = update.model_copy(update={"state": state, "started_at": now, "message": ""})
    return service.model_copy(update={"update_status": status, "updated_at": now})


def service_event(now: float, kind: str, action: str, svc: Service, message: str) -> PutOp:
    event = Event(
        time=now,
        type=kind,
        action=action,
        id=svc.id,
        stack=svc.stack,
        service=svc.name,
        message=message,
    )
    return objects.event_op(event)
