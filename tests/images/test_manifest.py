"""Manifests, indexes and configs in their OCI and Docker forms; platform selection."""

from __future__ import annotations

import json

import pytest

from shoal.images import manifest as m
from shoal.images.manifest import (
    ImageIndex,
    ImageManifest,
    check_platform,
    parse_config,
    parse_manifest,
    select_platform,
)
from shoal.model.errors import Invalid, NotFound

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def manifest_doc(media_type: str | None, config_type: str, layer_type: str) -> bytes:
    doc = {
        "schemaVersion": 2,
        "config": {"mediaType": config_type, "digest": D1, "size": 7},
        "layers": [{"mediaType": layer_type, "digest": D2, "size": 99}],
    }
    if media_type:
        doc["mediaType"] = media_type
    return json.dumps(doc).encode()


def entry(arch: str, os: str = "linux", variant: str | None = None, digest: str = D1) -> dict:
    platform = {"architecture": arch, "os": os}
    if variant:
        platform["variant"] = variant
    return {"mediaType": m.OCI_MANIFEST, "digest": digest, "size": 10, "platform": platform}


def index_of(*entries: dict, media_type: str = m.OCI_INDEX) -> ImageIndex:
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}
    parsed = parse_manifest(json.dumps(doc).encode())
    assert isinstance(parsed, ImageIndex)
    return parsed


@pytest.mark.parametrize(
    ("media_type", "config_type", "layer_type"),
    [
        (m.OCI_MANIFEST, m.OCI_CONFIG, m.OCI_LAYER_GZIP),
        (m.DOCKER_MANIFEST, m.DOCKER_CONFIG, m.DOCKER_LAYER_GZIP),
        (None, m.OCI_CONFIG, m.OCI_LAYER_ZSTD),  # OCI allows leaving mediaType out
    ],
)
def test_manifests(media_type: str | None, config_type: str, layer_type: str) -> None:
    parsed = parse_manifest(manifest_doc(media_type, config_type, layer_type))
    assert isinstance(parsed, ImageManifest)
    assert parsed.mediaType == (media_type or m.OCI_MANIFEST)
    assert parsed.config.mediaType == config_type and parsed.config.size == 7
    assert parsed.layers[0].mediaType == layer_type
    again = parse_manifest(parsed.to_json())
    assert again == parsed


def test_docker_manifest_list_and_media_type_from_caller() -> None:
    listing = index_of(entry("amd64"), media_type=m.DOCKER_MANIFEST_LIST)
    assert listing.mediaType == m.DOCKER_MANIFEST_LIST
    bare = json.dumps({"schemaVersion": 2, "manifests": [entry("arm64")]}).encode()
    assert isinstance(parse_manifest(bare, m.DOCKER_MANIFEST_LIST), ImageIndex)
    assert isinstance(parse_manifest(bare), ImageIndex)  # recognised by its shape


def test_bad_documents() -> None:
    with pytest.raises(Invalid, match="schema 1"):
        parse_manifest(json.dumps({"schemaVersion": 1, "fsLayers": []}).encode())
    with pytest.raises(Invalid, match="unsupported media type"):
        parse_manifest(json.dumps({"mediaType": "text/plain"}).encode())
    with pytest.raises(Invalid, match="config"):
        parse_manifest(json.dumps({"mediaType": m.OCI_MANIFEST, "layers": []}).encode())
    with pytest.raises(Invalid, match="not valid JSON"):
        parse_manifest(b"{nope")


def test_select_platform() -> None:
    index = index_of(
        entry("arm", variant="v7", digest=D1),
        entry("arm64", variant="v8", digest=D2),
        entry("amd64", digest=D3),
        entry("unknown", os="unknown"),
    )
    assert select_platform(index, arch="amd64").digest == D3
    assert select_platform(index, arch="arm64").digest == D2
    assert select_platform(index, arch="arm", variant="v7").digest == D1
    with pytest.raises(NotFound) as caught:
        select_platform(index, arch="s390x")
    text = str(caught.value)
    assert "linux/s390x" in text
    assert "linux/amd64, linux/arm/v7, linux/arm64/v8" in text and "unknown" not in text
    with pytest.raises(NotFound, match="linux/arm/v6"):
        select_platform(index, arch="arm", variant="v6")


def test_select_platform_defaults_to_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m._platform, "machine", lambda: "x86_64")
    assert m.host_arch() == "amd64"
    assert select_platform(index_of(entry("arm64", digest=D2), entry("amd64"))).digest == D1


def test_image_config() -> None:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/init"],
            "Cmd": ["serve", "--port", "80"],
            "Env": ["PATH=/bin", "A=1"],
            "WorkingDir": "/srv",
            "User": "1000:1000",
            "ExposedPorts": {"80/tcp": {}},
            "Labels": {"org.example": "x"},
            "StopSignal": "SIGQUIT",
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 3},
            "Unknown": 1,
        },
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
        "history": [{"created_by": "RUN x", "empty_layer": True}],
    }
    config = parse_config(json.dumps(doc).encode())
    assert config.config.Entrypoint == ["/init"] and config.config.Cmd == ["serve", "--port", "80"]
    assert config.config.Healthcheck and config.config.Healthcheck.Interval == 5_000_000_000
    assert config.config.ExposedPorts == {"80/tcp": {}}
    assert config.rootfs.diff_ids == [D1, D2]
    check_platform(config, arch="amd64")
    with pytest.raises(Invalid, match="built for linux/amd64, this machine is linux/arm64"):
        check_platform(config, arch="arm64")
    with pytest.raises(Invalid, match="diff_ids"):
        parse_config(json.dumps({"rootfs": {"diff_ids": "nope"}}).encode())
