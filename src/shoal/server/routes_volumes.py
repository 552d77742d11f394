"""Named volumes: `shoal volume ls | inspect | rm | prune`.

Records are created by deploys (`volumestate.plan`); here they are listed with their node and
users, and removed: never while a task that has not finished mounts one (Conflict naming the
tasks); the agent of the volume's node deletes the data first, then the record goes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from shoal.model.errors import NotFound, ShoalError
from shoal.server import volumestate
from shoal.server.auth import context
from shoal.server.context import ServerContext

router = APIRouter(prefix="/v1")


@router.get("/volumes", tags=["volumes"])
async def list_volumes(
    stack: str | None = Query(default=None, description="only volumes this stack owns"),
    ctx: ServerContext = Depends(context),
) -> list[dict[str, Any]]:
    """Every named volume: owner stack, driver, node, state (in use / unused / removing)."""
    found = sorted(volumestate.records(ctx).values(), key=lambda e: e[0].name)
    return [volumestate.view(ctx, v) for v, _ in found if stack is None or v.stack == stack]


@router.get("/volumes/{name}", tags=["volumes"])
async def get_volume(name: str, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    """One volume, with the ids of the tasks using it and the stacks declaring it."""
    found = volumestate.records(ctx).get(name)
    if found is None:
        raise NotFound(f"no volume {name!r}", hint="list volumes with `shoal volume ls`")
    return volumestate.view(ctx, found[0])


@router.delete("/volumes/{name}", tags=["volumes"])
async def remove_volume(name: str, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    """Delete a volume and its data; Conflict while a task that has not finished uses it."""
    volume = await volumestate.remove(ctx, name)
    return {"removed": volume.name, "node_id": volume.node_id}


@router.post("/volumes/prune", tags=["volumes"])
async def prune_volumes(ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    """Remove every volume no stack declares and no task uses; what could not be, and why."""
    removed: list[str] = []
    failed: dict[str, str] = {}
    for volume in volumestate.prunable(ctx):
        try:
            await volumestate.remove(ctx, volume.name)
            removed.append(volume.name)
        except ShoalError as exc:
            failed[volume.name] = exc.message
    return {"removed": removed, "failed": failed}
