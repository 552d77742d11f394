"""Overlay rootfs per container over shared layers: isolation, idempotence, cleanup."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shoal.images import rootfs as rootfs_mod
from shoal.images.content import ContentStore
from shoal.images.rootfs import prepare_rootfs, release_rootfs
from shoal.images.unpack import layer_dir
from shoal.model.errors import NotFound
from tests.images.layers import add_image, directory, file, sha, tar_bytes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts need root")

BASE = tar_bytes([directory("etc"), file("etc/motd", b"base"), file("etc/old", b"old")])
TOP = tar_bytes([file("etc/.wh.old"), file("etc/motd", b"top"), file("app", b"A")])


def test_layers_stack_and_writes_stay_private(
    store: ContentStore, tmp_path: Path, container_dirs: list[Path]
) -> None:
    add_image(store, [BASE, TOP], "app:1")
    one, two = tmp_path / "c1", tmp_path / "c2"
    container_dirs.extend([one, two])
    root1 = prepare_rootfs(store, "app:1", one)
    root2 = prepare_rootfs(store, "app:1", two)
    assert root1 == one / "rootfs" and os.path.ismount(root1)
    assert (root1 / "etc/motd").read_bytes() == b"top"
    assert not (root1 / "etc/old").exists()  # the whiteout hides the lower file
    assert (root1 / "app").read_bytes() == b"A"

    (root1 / "etc/motd").write_bytes(b"changed")
    (root1 / "new").write_bytes(b"n")
    (root1 / "app").unlink()
    assert (one / "upper/new").read_bytes() == b"n"
    assert stat.S_ISCHR(os.lstat(one / "upper/app").st_mode)  # deletion recorded in upper
    assert (root2 / "etc/motd").read_bytes() == b"top" and (root2 / "app").exists()
    assert (layer_dir(store, sha(TOP)) / "etc/motd").read_bytes() == b"top"
    assert (layer_dir(store, sha(TOP)) / "app").exists()

    release_rootfs(one)
    assert not os.path.ismount(root1)
    assert not (one / "rootfs").exists() and not (one / "upper").exists()
    assert not (one / "work").exists()
    release_rootfs(one)  # idempotent
    assert (root2 / "etc/motd").read_bytes() == b"top"


def test_single_layer_image_still_overlaid(
    store: ContentStore, tmp_path: Path, container_dirs: list[Path]
) -> None:
    digest = add_image(store, [BASE], kind="none")
    container_dirs.append(tmp_path / "c")
    root = prepare_rootfs(store, digest, tmp_path / "c")
    assert prepare_rootfs(store, digest, tmp_path / "c") == root  # re-adoption: same mount
    (root / "etc/motd").write_bytes(b"mine")
    assert (layer_dir(store, sha(BASE)) / "etc/motd").read_bytes() == b"base"


def test_long_lowerdir_list_falls_back(
    store: ContentStore,
    tmp_path: Path,
    container_dirs: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rootfs_mod, "_MAX_OPTIONS", 10)
    layers = [
        tar_bytes([file(f"f{i}", str(i).encode()), file("who", str(i).encode())]) for i in range(5)
    ]
    add_image(store, layers, "many:1")
    container_dirs.append(tmp_path / "c")
    root = prepare_rootfs(store, "many:1", tmp_path / "c")
    assert sorted(p.name for p in root.iterdir()) == ["f0", "f1", "f2", "f3", "f4", "who"]
    assert (root / "who").read_bytes() == b"4"  # the top layer wins


def test_missing_image_leaves_nothing(store: ContentStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        prepare_rootfs(store, "nope:1", tmp_path / "c")
    assert not (tmp_path / "c" / "rootfs").exists()
