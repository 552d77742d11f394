"""The one place where errors become HTTP responses.

Every error body is `{"error": {"kind", "message", "hint", "field"}}` so the client can rebuild
the same ShoalError on its side; nothing a user can send produces a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from shoal.model.errors import (
    ComposeError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ShoalError,
    Unauthorized,
    Unavailable,
    format_path,
)

log = logging.getLogger(__name__)

STATUS: list[tuple[type[ShoalError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Gone, 410),
    (Unavailable, 503),
]


def body(kind: str, message: str, hint: str | None = None, field: str | None = None) -> Any:
    error: dict[str, Any] = {"kind": kind, "message": message}
    if hint:
        error["hint"] = hint
    if field:
        error["field"] = field
    return {"error": error}


def _shoal(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ShoalError)
    kind, status = next(
        ((cls.__name__, code) for cls, code in STATUS if isinstance(exc, cls)),
        (type(exc).__name__, 500),
    )
    field = exc.path_str if isinstance(exc, ComposeError) and exc.path else None
    return JSONResponse(body(kind, exc.message, exc.hint, field), status)


def _validation(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError | ValidationError) else []
    first = errors[0] if errors else {"loc": (), "msg": str(exc)}
    loc = tuple(p for p in first.get("loc", ()) if isinstance(p, str | int))
    field = format_path(loc)
    message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    return JSONResponse(body("Invalid", message, None, field or None), 422)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = {404: "NotFound", 405: "Invalid", 401: "Unauthorized"}.get(exc.status_code, "Invalid")
    return JSONResponse(body(kind, str(exc.detail)), exc.status_code, headers=exc.headers)


def _internal(_: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error", exc_info=exc)
    message = f"internal error ({type(exc).__name__}): this is a bug in shoal, please report it"
    return JSONResponse(body("Internal", message), 500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _internal)
    app.add_exception_handler(ShoalError, _shoal)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
