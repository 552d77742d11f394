"""depends_on gating (pure)."""

from __future__ import annotations

from typing import Any

from shoal.controllers.dependencies import unmet
from shoal.model.cluster import Service, Task, TaskState, TaskStatus
from shoal.model.compose_service import ServiceSpec

S = TaskState


def svc(name: str, **spec: Any) -> Service:
    return Service(
        id=name, stack="st", name=name, spec=ServiceSpec.model_validate({"image": "x", **spec})
    )


def task(service: str, state: TaskState, health: str = "") -> Task:
    return Task(
        id=f"{service}-t",
        stack="st",
        service=service,
        service_id=service,
        slot=1,
        spec_version=1,
        spec=ServiceSpec.model_validate({"image": "x"}),
        status=TaskStatus(state=state, health=health),
    )


APP = svc(
    "app",
    depends_on={
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
        "cache": {"condition": "service_started", "required": False},
    },
)
DB, MIGRATE = svc("db"), svc("migrate")
SERVICES = {"app": APP, "db": DB, "migrate": MIGRATE}


def test_waits_for_healthy_then_completed() -> None:
    assert unmet(APP, SERVICES, {}) == "waiting for db to be healthy"
    starting = {"db": [task("db", S.RUNNING, "starting")]}
    assert unmet(APP, SERVICES, starting) == "waiting for db to be healthy"
    healthy = {"db": [task("db", S.RUNNING, "healthy")]}
    assert unmet(APP, SERVICES, healthy) == "waiting for migrate to be completed successfully"
    failed = healthy | {"migrate": [task("migrate", S.FAILED)]}
    assert unmet(APP, SERVICES, failed) == "waiting for migrate to be completed successfully"
    done = healthy | {"migrate": [task("migrate", S.COMPLETE)]}
    assert unmet(APP, SERVICES, done) is None


def test_missing_dependencies_block_only_when_required() -> None:
    web = svc("web", depends_on={"api": {"condition": "service_started"}})
    assert unmet(web, {"web": web}, {}) == "waiting for api: it is not deployed"
    optional = svc("web", depends_on={"api": {"condition": "service_started", "required": False}})
    assert unmet(optional, {"web": optional}, {}) is None


def test_started_means_running_or_completed() -> None:
    web = svc("web", depends_on={"db": {"condition": "service_started"}})
    services = {"web": web, "db": DB}
    assert unmet(web, services, {"db": [task("db", S.STARTING)]}) == "waiting for db to be started"
    assert unmet(web, services, {"db": [task("db", S.RUNNING, "starting")]}) is None
