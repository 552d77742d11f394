"""One-field updates, resume, and manual rollback of a service (`shoal update`, `shoal rollback`).

Each is one compare-and-swap write of the service: a new version (rolled with `update_config`,
supervised like a deploy's), a resumed update, or the previous version's spec as a new version
(rolled with `rollback_config`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoal.model.cluster import Service, UpdateState, UpdateStatus
from shoal.model.codec import encode
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Conflict, Invalid, NotFound
from shoal.server import deploy, objects
from shoal.server.auth import context
from shoal.server.context import ServerContext
from shoal.server.updates import rollback_ops
from shoal.store import Compare, Op, PutOp

router = APIRouter(prefix="/v1")


class UpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(default=None, description="the new image reference")
    env: dict[str, str] = Field(default_factory=dict, description="environment to set")
    resume: bool = Field(default=False, description="resume a paused update or rollback")
    force: bool = Field(default=False, description="a new version even if nothing changed")


def _service(ctx: ServerContext, stack: str, name: str) -> tuple[Service, int]:
    entry = ctx.cache.get(objects.service_key(stack, name))
    if entry is None or not isinstance(entry[0], Service) or entry[0].removing:
        known = ", ".join(f"{s.stack}/{s.name}" for s in ctx.cache.services(stack)) or "none"
        raise NotFound(f"service {stack}/{name} not found", hint=f"services: {known}")
    return entry[0], entry[1]


def _changed_spec(spec: ServiceSpec, request: UpdateRequest) -> ServiceSpec:
    doc: dict[str, Any] = json.loads(spec.model_dump_json(exclude_none=True))
    if request.image is not None:
        doc["image"] = request.image
        doc.pop("build", None)  # an explicit image replaces what the file built
    if request.env:
        doc["environment"] = {**(doc.get("environment") or {}), **request.env}
    try:
        return ServiceSpec.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@router.post("/services/{stack}/{name}/update", response_model=Service, tags=["services"])
async def update_service(
    stack: str, name: str, request: UpdateRequest, ctx: ServerContext = Depends(context)
) -> Service:
    """Change the image or environment (a new version, rolled like a deploy), or `resume` a
    paused update."""

    async def attempt() -> Service:
        svc, rev = _service(ctx, stack, name)
        key = objects.service_key(stack, name)
        now = ctx.clock()
        if request.resume:
            if svc.update_status is None or not svc.update_status.state.paused:
                raise Conflict(f"service {stack}/{name} has no paused update to resume")
            new = deploy.resume(svc, now)
            ops: list[Op] = [
                PutOp(key, encode(new)),
                deploy.service_event(now, "service", "resume", new, ""),
            ]
        else:
            spec = _changed_spec(svc.spec, request)
            if spec == svc.spec and not request.force:
                raise Conflict(
                    f"service {stack}/{name} already runs that", hint="add --force to roll anyway"
                )
            version = svc.version + 1
            new = svc.model_copy(
                update={
                    "spec": spec,
                    "version": version,
                    "previous_version": svc.version,
                    "update_status": UpdateStatus(
                        state=UpdateState.UPDATING,
                        from_version=svc.version,
                        to_version=version,
                        started_at=now,
                    ),
                    "updated_at": now,
                }
            )
            ops = [
                PutOp(key, encode(new)),
                PutOp(objects.version_key(stack, name, version), encode(spec)),
                deploy.service_event(now, "service", "update", new, f"version {version}"),
            ]
        await ctx.commit([Compare.mod_revision(key, "==", rev)], ops, f"service {stack}/{name}")
        return new

    return await ctx.retrying(attempt)


@router.post("/services/{stack}/{name}/rollback", response_model=Service, tags=["services"])
async def rollback_service(stack: str, name: str, ctx: ServerContext = Depends(context)) -> Service:
    """Go back to the previous version's spec (as a new version, rolled with rollback_config)."""

    async def attempt() -> Service:
        svc, rev = _service(ctx, stack, name)
        if svc.previous_version is None:
            raise Conflict(
                f"service {stack}/{name} has no previous version",
                hint="`shoal service history` lists its versions",
            )
        status = UpdateStatus(
            state=UpdateState.ROLLBACK_STARTED,
            from_version=svc.version,
            to_version=svc.previous_version,
            started_at=ctx.clock(),
            message=f"manual rollback from version {svc.version}",
        )
        new, ops = await rollback_ops(ctx, svc, status, ctx.clock())
        key = objects.service_key(stack, name)
        await ctx.commit([Compare.mod_revision(key, "==", rev)], ops, f"service {stack}/{name}")
        return new

    return await ctx.retrying(attempt)
