"""The Compose project model: what the loader hands to the rest of shoal, and its dump.

Build one with `ComposeProject.model_validate(canonical_dict)`; validation errors carry `loc`
tuples equal to Compose key paths (`("services", "web", "deploy", "replicas")`), so the loader
can point at file:line. `to_compose_dict` gives back what `docker compose config` prints.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from shoal.model.compose_base import ExtensibleModel
from shoal.model.compose_build import BuildSpec
from shoal.model.compose_deploy import (
    ALL_DEVICES,
    DeploySpec,
    DeviceRequest,
    DeviceReservation,
    DiscreteResourceSpec,
    GenericResource,
    Placement,
    PlacementPreference,
    ResourceLimits,
    ResourceReservations,
    Resources,
    RestartPolicy,
    UpdateConfig,
)
from shoal.model.compose_mounts import (
    BindOptions,
    BlkioConfig,
    BlkioLimit,
    BlkioWeight,
    DeviceMapping,
    FileReference,
    ImageOptions,
    PortSpec,
    TmpfsOptions,
    Ulimit,
    VolumeMount,
    VolumeOptions,
)
from shoal.model.compose_resources import (
    ConfigSpec,
    IncludeSpec,
    IpamPool,
    IpamSpec,
    ModelSpec,
    NetworkSpec,
    SecretSpec,
    VolumeSpec,
)
from shoal.model.compose_service import ServiceSpec
from shoal.model.compose_service_parts import (
    CredentialSpec,
    DependsOnSpec,
    DevelopSpec,
    EnvFileSpec,
    ExtendsSpec,
    HealthcheckSpec,
    LoggingSpec,
    PreStartHook,
    ProviderSpec,
    ServiceHook,
    ServiceModelSpec,
    ServiceNetworkSpec,
    WatchRule,
)

__all__ = [
    "ALL_DEVICES",
    "BindOptions",
    "BlkioConfig",
    "BlkioLimit",
    "BlkioWeight",
    "BuildSpec",
    "ComposeProject",
    "ConfigSpec",
    "CredentialSpec",
    "DependsOnSpec",
    "DeploySpec",
    "DevelopSpec",
    "DeviceMapping",
    "DeviceRequest",
    "DeviceReservation",
    "DiscreteResourceSpec",
    "EnvFileSpec",
    "ExtendsSpec",
    "FileReference",
    "GenericResource",
    "HealthcheckSpec",
    "ImageOptions",
    "IncludeSpec",
    "IpamPool",
    "IpamSpec",
    "LoggingSpec",
    "ModelSpec",
    "NetworkSpec",
    "Placement",
    "PlacementPreference",
    "PortSpec",
    "PreStartHook",
    "ProviderSpec",
    "ResourceLimits",
    "ResourceReservations",
    "Resources",
    "RestartPolicy",
    "SecretSpec",
    "ServiceHook",
    "ServiceModelSpec",
    "ServiceNetworkSpec",
    "ServiceSpec",
    "TmpfsOptions",
    "Ulimit",
    "UpdateConfig",
    "VolumeMount",
    "VolumeOptions",
    "VolumeSpec",
    "WatchRule",
    "from_compose_dict",
    "to_compose_dict",
]

_COLLECTIONS = ("services", "networks", "volumes", "secrets", "configs", "models")


class ComposeProject(ExtensibleModel):
    """A whole Compose project. The top-level collections are never `None` (empty instead)."""

    version: str | None = None
    name: str | None = None
    include: list[IncludeSpec] | None = None
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
    networks: dict[str, NetworkSpec] = Field(default_factory=dict)
    volumes: dict[str, VolumeSpec] = Field(default_factory=dict)
    secrets: dict[str, SecretSpec] = Field(default_factory=dict)
    configs: dict[str, ConfigSpec] = Field(default_factory=dict)
    models: dict[str, ModelSpec] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _restore_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            data.update(data.pop("extensions", None) or {})
            # An empty collection says nothing that leaving it out doesn't.
            for key in _COLLECTIONS:
                if key in data and not data[key]:
                    del data[key]
        return data


def from_compose_dict(data: dict[str, Any]) -> ComposeProject:
    """Canonical Compose mapping → `ComposeProject` (raises `pydantic.ValidationError`)."""
    return ComposeProject.model_validate(data)


def to_compose_dict(project: ComposeProject) -> dict[str, Any]:
    """The project as `docker compose config` prints it: plain JSON types, unset keys left out,
    sizes in bytes, durations as Go strings, `x-*` keys restored. Valid against the schema."""
    result: dict[str, Any] = project.model_dump(mode="json", exclude_none=True)
    return result
