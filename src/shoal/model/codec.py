"""JSON encoding of models for the store and the wire: compact, `None` fields left out."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def encode(obj: BaseModel) -> bytes:
    return obj.model_dump_json(exclude_none=True).encode()


def decode(cls: type[M], data: bytes | str) -> M:
    return cls.model_validate_json(data)
