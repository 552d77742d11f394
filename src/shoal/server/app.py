"""The ASGI application: routers, error mapping, health, and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from shoal import __version__
from shoal.server import (
    errors,
    routes_catalog,
    routes_exec,
    routes_kv,
    routes_networks,
    routes_nodes,
    routes_secrets,
    routes_stacks,
    routes_tasks,
    routes_updates,
    routes_volumes,
)
from shoal.server.context import ServerContext


def create_app(ctx: ServerContext) -> FastAPI:
    app = FastAPI(
        title="shoal",
        version=__version__,
        description="shoal's HTTP API: every endpoint but /v1/health needs `Authorization: "
        "Bearer <token>`. Errors are `{error: {kind, message, hint, field}}`.",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    errors.install(app)

    @app.get("/v1/health", tags=["health"])
    async def health(request: Request) -> dict[str, Any]:
        """Answers without a token: ready means this answers."""
        c: ServerContext = request.app.state.ctx
        return {"status": "ok", "version": __version__, "revision": c.cache.revision}

    app.include_router(routes_stacks.router)
    app.include_router(routes_nodes.router)
    app.include_router(routes_tasks.router)
    app.include_router(routes_exec.router)
    app.include_router(routes_kv.router)
    app.include_router(routes_catalog.router)
    app.include_router(routes_networks.router)
    app.include_router(routes_updates.router)
    app.include_router(routes_secrets.router)
    app.include_router(routes_volumes.router)
    return app
