"""Bearer-token authentication: every endpoint but /v1/health needs the admin token, or a
stack-scoped token (see `scoped_token`) for the few routes a stack's containers may use."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shoal.model.errors import Forbidden, Unauthorized
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


def scoped_token(admin_token: str, stack: str) -> str:
    """A token that only reaches stack `stack`'s keys, leases and catalog entries.

    Derived from the admin token (HMAC-SHA256), so the server stores nothing per stack and
    changing the admin token revokes every scoped token.
    """
    mac = hmac.new(admin_token.encode(), f"stack:{stack}".encode(), hashlib.sha256).hexdigest()
    return f"stack.{stack}.{mac}"


def token_stack(admin_token: str, given: str) -> str | None:
    """The stack of a genuine scoped token, else None (forged, or not a scoped token)."""
    stack, _, mac = given.removeprefix("stack.").rpartition(".")
    if not given.startswith("stack.") or not stack or not mac:
        return None
    expected = scoped_token(admin_token, stack)
    return stack if hmac.compare_digest(expected.encode(), given.encode()) else None


def scope_allows(stack: str, method: str, path: str) -> bool:
    """What a token scoped to `stack` may do: its keys, leases, and its catalog entries."""
    if path.startswith(f"/v1/kv/stacks/{stack}/"):
        return method in ("GET", "PUT", "DELETE")
    if path == "/v1/leases" or path.startswith("/v1/leases/"):
        return method in ("GET", "POST", "DELETE")
    catalog = f"/v1/catalog/services/{stack}"
    return method == "GET" and (path == catalog or path.startswith(catalog + "/"))


def request_stack(request: Request) -> str | None:
    """The stack an authenticated request is scoped to (None: the admin token)."""
    stack: str | None = getattr(request.state, "stack", None)
    return stack


async def context(request: Request) -> ServerContext:
    """The server context, for an authenticated request only."""
    ctx: ServerContext = request.app.state.ctx
    credentials: HTTPAuthorizationCredentials | None = await _bearer(request)
    given = credentials.credentials if credentials else request.query_params.get("token", "")
    if given and hmac.compare_digest(given.encode(), ctx.token.encode()):
        request.state.stack = None
        return ctx
    stack = token_stack(ctx.token, given) if given else None
    if stack is None:
        raise Unauthorized(
            "missing or wrong token",
            hint="set SHOAL_TOKEN (the admin token is in <data-dir>/token on the server)",
        )
    # The path routing matched on, so the check and the route see the same key.
    if not scope_allows(stack, request.method, request.scope["path"]):
        raise Forbidden(
            f"this token is scoped to stack {stack!r}: it may only use /v1/kv/stacks/{stack}/…, "
            f"/v1/leases and GET /v1/catalog/services/{stack}/…",
        )
    request.state.stack = stack
    return ctx
