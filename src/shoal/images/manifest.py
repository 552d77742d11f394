"""OCI and Docker schema 2 manifests, indexes and image configs, and platform selection.

OCI manifests and Docker schema 2 manifests share one shape (config + layers); OCI indexes and
Docker manifest lists share another (a list of platform-tagged descriptors). The models keep the
JSON names so documents round-trip; unknown fields are ignored on read.
"""

from __future__ import annotations

import json
import platform as _platform
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoal.model.errors import Invalid, NotFound

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
LAYER_TYPES = (
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    DOCKER_LAYER_GZIP,
    DOCKER_FOREIGN_LAYER,
)
# What a client may send in `Accept` to get any of the above.
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386"}
_ARCH.update({"i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"})


def host_arch() -> str:
    """This machine's architecture in OCI terms (amd64 for x86_64)."""
    machine = _platform.machine().lower()
    return _ARCH.get(machine, machine)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_json(self) -> bytes:
        """Canonical-enough bytes to store as a blob (aliases, no nulls)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(data, separators=(",", ":")).encode()


class Platform(_Model):
    architecture: str
    os: str
    os_version: str | None = Field(default=None, alias="os.version")
    os_features: list[str] | None = Field(default=None, alias="os.features")
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


class Descriptor(_Model):
    mediaType: str
    digest: str
    size: int = Field(ge=0)
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    artifactType: str | None = None


class ImageManifest(_Model):
    """An OCI image manifest or a Docker schema 2 manifest (same shape, other media types)."""

    schemaVersion: int = 2
    mediaType: str = OCI_MANIFEST
    config: Descriptor
    layers: list[Descriptor] = []
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifactType: str | None = None


class ImageIndex(_Model):
    """An OCI image index or a Docker manifest list."""

    schemaVersion: int = 2
    mediaType: str = OCI_INDEX
    manifests: list[Descriptor] = []
    annotations: dict[str, str] | None = None


# Docker's names for the same shapes, for readers who look for them.
DockerManifest = ImageManifest
DockerManifestList = ImageIndex


class HealthConfig(_Model):
    Test: list[str] | None = None
    Interval: int | None = None  # nanoseconds, as Docker writes them
    Timeout: int | None = None
    StartPeriod: int | None = None
    StartInterval: int | None = None
    Retries: int | None = None


class ContainerConfig(_Model):
    """The `config` part of an image config: how to run a container from the image."""

    User: str | None = None
    ExposedPorts: dict[str, dict[str, Any]] | None = None
    Env: list[str] | None = None
    Entrypoint: list[str] | None = None
    Cmd: list[str] | None = None
    Volumes: dict[str, dict[str, Any]] | None = None
    WorkingDir: str | None = None
    Labels: dict[str, str] | None = None
    StopSignal: str | None = None
    Healthcheck: HealthConfig | None = None
    Shell: list[str] | None = None


class RootFS(_Model):
    type: str = "layers"
    diff_ids: list[str] = []


class History(_Model):
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None


class ImageConfig(_Model):
    architecture: str = ""
    os: str = ""
    variant: str | None = None
    os_version: str | None = Field(default=None, alias="os.version")
    created: str | None = None
    author: str | None = None
    config: ContainerConfig = Field(default_factory=ContainerConfig)
    rootfs: RootFS = Field(default_factory=RootFS)
    history: list[History] | None = None


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise Invalid(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Invalid(f"{what} is not a JSON object")
    return doc


def parse_manifest(
    data: bytes, media_type: str | None = None, *, what: str = "manifest"
) -> ImageManifest | ImageIndex:
    """Parse a manifest or an index; the media type comes from the document or from the caller."""
    doc = _load(data, what)
    kind = doc.get("mediaType") or media_type
    if kind in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise Invalid(
            f"{what} uses Docker image manifest schema 1, which is not supported",
            hint="push the image again with a current Docker or Podman (schema 2 / OCI)",
        )
    if kind is None:
        kind = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    try:
        if kind in INDEX_TYPES:
            return ImageIndex.model_validate({**doc, "mediaType": kind})
        if kind in MANIFEST_TYPES:
            return ImageManifest.model_validate({**doc, "mediaType": kind})
    except ValidationError as exc:
        raise Invalid(f"{what} ({kind}) is malformed: {_first_error(exc)}") from None
    raise Invalid(
        f"{what} has unsupported media type {kind!r}",
        hint=f"supported: {', '.join((*MANIFEST_TYPES, *INDEX_TYPES))}",
    )


def parse_config(data: bytes, *, what: str = "image config") -> ImageConfig:
    doc = _load(data, what)
    try:
        return ImageConfig.model_validate(doc)
    except ValidationError as exc:
        raise Invalid(f"{what} is malformed: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "document"
    return f"{where}: {err['msg']}"


def _variant_ok(wanted: str | None, arch: str, have: str | None) -> bool:
    if wanted is None or have is None:
        return True
    if arch == "arm64":  # v8 is arm64's implicit default
        return (wanted or "v8") == (have or "v8")
    return wanted == have


def select_platform(
    index: ImageIndex,
    os: str = "linux",
    arch: str | None = None,
    variant: str | None = None,
) -> Descriptor:
    """The manifest in `index` for os/arch[/variant]; `NotFound` lists what is on offer."""
    arch = arch or host_arch()
    candidates = [
        d
        for d in index.manifests
        if d.platform is not None
        and d.platform.os == os
        and d.platform.architecture == arch
        and _variant_ok(variant, arch, d.platform.variant)
        and d.mediaType not in INDEX_TYPES + DOCKER_SCHEMA1
    ]
    if candidates:
        exact = [d for d in candidates if variant and d.platform and d.platform.variant == variant]
        return (exact or candidates)[0]
    wanted = f"{os}/{arch}" + (f"/{variant}" if variant else "")
    offered = sorted(
        {str(d.platform) for d in index.manifests if d.platform and d.platform.os != "unknown"}
    )
    raise NotFound(
        f"no image for platform {wanted}; the image offers: {', '.join(offered) or 'none'}",
        hint=f"use an image built for {wanted}, or build one (shoal image build)",
    )


def check_platform(config: ImageConfig, os: str = "linux", arch: str | None = None) -> None:
    """Refuse a single-platform image built for another OS or architecture."""
    arch = arch or host_arch()
    if (config.os and config.os != os) or (config.architecture and config.architecture != arch):
        have = f"{config.os or '?'}/{config.architecture or '?'}"
        raise Invalid(
            f"image is built for {have}, this machine is {os}/{arch}",
            hint=f"use an image (or a multi-platform index) that includes {os}/{arch}",
        )
