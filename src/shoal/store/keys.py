"""Validation of keys, values and txn ops, shared by every backend so they reject the same input.

Keys are compared as their UTF-8 bytes, which orders them exactly like Python's `str` ordering
(UTF-8 preserves code point order). Strings that cannot be encoded (lone surrogates) are refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.model.errors import Invalid

from .base import DeleteOp, GetOp, Op, PutOp


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise Invalid(f"a key must be a non-empty string, got {key!r}")
    return check_prefix(key)


def check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise Invalid(f"a key prefix must be a string, got {prefix!r}")
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"key {prefix!r} is not valid UTF-8: {exc.reason}") from None
    return prefix


def check_value(key: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise Invalid(f"{key}: a value must be bytes, got {type(value).__name__}")
    return value


def check_revision(name: str, revision: object, *, minimum: int) -> int:
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < minimum:
        raise Invalid(f"{name} must be an int >= {minimum}, got {revision!r}")
    return revision


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix`.

    None when there is none (empty prefix, or all 0xFF): the range is then open-ended.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_ops(ops: Sequence[Op]) -> list[int]:
    """Validate one txn branch; returns the leases its puts use (for the caller to check).

    A key written twice in one branch would get two events at one revision, which would break
    the "(revision, key) names an event" guarantee, so it is refused, as etcd does.
    """
    puts: set[str] = set()
    deletes: list[DeleteOp] = []
    leases: list[int] = []
    for op in ops:
        if isinstance(op, PutOp):
            check_value(check_key(op.key), op.value)
            if op.key in puts:
                raise Invalid(f"{op.key}: written twice in one txn")
            puts.add(op.key)
            if op.lease is not None:
                check_revision("a lease id", op.lease, minimum=1)
                leases.append(op.lease)
        elif isinstance(op, DeleteOp):
            check_key(op.key)
            deletes.append(op)
        elif isinstance(op, GetOp):
            check_prefix(op.key) if op.prefix else check_key(op.key)
        else:
            raise Invalid(f"unknown txn op {op!r}")
    for d in deletes:
        for key in puts:
            if key == d.key or (d.prefix and key.startswith(d.key)):
                raise Invalid(f"{key}: both put and deleted in one txn")
    return leases
