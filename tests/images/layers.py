"""Building layer tars and small images in memory for the image tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

from shoal.images.content import ContentStore
from shoal.images.manifest import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    Descriptor,
    ImageConfig,
    ImageManifest,
    RootFS,
    host_arch,
)


@dataclass
class Entry:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    mtime: int = 1_700_000_000
    pax: dict[str, str] = field(default_factory=dict)


def file(name: str, data: bytes = b"", **kw: Any) -> Entry:
    return Entry(name, data=data, **kw)


def directory(name: str, mode: int = 0o755, **kw: Any) -> Entry:
    return Entry(name, type=tarfile.DIRTYPE, mode=mode, **kw)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, type=tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, type=tarfile.LNKTYPE, linkname=target)


def tar_bytes(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.type
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
            info.linkname = e.linkname
            info.pax_headers = dict(e.pax)
            if e.type == tarfile.REGTYPE:
                info.size = len(e.data)
                archive.addfile(info, io.BytesIO(e.data))
            else:
                archive.addfile(info)
    return out.getvalue()


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def compress(tar: bytes, kind: str) -> tuple[bytes, str]:
    if kind == "gzip":
        return gzip.compress(tar), OCI_LAYER_GZIP
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(tar), OCI_LAYER_ZSTD
    return tar, OCI_LAYER


def add_image(
    store: ContentStore,
    layer_tars: list[bytes],
    ref: str | None = None,
    *,
    kind: str = "gzip",
    config: ImageConfig | None = None,
) -> str:
    """Write layers, config and an OCI manifest into `store`; tag it; return the digest."""
    layers = []
    for tar in layer_tars:
        blob, media_type = compress(tar, kind)
        layers.append(
            Descriptor(mediaType=media_type, digest=store.write_blob([blob]), size=len(blob))
        )
    image = config or ImageConfig(architecture=host_arch(), os="linux")
    image.rootfs = RootFS(diff_ids=[sha(t) for t in layer_tars])
    config_bytes = image.to_json()
    config_desc = Descriptor(
        mediaType=OCI_CONFIG, digest=store.write_blob([config_bytes]), size=len(config_bytes)
    )
    manifest = ImageManifest(config=config_desc, layers=layers).to_json()
    digest = store.write_blob([manifest])
    if ref:
        store.set_tag(ref, digest)
    return digest


def mounts_under(path: object) -> list[str]:
    """Mount points below `path` (from /proc/self/mountinfo)."""
    prefix = str(path)
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    return [p for p in points if p.startswith(prefix)]


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()
