"""Secrets and configs: create, list, inspect, remove, rotate the key, and deliver to agents.

No response here carries a value except the agent's `GET /v1/tasks/{id}/secrets`, which
answers only for a task assigned to the node that asks and only with what that task uses.
Listings and `inspect` show metadata and versions (with keyed digests), never a value.
"""

from __future__ import annotations

import base64
from enum import Enum
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from shoal.model.cluster import Service
from shoal.model.compose import ComposeProject
from shoal.model.errors import Conflict, Forbidden, NotFound
from shoal.secrets import deploying
from shoal.secrets.records import Kind, SecretRecord, SentValue, check_name
from shoal.secrets.store import SecretStore, event, users
from shoal.server import objects
from shoal.server.auth import context
from shoal.server.context import ServerContext
from shoal.store import Compare, Op

router = APIRouter(prefix="/v1")


class CreateRequest(BaseModel):
    name: str
    data: str = Field(description="the value, base64")
    labels: dict[str, str] = Field(default_factory=dict)


class SecretInfo(SecretRecord):
    used_by: list[str] = Field(default_factory=list, description="stack/service")


class Delivered(BaseModel):
    kind: Kind
    source: str = Field(description="the Compose key the task's spec refers to")
    name: str
    version: int
    data: str = Field(description="the value, base64")


class Delivery(BaseModel):
    task: str
    items: list[Delivered]


def secret_store(ctx: ServerContext) -> SecretStore:
    return SecretStore(ctx.store, ctx.secrets_keys())


def _info(record: SecretRecord, services: list[Service]) -> SecretInfo:
    return SecretInfo(**record.model_dump(), used_by=users(services, record.kind, record.name))


# --- create, list, inspect, remove (one set of routes per kind) ---------------------------------


def _routes(kind: Kind) -> None:
    base = f"/{kind.plural}"

    async def create(request: CreateRequest, ctx: ServerContext = Depends(context)) -> SecretInfo:
        name = check_name(kind, request.name)
        value = SentValue(kind=kind, name=name, data=request.data).value()
        secrets = secret_store(ctx)

        async def attempt() -> SecretInfo:
            if await secrets.get(kind, name) is not None:
                raise Conflict(
                    f"{kind} {name} already exists",
                    hint=f"remove it first (`shoal {kind} rm {name}`), or choose another name",
                )
            compares, ops = await secrets.key_guard()
            now = ctx.clock()
            staged = await secrets.stage(
                kind, name, value, stack="", labels=request.labels, now=now, in_use=set()
            )
            ops += staged.ops  # with its event
            await ctx.commit(compares + staged.compares, ops, f"{kind} {name}")
            record, _ = await secrets.require(kind, name)
            return _info(record, ctx.cache.services())

        return await ctx.retrying(attempt)

    async def listing(ctx: ServerContext = Depends(context)) -> list[SecretInfo]:
        services = ctx.cache.services()
        return [_info(r, services) for r in await secret_store(ctx).records(kind)]

    async def inspect(name: str, ctx: ServerContext = Depends(context)) -> SecretInfo:
        record, _ = await secret_store(ctx).require(kind, name)
        return _info(record, ctx.cache.services())

    async def remove(name: str, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
        secrets = secret_store(ctx)

        async def attempt() -> dict[str, Any]:
            record, _ = await secrets.require(kind, name)
            in_use = users(ctx.cache.services(), kind, name)
            if in_use:
                raise Conflict(
                    f"{kind} {name} is in use by {', '.join(in_use)}",
                    hint="remove those stacks, or deploy them without it, first",
                )
            compares, ops = await secrets.removal(kind, name)
            for svc in ctx.cache.services():  # nobody starts using it meanwhile
                key = objects.service_key(svc.stack, svc.name)
                compares.append(Compare.mod_revision(key, "==", ctx.cache.revision_of(svc)))
            removed = event(ctx.clock(), kind, "remove", name, record.stack, "removed")
            ops.append(objects.event_op(removed))
            revision = await ctx.commit(compares, ops, f"{kind} {name}")
            return {"name": name, "kind": kind, "removed": True, "revision": revision}

        return await ctx.retrying(attempt)

    tags: list[str | Enum] = [kind.plural]
    router.add_api_route(base, create, methods=["POST"], tags=tags, summary=f"Create a {kind}")
    router.add_api_route(base, listing, methods=["GET"], tags=tags, summary=f"List {kind.plural}")
    router.add_api_route(
        f"{base}/{{name}}", inspect, methods=["GET"], tags=tags, summary=f"Inspect a {kind}"
    )
    router.add_api_route(
        f"{base}/{{name}}", remove, methods=["DELETE"], tags=tags, summary=f"Remove a {kind}"
    )


@router.post("/secrets/rotate-key", tags=["secrets"])
async def rotate_key(ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    """A new key: every version of every secret and config re-encrypted with it in one
    transaction, then the key file replaced (the old key is gone)."""
    kid, count, revision = await secret_store(ctx).rotate(ctx.clock())
    await ctx.cache.wait_for(revision)
    return {"key_id": kid, "reencrypted": count, "revision": revision}


for _kind in Kind:
    _routes(_kind)


# --- delivery to agents ---------------------------------------------------------------------


@router.get("/tasks/{task_id}/secrets", response_model=Delivery, tags=["tasks"])
async def task_secrets(
    task_id: str,
    node: str = Query(min_length=1, description="the node asking: the task must be on it"),
    ctx: ServerContext = Depends(context),
) -> Delivery:
    """For the agent about to start the task: the values of the secrets and configs it uses,
    at the versions its service recorded."""
    found = ctx.cache.task(task_id)  # the exact id: no prefix matching here
    if found is None:
        raise NotFound(f"no task {task_id!r}")
    task = found[0]
    if task.node_id != node:
        raise Forbidden(f"task {task_id} is not assigned to node {node}")
    if task.status.state.terminal:
        raise Conflict(f"task {task_id} has finished: it needs no secrets")
    entry = ctx.cache.get(objects.service_key(task.stack, task.service))
    service = entry[0] if entry is not None else None
    if not isinstance(service, Service) or service.id != task.service_id:
        raise NotFound(f"the service of task {task_id} is gone")
    secrets = secret_store(ctx)
    items = []
    for kind, uses in ((Kind.SECRET, task.spec.secrets), (Kind.CONFIG, task.spec.configs)):
        for use in uses or []:
            ref = service.secret_versions.get(f"{kind.plural}.{use.source}")
            if ref is None:
                raise Conflict(
                    f"service {task.stack}/{task.service} records no version of {kind} "
                    f"{use.source}",
                    hint="deploy the stack again",
                )
            value = await secrets.value(kind, ref.name, ref.version)
            data = base64.b64encode(value).decode()
            items.append(
                Delivered(
                    kind=kind, source=use.source, name=ref.name, version=ref.version, data=data
                )
            )
    return Delivery(task=task_id, items=items)


# --- what deploy and stack removal call -------------------------------------------------------


async def for_deploy(
    ctx: ServerContext, stack: str, project: ComposeProject, values: list[SentValue]
) -> deploying.DeploySecrets:
    """The secrets part of a deploy: versions per service, and the writes to commit with it."""
    if not project.secrets and not project.configs and not values:
        return deploying.DeploySecrets()  # no key needed, nothing read
    return await deploying.resolve(
        secret_store(ctx), stack, project, values, ctx.cache.services(), ctx.clock()
    )


async def with_stack_removal(
    ctx: ServerContext, stack: str, compares: list[Compare], ops: list[Any]
) -> tuple[list[Compare], list[Any]]:
    """A stack's own secrets and configs go with it (Swarm's `stack rm`), unless a service of
    another stack uses one."""
    secrets = secret_store(ctx)
    others = [s for s in ctx.cache.services() if s.stack != stack]
    extra_compares: list[Compare] = []
    extra_ops: list[Op] = []
    for kind in Kind:
        for record in await secrets.records(kind):
            if record.stack != stack or users(others, kind, record.name):
                continue
            more_compares, more_ops = await secrets.removal(kind, record.name)
            extra_compares += more_compares
            extra_ops += more_ops
            removed = event(ctx.clock(), kind, "remove", record.name, stack, "stack removed")
            extra_ops.append(objects.event_op(removed))
    return compares + extra_compares, ops + extra_ops
