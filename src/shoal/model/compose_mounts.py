"""What a Compose service exposes and mounts: ports, volumes, secret/config files, devices,
block-IO limits and ulimits (long syntax only; the canonicaliser expands short syntax)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    model_serializer,
    model_validator,
)
from pydantic import SerializerFunctionWrapHandler as _SerHandler

from shoal.model.compose_base import ComposeModel, ExtensibleModel, LabelMapping
from shoal.model.units import ByteSize, FileMode, NonNegativeByteSize, StrValue


class PortSpec(ExtensibleModel):
    """One `ports` entry; `published` stays a string because it may be a range (`"8000-8010"`)."""

    target: int = Field(ge=1, le=65535)
    published: StrValue | None = None
    host_ip: str | None = None
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str | None = None
    app_protocol: str | None = None


class BindOptions(ExtensibleModel):
    propagation: str | None = None
    create_host_path: bool | None = None
    recursive: Literal["enabled", "disabled", "writable", "readonly"] | None = None
    selinux: Literal["z", "Z"] | None = None


class VolumeOptions(ExtensibleModel):
    labels: LabelMapping | None = None
    nocopy: bool | None = None
    subpath: str | None = None


class TmpfsOptions(ExtensibleModel):
    size: NonNegativeByteSize | None = None
    mode: FileMode | None = None


class ImageOptions(ExtensibleModel):
    subpath: str | None = None


class VolumeMount(ExtensibleModel):
    """One `volumes` entry of a service."""

    type: Literal["bind", "volume", "tmpfs", "cluster", "npipe", "image"]
    source: str | None = None
    target: str | None = None
    read_only: bool | None = None
    consistency: str | None = None
    bind: BindOptions | None = None
    volume: VolumeOptions | None = None
    tmpfs: TmpfsOptions | None = None
    image: ImageOptions | None = None


class FileReference(ExtensibleModel):
    """A service's (or build's) `secrets`/`configs` entry: which file, where, owned by whom.

    `target` is left unset when not written; its default (`/run/secrets/<source>` for secrets,
    `/<source>` for configs) is for the consumer to apply.
    """

    source: str
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: FileMode | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_syntax(cls, data: Any) -> Any:
        return {"source": data} if isinstance(data, str) else data


class DeviceMapping(ExtensibleModel):
    """One `devices` entry: a host device made visible in the container."""

    source: str
    target: str | None = None
    permissions: str | None = None


class BlkioLimit(ComposeModel):
    path: str | None = None
    rate: ByteSize | None = None


class BlkioWeight(ComposeModel):
    path: str | None = None
    weight: int | None = Field(default=None, ge=10, le=1000)


class BlkioConfig(ComposeModel):
    device_read_bps: list[BlkioLimit] | None = None
    device_read_iops: list[BlkioLimit] | None = None
    device_write_bps: list[BlkioLimit] | None = None
    device_write_iops: list[BlkioLimit] | None = None
    weight: int | None = Field(default=None, ge=10, le=1000)
    weight_device: list[BlkioWeight] | None = None


def _ulimit_value(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError(f"invalid ulimit {value!r}: expected an integer or a {{soft, hard}} mapping")


class Ulimit(ExtensibleModel):
    """A ulimit. A single number (`nproc: 65535`) sets both limits and is dumped back as one."""

    soft: int
    hard: int
    _single: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _single_number(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if isinstance(data, dict | Ulimit):
            return handler(data)
        value = _ulimit_value(data)
        limit = handler({"soft": value, "hard": value})
        limit._single = True
        return limit

    @model_serializer(mode="wrap")
    def _restore_extensions(self, handler: _SerHandler) -> Any:
        if self._single and self.soft == self.hard and not self.extensions:
            return self.soft
        data = handler(self)
        if isinstance(data, dict):
            data.update(data.pop("extensions", None) or {})
        return data
