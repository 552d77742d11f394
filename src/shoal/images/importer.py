"""Importing images from files: a plain rootfs tarball, a `docker save` archive, an OCI archive.

A rootfs tarball becomes a one-layer OCI image; it is stored as given (plain tar, or gzip/zstd
as found), so importing costs one read to compute the diff_id. `docker save` archives
(`manifest.json` + layer tars) and OCI image-layout archives (`index.json` + `blobs/`) are copied
blob by blob, each verified against its digest.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from shoal.images.content import ContentStore, normalize_ref
from shoal.images.image import image_config
from shoal.images.manifest import (
    INDEX_TYPES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    RootFS,
    host_arch,
    parse_config,
    parse_manifest,
)
from shoal.images.tarstream import detect_compression, tar_diff_id
from shoal.model.errors import Invalid, NotFound

__all__ = ["image_config", "import_archive", "import_image", "import_rootfs_tar"]

_LAYER_TYPE = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(1 << 20):
        yield chunk


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_image(
    store: ContentStore, config_bytes: bytes, layers: list[Descriptor], refs: list[str]
) -> str:
    config_digest = store.write_blob([config_bytes])
    manifest = ImageManifest(
        config=Descriptor(mediaType=OCI_CONFIG, digest=config_digest, size=len(config_bytes)),
        layers=layers,
    )
    digest = store.write_blob([manifest.to_json()])
    for ref in refs:
        store.set_tag(ref, digest)
    return digest


def import_rootfs_tar(
    store: ContentStore, tar_path: Path, ref: str, config: ContainerConfig | None = None
) -> str:
    """Import a rootfs tarball as a one-layer image tagged `ref`; returns the manifest digest."""
    tar_path = Path(tar_path)
    normalize_ref(ref)  # refuse a bad name before doing any work
    if not tar_path.is_file():
        raise NotFound(f"no such file: {tar_path}", hint="pass the path of a rootfs tarball")
    diff_id = tar_diff_id(tar_path, f"rootfs tarball {tar_path}")
    with open(tar_path, "rb") as handle:
        kind = detect_compression(handle.read(4))
        handle.seek(0)
        layer_digest = store.write_blob(_chunks(handle))
    layer = Descriptor(
        mediaType=_LAYER_TYPE[kind], digest=layer_digest, size=store.blob_size(layer_digest)
    )
    run = config.model_copy() if config else ContainerConfig()
    if run.Env is None:
        run.Env = list(DEFAULT_ENV)
    created = _now()
    image = ImageConfig(
        architecture=host_arch(),
        os="linux",
        created=created,
        config=run,
        rootfs=RootFS(diff_ids=[diff_id]),
        history=[History(created=created, created_by=f"shoal image import {tar_path.name}")],
    )
    return _write_image(store, image.to_json(), [layer], [ref])


def _member_bytes(archive: tarfile.TarFile, name: str, what: str) -> bytes:
    handle = _member(archive, name, what)
    with handle:
        return handle.read()


def _member(archive: tarfile.TarFile, name: str, what: str) -> IO[bytes]:
    for candidate in (name, name.removeprefix("./"), f"./{name}"):
        try:
            handle = archive.extractfile(candidate)
        except KeyError:
            continue
        if handle is not None:
            return handle
    raise Invalid(f"{what}: the archive has no file {name!r}", hint="the archive is damaged")


def _docker_save(
    store: ContentStore, archive: tarfile.TarFile, what: str, ref: str | None
) -> list[str]:
    try:
        entries = json.loads(_member_bytes(archive, "manifest.json", what))
        assert isinstance(entries, list)
    except (ValueError, AssertionError):
        raise Invalid(f"{what}: manifest.json is not a JSON list") from None
    imported: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or "Config" not in entry or "Layers" not in entry:
            raise Invalid(f"{what}: manifest.json entry lacks Config or Layers")
        config_bytes = _member_bytes(archive, entry["Config"], what)
        config = parse_config(config_bytes, what=f"{what}: {entry['Config']}")
        diff_ids = config.rootfs.diff_ids
        if len(diff_ids) != len(entry["Layers"]):
            raise Invalid(
                f"{what}: {len(entry['Layers'])} layers but the config lists "
                f"{len(diff_ids)} diff_ids"
            )
        layers: list[Descriptor] = []
        for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
            with _member(archive, name, what) as handle:
                digest = store.write_blob(_chunks(handle))
            path = store.blob_path(digest)
            actual = tar_diff_id(path, f"{what}: layer {name}")
            if actual != diff_id:
                raise Invalid(
                    f"{what}: layer {name} has diff_id {actual}, the config says {diff_id}",
                    hint="the archive is corrupt; save it again",
                )
            with open(path, "rb") as blob:
                kind = detect_compression(blob.read(4))
            layers.append(
                Descriptor(mediaType=_LAYER_TYPE[kind], digest=digest, size=store.blob_size(digest))
            )
        refs = [str(t) for t in entry.get("RepoTags") or []] or ([ref] if ref else [])
        if not refs:
            raise Invalid(f"{what}: an image in the archive has no name", hint="pass NAME:TAG")
        _write_image(store, config_bytes, layers, refs)  # original bytes keep the image ID
        imported.extend(normalize_ref(r) for r in refs)
    return imported


def _oci_layout(
    store: ContentStore, archive: tarfile.TarFile, what: str, ref: str | None
) -> list[str]:
    for member in archive.getmembers():
        parts = [p for p in member.name.split("/") if p not in ("", ".")]
        if member.isfile() and len(parts) == 3 and parts[:2] == ["blobs", "sha256"]:
            with _member(archive, member.name, what) as handle:
                store.write_blob(_chunks(handle), f"sha256:{parts[2]}", member.size)
    index = parse_manifest(_member_bytes(archive, "index.json", what), INDEX_TYPES[0], what=what)
    if not isinstance(index, ImageIndex):
        raise Invalid(f"{what}: index.json is not an image index")
    imported: list[str] = []
    for descriptor in index.manifests:
        if not store.has_blob(descriptor.digest):
            raise Invalid(f"{what}: index.json names {descriptor.digest}, not in blobs/")
        annotations = descriptor.annotations or {}
        name = annotations.get(_CONTAINERD_NAME) or annotations.get(_REF_NAME)
        if ref and len(index.manifests) == 1:
            name = ref
        elif name and ":" not in name and "/" not in name:  # a bare tag, as the spec allows
            name = f"{ref.rsplit(':', 1)[0]}:{name}" if ref else None
        if not name:
            raise Invalid(f"{what}: image {descriptor.digest} has no name", hint="pass NAME:TAG")
        store.set_tag(name, descriptor.digest)
        imported.append(normalize_ref(name))
    return imported


def import_archive(store: ContentStore, path: Path, ref: str | None = None) -> list[str]:
    """Import a `docker save` or OCI layout archive; returns the (normalised) refs tagged."""
    what = f"image archive {path}"
    try:
        with tarfile.open(path, "r:*") as archive:
            names = {m.name.removeprefix("./") for m in archive.getmembers()}
            if "manifest.json" in names:
                return _docker_save(store, archive, what, ref)
            if "index.json" in names:
                return _oci_layout(store, archive, what, ref)
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Invalid(f"{what} cannot be read: {exc}", hint="is it a tar archive?") from None
    raise Invalid(
        f"{what} has neither manifest.json (docker save) nor index.json (OCI layout)",
        hint="for a plain rootfs tarball use: shoal image import TAR NAME:TAG",
    )


def is_image_archive(path: Path) -> bool:
    """True when `path` is a `docker save` or OCI layout archive rather than a rootfs."""
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.name.removeprefix("./") in ("manifest.json", "index.json", "oci-layout"):
                    return True
    except (tarfile.TarError, EOFError, OSError):
        return False
    return False


def import_image(
    store: ContentStore,
    path: Path,
    ref: str | None = None,
    config: ContainerConfig | None = None,
) -> list[str]:
    """`shoal image import`: an image archive, or a rootfs tarball (which needs `ref`).

    `config` (command, env, …) applies to a rootfs tarball only: archives carry their own.
    """
    path = Path(path)
    if is_image_archive(path):
        return import_archive(store, path, ref)
    if not ref:
        raise Invalid(f"{path} is a rootfs tarball: it needs a name", hint="pass NAME:TAG")
    import_rootfs_tar(store, path, ref, config)
    return [normalize_ref(ref)]
