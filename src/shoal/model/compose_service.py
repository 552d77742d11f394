"""`ServiceSpec`: one entry of a Compose file's `services`, with every key the spec defines."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from shoal.model.compose_base import (
    EnvMapping,
    ExtensibleModel,
    HostMapping,
    LabelMapping,
    StrList,
    StrMapping,
)
from shoal.model.compose_build import BuildSpec
from shoal.model.compose_deploy import DeploySpec, DeviceRequest
from shoal.model.compose_mounts import (
    BlkioConfig,
    DeviceMapping,
    FileReference,
    PortSpec,
    Ulimit,
    VolumeMount,
)
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
)
from shoal.model.units import ByteSize, Duration, Microseconds, StrValue


class ServiceSpec(ExtensibleModel):
    """A service as canonicalised: long syntax throughout, sizes and durations parsed.

    `command`/`entrypoint` are exec-form lists (`[]` clears the image's value); `networks` maps
    a network to its attachment options or `None`; `environment` values are `None` when unset.
    """

    develop: DevelopSpec | None = None
    deploy: DeploySpec | None = None
    annotations: LabelMapping | None = None
    attach: bool | None = None
    build: BuildSpec | None = None
    blkio_config: BlkioConfig | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    cgroup: Literal["host", "private"] | None = None
    cgroup_parent: str | None = None
    command: list[str] | None = None
    configs: list[FileReference] | None = None
    container_name: str | None = None
    cpu_count: int | None = Field(default=None, ge=0)
    cpu_percent: int | None = Field(default=None, ge=0, le=100)
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_rt_period: Microseconds | None = None
    cpu_rt_runtime: Microseconds | None = None
    cpus: float | None = Field(default=None, ge=0)
    cpuset: str | None = None
    credential_spec: CredentialSpec | None = None
    depends_on: dict[str, DependsOnSpec] | None = None
    device_cgroup_rules: list[str] | None = None
    devices: list[DeviceMapping] | None = None
    dns: StrList | None = None
    dns_opt: list[str] | None = None
    dns_search: StrList | None = None
    domainname: str | None = None
    entrypoint: list[str] | None = None
    env_file: list[EnvFileSpec] | None = None
    label_file: StrList | None = None
    environment: EnvMapping | None = None
    expose: list[StrValue] | None = None
    extends: ExtendsSpec | None = None
    provider: ProviderSpec | None = None
    external_links: list[str] | None = None
    extra_hosts: HostMapping | None = None
    gpus: list[DeviceRequest] | None = None
    group_add: list[StrValue] | None = None
    healthcheck: HealthcheckSpec | None = None
    hostname: str | None = None
    image: str | None = None
    init: bool | None = None
    ipc: str | None = None
    isolation: str | None = None
    labels: LabelMapping | None = None
    links: list[str] | None = None
    logging: LoggingSpec | None = None
    mac_address: str | None = None
    mem_limit: ByteSize | None = None
    mem_reservation: ByteSize | None = None
    mem_swappiness: int | None = None
    memswap_limit: ByteSize | None = None
    network_mode: str | None = None
    models: dict[str, ServiceModelSpec | None] | None = None
    networks: dict[str, ServiceNetworkSpec | None] | None = None
    oom_kill_disable: bool | None = None
    oom_score_adj: int | None = Field(default=None, ge=-1000, le=1000)
    pid: str | None = None
    pids_limit: int | None = None
    platform: str | None = None
    ports: list[PortSpec] | None = None
    pre_start: list[PreStartHook] | None = None
    post_start: list[ServiceHook] | None = None
    pre_stop: list[ServiceHook] | None = None
    privileged: bool | None = None
    profiles: list[str] | None = None
    pull_policy: str | None = None
    pull_refresh_after: str | None = None
    read_only: bool | None = None
    restart: str | None = None
    runtime: str | None = None
    scale: int | None = Field(default=None, ge=0)
    security_opt: list[str] | None = None
    shm_size: ByteSize | None = None
    secrets: list[FileReference] | None = None
    sysctls: LabelMapping | None = None
    stdin_open: bool | None = None
    stop_grace_period: Duration | None = None
    stop_signal: str | None = None
    storage_opt: StrMapping | None = None
    tmpfs: StrList | None = None
    tty: bool | None = None
    ulimits: dict[str, Ulimit] | None = None
    use_api_socket: bool | None = None
    user: str | None = None
    uts: str | None = None
    userns_mode: str | None = None
    volumes: list[VolumeMount] | None = None
    volumes_from: list[str] | None = None
    working_dir: str | None = None

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus_all(cls, value: Any) -> Any:
        # `gpus: all` is one request for every GPU, as compose-go rewrites it.
        return [{"count": "all"}] if value == "all" else value

    @field_validator("models", mode="before")
    @classmethod
    def _models_list(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return dict.fromkeys(value)
        return value
