"""Top-level Compose objects other than services: networks, volumes, secrets, configs, models,
include entries."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from shoal.model.compose_base import (
    ComposeModel,
    ExtensibleModel,
    ExternalResource,
    LabelMapping,
    StrList,
    StrMapping,
)


class IpamPool(ExtensibleModel):
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] | None = None


class IpamSpec(ExtensibleModel):
    driver: str | None = None
    config: list[IpamPool] | None = None
    options: StrMapping | None = None


class NetworkSpec(ExternalResource):
    """A top-level network. A bare `mynet:` (null) is an empty `NetworkSpec`."""

    _null_means_empty: ClassVar[bool] = True

    driver: str | None = None
    driver_opts: StrMapping | None = None
    ipam: IpamSpec | None = None
    internal: bool | None = None
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None
    attachable: bool | None = None
    labels: LabelMapping | None = None


class VolumeSpec(ExternalResource):
    """A top-level volume. A bare `myvol:` (null) is an empty `VolumeSpec`."""

    _null_means_empty: ClassVar[bool] = True

    driver: str | None = None
    driver_opts: StrMapping | None = None
    labels: LabelMapping | None = None


class SecretSpec(ExternalResource):
    """A top-level secret; its value comes from `file` or `environment` (read by the loader)."""

    environment: str | None = None
    file: str | None = None
    labels: LabelMapping | None = None
    driver: str | None = None
    driver_opts: StrMapping | None = None
    template_driver: str | None = None


class ConfigSpec(ExternalResource):
    """A top-level config; its value comes from `file`, `environment` or inline `content`."""

    content: str | None = None
    environment: str | None = None
    file: str | None = None
    labels: LabelMapping | None = None
    template_driver: str | None = None


class ModelSpec(ExtensibleModel):
    """A top-level (AI) model, run by a model runner and offered to services."""

    name: str | None = None
    model: str
    context_size: int | None = None
    runtime_flags: list[str] | None = None


class IncludeSpec(ComposeModel):
    """An `include` entry; a bare string is its path."""

    path: StrList | None = None
    env_file: StrList | None = None
    project_directory: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_syntax(cls, data: Any) -> Any:
        return {"path": [data]} if isinstance(data, str) else data
