"""The `build` section of a Compose service: how to build its image."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from shoal.model.compose_base import EnvMapping, ExtensibleModel, HostMapping, LabelMapping, StrList
from shoal.model.compose_mounts import FileReference, Ulimit
from shoal.model.units import ByteSize, StrValue


class BuildSpec(ExtensibleModel):
    """`build`; a bare string (`build: ./dir`) is the context."""

    context: str | None = None
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    entitlements: list[str] | None = None
    args: EnvMapping | None = None
    ssh: EnvMapping | None = None
    labels: LabelMapping | None = None
    cache_from: list[str] | None = None
    cache_to: list[str] | None = None
    no_cache: bool | None = None
    no_cache_filter: StrList | None = None
    additional_contexts: LabelMapping | None = None
    network: str | None = None
    # Both take a mode string (`mode=max`) as well as a boolean, so they stay strings.
    provenance: StrValue | None = None
    sbom: StrValue | None = None
    pull: bool | None = None
    target: str | None = None
    shm_size: ByteSize | None = None
    extra_hosts: HostMapping | None = None
    isolation: str | None = None
    privileged: bool | None = None
    secrets: list[FileReference] | None = None
    tags: list[str] | None = None
    ulimits: dict[str, Ulimit] | None = None
    platforms: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_syntax(cls, data: Any) -> Any:
        return {"context": data} if isinstance(data, str) else data
