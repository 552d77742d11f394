"""The models of secrets and configs: what the store keeps about them (never a value) and what
travels in a deploy request or to an agent (a value, base64, over the API only).

Swarm keeps secrets and configs apart: a stack may have a secret and a config of one name, so
every lookup is by (kind, name).
"""

from __future__ import annotations

import base64
import binascii
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shoal.model.compose_base import ExternalResource
from shoal.model.errors import Invalid

NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")


class Kind(StrEnum):
    SECRET = "secret"
    CONFIG = "config"

    @property
    def plural(self) -> str:
        return f"{self.value}s"

    @property
    def max_bytes(self) -> int:
        """Swarm's limits: 500 KB for a secret, 1000 KB for a config."""
        return 500 * 1024 if self is Kind.SECRET else 1000 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretVersion(_Model):
    version: int
    created_at: float
    digest: str = Field(description="HMAC-SHA256 of the value under the server's key (hex)")


class SecretRecord(_Model):
    """A secret's or config's metadata: `/secrets/<name>` or `/configs/<name>` in the store."""

    name: str
    kind: Kind
    stack: str = Field(default="", description='the stack that owns it ("": made by hand)')
    versions: list[SecretVersion] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def latest(self) -> SecretVersion:
        return self.versions[-1]


class SentValue(_Model):
    """A value a client sends (deploy, create): never stored as such, never echoed."""

    kind: Kind = Kind.SECRET
    name: str = Field(description="the cluster name (`<stack>_<key>` unless `name:` is set)")
    data: str = Field(description="the value, base64")

    def value(self) -> bytes:
        try:
            raw = base64.b64decode(self.data, validate=True)
        except (ValueError, binascii.Error):
            raise Invalid(f"{self.kind} {self.name}: data is not valid base64") from None
        check_size(self.kind, self.name, raw)
        return raw


def cluster_name(stack: str, key: str, spec: ExternalResource) -> str:
    """A stack's secret `key` in the cluster: `name:` if set, else `<stack>_<key>` (as Swarm
    names it); an external one by its own name."""
    if spec.name:
        return spec.name
    return key if spec.external else f"{stack}_{key}"


def check_name(kind: Kind, name: str) -> str:
    if not NAME.match(name):
        raise Invalid(
            f"invalid {kind} name {name!r}",
            hint="1-64 letters, digits, '_', '-' and '.', starting and ending with a letter "
            "or digit",
        )
    return name


def check_size(kind: Kind, name: str, value: bytes) -> None:
    if not value or len(value) > kind.max_bytes:
        raise Invalid(
            f"{kind} {name} is {len(value)} bytes: it must hold 1 to {kind.max_bytes} bytes",
            hint="large files belong in a volume or the image",
        )
