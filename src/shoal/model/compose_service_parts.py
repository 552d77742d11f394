"""The smaller objects inside a Compose service: health check, logging, dependencies, network
attachments, lifecycle hooks, develop/watch, provider, credential spec, extends, env files."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, model_validator

from shoal.model.compose_base import (
    ComposeModel,
    EnvMapping,
    ExtensibleModel,
    OptionMapping,
    StrList,
    StrMapping,
)
from shoal.model.units import Duration, to_str_value


class HealthcheckSpec(ExtensibleModel):
    """`test` is the exec form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`."""

    test: list[str] | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0)
    start_period: Duration | None = None
    start_interval: Duration | None = None
    disable: bool | None = None


class LoggingSpec(ExtensibleModel):
    driver: str | None = None
    options: OptionMapping | None = None


class DependsOnSpec(ExtensibleModel):
    """One `depends_on` entry; defaults are the spec's (a listed name means these)."""

    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = (
        "service_started"
    )
    required: bool = True
    restart: bool = False


class ServiceNetworkSpec(ExtensibleModel):
    """How a service joins one network (`networks: {name: {...}}`)."""

    aliases: list[str] | None = None
    interface_name: str | None = None
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: list[str] | None = None
    mac_address: str | None = None
    driver_opts: StrMapping | None = None
    priority: int | None = None
    gw_priority: int | None = None


class ServiceModelSpec(ExtensibleModel):
    """How a service uses one top-level model (`models: {name: {...}}`)."""

    endpoint_var: str | None = None
    model_var: str | None = None


class EnvFileSpec(ComposeModel):
    path: str
    required: bool = True
    format: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_syntax(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


class ExtendsSpec(ComposeModel):
    service: str
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_syntax(cls, data: Any) -> Any:
        return {"service": data} if isinstance(data, str) else data


class CredentialSpec(ExtensibleModel):
    config: str | None = None
    file: str | None = None
    registry: str | None = None


def _provider_option(value: Any) -> str | list[str]:
    # A plain validator keeps errors at the option's own path (a union would add its members).
    if isinstance(value, list):
        items = [to_str_value(item) for item in value]
        if all(isinstance(item, str) for item in items):
            return items
    else:
        item = to_str_value(value)
        if isinstance(item, str):
            return item
    raise ValueError("provider option must be a string, number, boolean or a list of them")


ProviderOption = Annotated[str | list[str], PlainValidator(_provider_option)]


class ProviderSpec(ExtensibleModel):
    type: str
    options: dict[str, ProviderOption] | None = None


class ServiceHook(ExtensibleModel):
    """A `post_start`/`pre_stop` command, run inside the service container."""

    command: list[str]
    user: str | None = None
    privileged: bool | None = None
    working_dir: str | None = None
    environment: EnvMapping | None = None


class PreStartHook(ExtensibleModel):
    """A `pre_start` step: an ephemeral container run to completion before the service starts."""

    command: list[str] | None = None
    image: str | None = None
    user: str | None = None
    privileged: bool | None = None
    working_dir: str | None = None
    environment: EnvMapping | None = None
    per_replica: bool | None = None


class WatchRule(ExtensibleModel):
    path: str
    action: Literal["rebuild", "sync", "restart", "sync+restart", "sync+exec"]
    target: str | None = None
    ignore: StrList | None = None
    include: StrList | None = None
    exec: ServiceHook | None = None
    initial_sync: bool | None = None


class DevelopSpec(ExtensibleModel):
    watch: list[WatchRule] | None = None
