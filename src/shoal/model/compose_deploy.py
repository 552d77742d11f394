"""The `deploy` section of a Compose service: replicas, resources, placement, update policy."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, PlainSerializer, model_validator

from shoal.model.compose_base import ExtensibleModel, LabelMapping
from shoal.model.units import ByteSizeString, Duration

ALL_DEVICES = -1
"""`count: all`, held as compose-go's `DeviceCount(-1)`."""

_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _device_count(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value == "all":
        return ALL_DEVICES
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    raise ValueError(f"invalid value \"{value}\", the only value allowed is 'all' or a number")


def _dump_device_count(value: int) -> int | str:
    return "all" if value == ALL_DEVICES else value


DeviceCount = Annotated[
    int,
    BeforeValidator(_device_count),
    PlainSerializer(_dump_device_count, return_type=int | str),
]


class UpdateConfig(ExtensibleModel):
    """`update_config` and `rollback_config`."""

    parallelism: int | None = Field(default=None, ge=0)
    delay: Duration | None = None
    failure_action: str | None = None
    monitor: Duration | None = None
    max_failure_ratio: float | None = None
    order: Literal["start-first", "stop-first"] | None = None


class RestartPolicy(ExtensibleModel):
    condition: str | None = None
    delay: Duration | None = None
    max_attempts: int | None = Field(default=None, ge=0)
    window: Duration | None = None


class PlacementPreference(ExtensibleModel):
    spread: str | None = None


class Placement(ExtensibleModel):
    constraints: list[str] | None = None
    preferences: list[PlacementPreference] | None = None
    max_replicas_per_node: int | None = Field(default=None, ge=0)


class DiscreteResourceSpec(ExtensibleModel):
    kind: str | None = None
    value: int | None = None


class GenericResource(ExtensibleModel):
    discrete_resource_spec: DiscreteResourceSpec | None = None


class DeviceRequest(ExtensibleModel):
    """A device request (`gpus` entries, `deploy.resources.reservations.devices`).

    `count` is an int; `all` is `ALL_DEVICES` (-1) and is dumped back as `"all"`. Per the spec,
    leaving out both `count` and `device_ids` also means all devices.
    """

    capabilities: list[str] | None = None
    count: DeviceCount | None = None
    device_ids: list[str] | None = None
    driver: str | None = None
    options: LabelMapping | None = None

    @model_validator(mode="after")
    def _count_or_ids(self) -> Self:
        if self.count is not None and self.device_ids is not None:
            raise ValueError('"count" and "device_ids" attributes are exclusive')
        return self


class DeviceReservation(DeviceRequest):
    """A `deploy.resources.reservations.devices` entry: `capabilities` is required there."""

    capabilities: list[str]


class ResourceLimits(ExtensibleModel):
    cpus: float | None = Field(default=None, ge=0)
    memory: ByteSizeString | None = None
    pids: int | None = None


class ResourceReservations(ExtensibleModel):
    cpus: float | None = Field(default=None, ge=0)
    memory: ByteSizeString | None = None
    generic_resources: list[GenericResource] | None = None
    devices: list[DeviceReservation] | None = None


class Resources(ExtensibleModel):
    limits: ResourceLimits | None = None
    reservations: ResourceReservations | None = None


class DeploySpec(ExtensibleModel):
    mode: str | None = None
    endpoint_mode: str | None = None
    replicas: int | None = Field(default=None, ge=0)
    labels: LabelMapping | None = None
    rollback_config: UpdateConfig | None = None
    update_config: UpdateConfig | None = None
    resources: Resources | None = None
    restart_policy: RestartPolicy | None = None
    placement: Placement | None = None
