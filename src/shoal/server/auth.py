"""Bearer-token authentication: every endpoint but /v1/health needs the admin token."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shoal.model.errors import Unauthorized
from shoal.server.context import ServerContext

_bearer = HTTPBearer(auto_error=False, description="the admin token from <data-dir>/token")


def load_or_create_token(data_dir: Path) -> str:
    """The admin token, generated at first start into `<data-dir>/token` (mode 0600)."""
    path = data_dir / "token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


async def context(request: Request) -> ServerContext:
    """The server context, for an authenticated request only."""
    ctx: ServerContext = request.app.state.ctx
    credentials: HTTPAuthorizationCredentials | None = await _bearer(request)
    given = credentials.credentials if credentials else request.query_params.get("token", "")
    if not given or not hmac.compare_digest(given.encode(), ctx.token.encode()):
        raise Unauthorized(
            "missing or wrong token",
            hint="set SHOAL_TOKEN (the admin token is in <data-dir>/token on the server)",
        )
    return ctx
