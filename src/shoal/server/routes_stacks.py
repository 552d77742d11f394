"""Stacks, services, networks and volumes: deploy, list, inspect, scale, remove."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, ValidationError

from shoal.agent.health import validate as validate_health
from shoal.controllers.autoscale import check_services
from shoal.model.cluster import Event, Service, Stack
from shoal.model.codec import decode, encode
from shoal.model.compose import ComposeProject
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import ComposeError, Conflict, Invalid, NotFound, format_path
from shoal.network.deployment import plan_stack
from shoal.secrets.records import SentValue
from shoal.server import deploy, netstate, objects, routes_secrets, status, volumestate
from shoal.server.auth import context
from shoal.server.autoscaler import manual_scale_state
from shoal.server.context import ServerContext
from shoal.store import Compare, PutOp

router = APIRouter(prefix="/v1")

_STACK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class DeployRequest(BaseModel):
    project: dict[str, Any] = Field(description="the normalised Compose project (shoal config)")
    dry_run: bool = False
    secrets: list[SentValue] = Field(
        default_factory=list, description="the values of its secrets and configs (base64)"
    )


class DeployResponse(BaseModel):
    plan: dict[str, Any]
    revision: int = 0
    applied: bool = False


class ScaleRequest(BaseModel):
    replicas: int = Field(ge=0, le=100_000)


def _check_name(name: str) -> str:
    if not _STACK_NAME.match(name) or len(name) > 63:
        raise Invalid(
            f"invalid stack name {name!r}",
            hint="lowercase letters, digits, '-' and '_', starting with a letter or digit",
        )
    return name


def _project(name: str, raw: dict[str, Any]) -> ComposeProject:
    try:
        project = ComposeProject.model_validate({**raw, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if isinstance(p, str | int))
        raise ComposeError(f"project.{format_path(loc)}: {first['msg']}", path=loc) from None
    for svc_name in project.services:
        if not _STACK_NAME.match(svc_name.lower()):
            raise Invalid(f"invalid service name {svc_name!r}")
    return project


@router.post("/stacks/{name}/deploy", response_model=DeployResponse, tags=["stacks"])
async def deploy_stack(
    name: str, request: DeployRequest, ctx: ServerContext = Depends(context)
) -> DeployResponse:
    """Create or update a stack from a normalised Compose project (one atomic write)."""
    _check_name(name)
    project = _project(name, request.project)
    check_services(project.services)  # x-shoal.autoscale, refused before anything is written
    for service_name, spec in project.services.items():  # healthcheck and x-shoal probes
        try:
            validate_health(spec)
        except Invalid as exc:
            raise Invalid(f"service {service_name!r}: {exc.message}", hint=exc.hint) from None

    async def attempt() -> DeployResponse:
        stack_entry = ctx.cache.get(objects.stack_key(name))
        existing: dict[str, tuple[Service, int]] = {}
        for svc in ctx.cache.services(name):
            existing[svc.name] = (svc, ctx.cache.revision_of(svc))
        sealed = await routes_secrets.for_deploy(ctx, name, project, request.secrets)
        the_plan = deploy.plan(name, project, [s for s, _ in existing.values()], sealed.refs)
        networking = plan_stack(
            name,
            project.services,
            json.loads(project.model_dump_json(exclude_none=True)).get("networks", {}),
            ctx.cache.networks(),
            ctx.cache.services(),
            pool=ctx.network_pool,
            now=ctx.clock(),
            avoid=netstate.host_routes(),
        )
        volumes = volumestate.plan(ctx, name, project)
        if request.dry_run:
            return DeployResponse(plan=the_plan.as_dict())
        stack = None
        if stack_entry is not None:
            assert isinstance(stack_entry[0], Stack)
            stack = (stack_entry[0], stack_entry[1])
            if stack[0].removing:
                raise Conflict(
                    f"stack {name} is being removed",
                    hint="wait until `shoal ls` no longer lists it",
                )
        commit = deploy.build_commit(
            the_plan, project, stack, existing, ctx.clock(), ctx.new_id, networking, sealed.refs
        )
        commit.compares += sealed.compares + volumes.compares
        commit.ops += sealed.ops + volumes.ops
        revision = await ctx.commit(commit.compares, commit.ops, f"stack {name}")
        return DeployResponse(plan=the_plan.as_dict(), revision=revision, applied=True)

    return await ctx.retrying(attempt)


@router.get("/stacks", tags=["stacks"])
async def list_stacks(ctx: ServerContext = Depends(context)) -> list[dict[str, Any]]:
    out = []
    for stack in ctx.cache.stacks():
        services = ctx.cache.services(stack.name)
        tasks = ctx.cache.tasks(stack.name)
        running = sum(1 for t in tasks if t.status.state == "running")
        out.append(
            {
                **json.loads(encode(stack)),
                "service_count": len(services),
                "running_tasks": running,
            }
        )
    return out


@router.get("/stacks/{name}", response_model=Stack, tags=["stacks"])
async def get_stack(name: str, ctx: ServerContext = Depends(context)) -> Stack:
    entry = ctx.cache.get(objects.stack_key(name))
    if entry is None:
        raise NotFound(f"no stack {name!r}", hint="list stacks with `shoal ls`")
    assert isinstance(entry[0], Stack)
    return entry[0]


@router.get("/stacks/{name}/status", tags=["stacks"])
async def get_stack_status(name: str, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    """Per service: converged | progressing | failed | removing, ready/desired, why."""
    await get_stack(name, ctx)
    result = status.stack_status(ctx.cache.services(name), ctx.cache.tasks(name), ctx.clock())
    result["stack"] = name
    result["revision"] = ctx.cache.revision
    return result


@router.delete("/stacks/{name}", tags=["stacks"])
async def remove_stack(
    name: str,
    volumes: bool = Query(default=False, description="also remove the volumes it owns"),
    ctx: ServerContext = Depends(context),
) -> dict[str, Any]:
    """Mark the stack and its services for removal; the controllers stop and delete tasks.
    Its named volumes stay, unless `volumes`: then they go once no task uses them."""
    entry = ctx.cache.get(objects.stack_key(name))
    if entry is None:
        raise NotFound(f"no stack {name!r}", hint="list stacks with `shoal ls`")
    stack, rev = entry
    assert isinstance(stack, Stack)
    now = ctx.clock()
    compares = [Compare.mod_revision(objects.stack_key(name), "==", rev)]
    ops: list[Any] = [
        PutOp(objects.stack_key(name), encode(stack.model_copy(update={"removing": True})))
    ]
    for svc in ctx.cache.services(name):
        key = objects.service_key(name, svc.name)
        compares.append(Compare.mod_revision(key, "==", ctx.cache.revision_of(svc)))
        ops.append(PutOp(key, encode(svc.model_copy(update={"removing": True, "updated_at": now}))))
    ops.append(
        objects.event_op(Event(time=now, type="stack", action="remove", id=name, stack=name))
    )
    compares, ops = await routes_secrets.with_stack_removal(ctx, name, compares, ops)
    if volumes:
        marked = volumestate.mark_stack_volumes(ctx, name)
        compares, ops = compares + marked[0], ops + marked[1]
    revision = await ctx.commit(compares, ops, f"stack {name}")
    return {"stack": name, "removing": True, "revision": revision}


@router.get("/services", response_model=list[Service], tags=["services"])
async def list_services(
    stack: str | None = Query(default=None), ctx: ServerContext = Depends(context)
) -> list[Service]:
    return ctx.cache.services(stack)


def _service(ctx: ServerContext, stack: str, name: str) -> tuple[Service, int]:
    entry = ctx.cache.get(objects.service_key(stack, name))
    if entry is None:
        raise NotFound(f"no service {stack}/{name}", hint="list services with `shoal services`")
    assert isinstance(entry[0], Service)
    return entry[0], entry[1]


@router.get("/services/{stack}/{name}", response_model=Service, tags=["services"])
async def get_service(stack: str, name: str, ctx: ServerContext = Depends(context)) -> Service:
    return _service(ctx, stack, name)[0]


@router.get("/services/{stack}/{name}/versions", tags=["services"])
async def service_versions(
    stack: str, name: str, ctx: ServerContext = Depends(context)
) -> list[dict[str, Any]]:
    _service(ctx, stack, name)
    kvs, _ = await ctx.store.range(objects.version_key(stack, name, 0)[:-8])
    return [{"version": int(kv.key.rsplit("/", 1)[1]), "spec": json.loads(kv.value)} for kv in kvs]


@router.post("/services/{stack}/{name}/scale", response_model=Service, tags=["services"])
async def scale_service(
    stack: str, name: str, request: ScaleRequest, ctx: ServerContext = Depends(context)
) -> Service:
    """Set the replica count (replicated services and jobs only)."""

    async def attempt() -> Service:
        svc, rev = _service(ctx, stack, name)
        if svc.mode.value.startswith("global"):
            raise Invalid(f"service {stack}/{name} is global: it runs one task per node")
        spec_doc = json.loads(svc.spec.model_dump_json(exclude_none=True))
        spec_doc.setdefault("deploy", {})["replicas"] = request.replicas
        spec_doc.pop("scale", None)
        spec = decode(ServiceSpec, json.dumps(spec_doc))
        now = ctx.clock()
        # Scaling changes no task's spec: keep the version so running tasks are not replaced.
        # With x-shoal.autoscale, the floor or ceiling moves so that N stays.
        autoscale = manual_scale_state(ctx, svc, request.replicas, now)
        updated = svc.model_copy(update={"spec": spec, "updated_at": now, "autoscale": autoscale})
        key = objects.service_key(stack, name)
        event = Event(
            time=now,
            type="service",
            action="scale",
            id=svc.id,
            stack=stack,
            service=name,
            message=f"replicas {svc.replicas} → {request.replicas}",
        )
        await ctx.commit(
            [Compare.mod_revision(key, "==", rev)],
            [PutOp(key, encode(updated)), objects.event_op(event)],
            f"service {stack}/{name}",
        )
        return updated

    return await ctx.retrying(attempt)
