"""Imports: a busybox rootfs tarball, hand-written `docker save` and OCI layout archives."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from shoal.images.image import load_image
from shoal.images.importer import (
    image_config,
    import_archive,
    import_image,
    import_rootfs_tar,
)
from shoal.images.manifest import OCI_LAYER, OCI_LAYER_GZIP, ContainerConfig, host_arch
from shoal.images.rootfs import prepare_rootfs
from shoal.model.errors import Invalid, NotFound
from tests.images.busybox import make_busybox_image
from tests.images.layers import add_image, file, json_bytes, sha, tar_bytes

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, chroot)")


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@root_only
def test_busybox_rootfs_runs(
    store: ContentStore, tmp_path: Path, container_dirs: list[Path]
) -> None:
    digest = make_busybox_image(store, "busybox:test")
    assert store.resolve("busybox:test") == digest
    config = image_config(store, "busybox:test")
    assert config.config.Cmd == ["sh"] and config.architecture == host_arch()
    assert config.config.Env and config.config.Env[0].startswith("PATH=")
    image = load_image(store, "busybox:test")
    assert image.manifest.layers[0].mediaType == OCI_LAYER
    assert image.manifest.layers[0].digest == config.rootfs.diff_ids[0]  # stored as given
    blobs = len(list(store.blobs.iterdir()))
    make_busybox_image(store, "busybox:again")
    assert len(list(store.blobs.iterdir())) <= blobs + 2  # the layer is shared, not copied
    assert len(store.list_tags()) == 2

    container_dirs.append(tmp_path / "c")
    root = prepare_rootfs(store, "busybox:test", tmp_path / "c")
    assert os.readlink(root / "bin/sh") == "busybox"
    done = subprocess.run(
        ["chroot", str(root), "/bin/sh", "-c", "echo hi > /tmp/x && cat /tmp/x && ls /bin | wc -l"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split()[0] == "hi" and int(done.stdout.split()[1]) > 100


def test_rootfs_tarball_gzip_and_config(store: ContentStore, tmp_path: Path) -> None:
    tar = tar_bytes([file("hello", b"world")])
    path = tmp_path / "root.tar.gz"
    path.write_bytes(gzip.compress(tar))
    run = ContainerConfig(Entrypoint=["/hello"], Env=["A=1"], WorkingDir="/w")
    import_rootfs_tar(store, path, "local/app:v2", run)
    image = load_image(store, "local/app:v2")
    assert image.manifest.layers[0].mediaType == OCI_LAYER_GZIP
    assert image.config.rootfs.diff_ids == [sha(tar)]
    assert image.config.config.Entrypoint == ["/hello"] and image.config.config.Env == ["A=1"]


def test_rootfs_tarball_errors(store: ContentStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        import_rootfs_tar(store, tmp_path / "missing.tar", "a:1")
    with pytest.raises(Invalid):
        import_rootfs_tar(store, tmp_path / "missing.tar", "Bad Name")
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(gzip.compress(tar_bytes([file("x", os.urandom(100_000))]))[:-3000])
    with pytest.raises(Invalid, match="corrupt or truncated"):
        import_rootfs_tar(store, broken, "a:1")
    assert list(store.blobs.iterdir()) == [] and list(store.ingest.iterdir()) == []
    with pytest.raises(Invalid, match="needs a name"):
        import_image(store, tmp_path / "broken.tar.gz")


def docker_save(
    tmp_path: Path, *, diff_id: str | None = None, tags: list[str] | None = None
) -> Path:
    layer = tar_bytes([file("etc/hostname", b"saved")])
    config = json_bytes(
        {
            "architecture": host_arch(),
            "os": "linux",
            "config": {"Cmd": ["/bin/true"], "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id or sha(layer)]},
        }
    )
    config_name = f"{sha(config)[7:]}.json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": ["saved/app:1.0", "saved/app:latest"] if tags is None else tags,
            "Layers": ["abc123/layer.tar"],
        }
    ]
    return write_archive(
        tmp_path / "saved.tar",
        {
            "manifest.json": json_bytes(manifest),
            config_name: config,
            "abc123/layer.tar": layer,
            "repositories": b"{}",
        },
    )


def test_docker_save_archive(store: ContentStore, tmp_path: Path) -> None:
    refs = import_image(store, docker_save(tmp_path))
    assert refs == ["docker.io/saved/app:1.0", "docker.io/saved/app:latest"]
    image = load_image(store, "saved/app:1.0")
    assert image.config.config.ExposedPorts == {"8080/tcp": {}}
    with tarfile.open(tmp_path / "saved.tar") as archive:
        names = archive.getnames()
    config_name = next(n for n in names if n.endswith(".json") and n != "manifest.json")
    assert image.manifest.config.digest == f"sha256:{config_name[:-5]}"  # image ID kept


def test_docker_save_without_tags_needs_a_name(store: ContentStore, tmp_path: Path) -> None:
    path = docker_save(tmp_path, tags=[])
    with pytest.raises(Invalid, match="no name"):
        import_archive(store, path)
    assert import_archive(store, path, "named:1") == ["docker.io/library/named:1"]


def test_docker_save_with_wrong_diff_id(store: ContentStore, tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="diff_id"):
        import_archive(store, docker_save(tmp_path, diff_id=sha(b"other")))
    assert store.list_tags() == {}


def test_oci_layout_archive(store: ContentStore, tmp_path: Path) -> None:
    source = ContentStore(tmp_path / "source")
    digest = add_image(source, [tar_bytes([file("oci", b"1")])], "src:1")
    members = {"oci-layout": json_bytes({"imageLayoutVersion": "1.0.0"})}
    for blob in source.blobs.iterdir():
        members[f"blobs/sha256/{blob.name}"] = blob.read_bytes()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": source.blob_size(digest),
                "annotations": {"org.opencontainers.image.ref.name": "v3"},
            }
        ],
    }
    members["index.json"] = json_bytes(index)
    path = write_archive(tmp_path / "oci.tar", members)
    assert import_archive(store, path, "example.com/oci/app") == ["example.com/oci/app:latest"]
    assert store.resolve("example.com/oci/app") == digest

    index["manifests"][0]["annotations"] = {"io.containerd.image.name": "example.com/x:2"}
    members["index.json"] = json_bytes(index)
    assert import_archive(store, write_archive(tmp_path / "o2.tar", members)) == ["example.com/x:2"]

    bad = dict(members)
    first = next(k for k in bad if k.startswith("blobs/"))
    bad[first] = b"tampered" + bad[first]
    fresh = ContentStore(tmp_path / "fresh")
    with pytest.raises(Invalid, match="mismatch"):
        import_archive(fresh, write_archive(tmp_path / "bad.tar", bad))
    assert fresh.list_tags() == {}


def test_not_an_image_archive(store: ContentStore, tmp_path: Path) -> None:
    with pytest.raises(Invalid, match=r"neither manifest\.json"):
        import_archive(store, write_archive(tmp_path / "x.tar", {"hello": b"x"}))
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(Invalid, match="cannot be read"):
        import_archive(store, tmp_path / "junk")
