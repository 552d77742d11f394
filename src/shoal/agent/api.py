"""The agent's own small HTTP API: container logs, which live on the node (the server proxies)."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shoal.model.errors import NotFound
from shoal.runtime.base import Runtime


def create_app(runtime: Runtime, token: str) -> Starlette:
    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    async def logs(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": {"kind": "Unauthorized", "message": "bad token"}}, 401)
        container_id = request.path_params["container_id"]
        follow = request.query_params.get("follow", "false") == "true"
        tail_raw = request.query_params.get("tail")
        tail = int(tail_raw) if tail_raw and tail_raw.isdigit() else None
        try:
            await runtime.state(container_id)
        except NotFound as exc:
            return JSONResponse({"error": {"kind": "NotFound", "message": exc.message}}, 404)

        async def lines() -> AsyncIterator[bytes]:
            async for line in runtime.logs(container_id, follow=follow, tail=tail):
                record = {"time": line.time, "stream": line.stream, "text": line.text}
                yield (json.dumps(record) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/health", health),
            Route("/v1/containers/{container_id}/logs", logs),
        ]
    )
