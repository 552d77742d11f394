"""Unpacking layers into shared lower dirs: whiteouts, links, refusals, corruption, once-only."""

from __future__ import annotations

import gzip
import os
import stat
import threading
from pathlib import Path

import pytest

from shoal.images import unpack
from shoal.images.content import ContentStore
from shoal.images.manifest import OCI_LAYER, OCI_LAYER_GZIP, Descriptor
from shoal.images.unpack import layer_dir, unpack_layer
from shoal.model.errors import Invalid
from tests.images.layers import (
    Entry,
    compress,
    directory,
    file,
    hardlink,
    sha,
    symlink,
    tar_bytes,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and owners need root")


def put(store: ContentStore, tar: bytes, kind: str = "gzip") -> tuple[Descriptor, str]:
    blob, media_type = compress(tar, kind)
    digest = store.write_blob([blob])
    return Descriptor(mediaType=media_type, digest=digest, size=len(blob)), sha(tar)


def nothing_left(store: ContentStore) -> bool:
    return [p.name for p in store.layers.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_unpack_preserves_everything(store: ContentStore, kind: str) -> None:
    if kind == "zstd":
        pytest.importorskip("zstandard")
    tar = tar_bytes(
        [
            directory("etc", mode=0o750, uid=7, gid=8),
            file("etc/passwd", b"root:x:0:0\n", mode=0o640, uid=7, gid=8),
            file("usr/bin/su", b"#!", mode=0o4755),
            hardlink("usr/bin/su2", "usr/bin/su"),
            symlink("bin", "usr/bin"),
            symlink("etc/abs", "/etc/passwd"),
            file("caps", b"", pax={"SCHILY.xattr.user.note": "hi"}),
            Entry("dev/null", type=b"3", mode=0o666),
        ]
    )
    path = unpack_layer(store, *put(store, tar, kind))
    assert path == layer_dir(store, sha(tar))
    etc = os.lstat(path / "etc")
    assert stat.S_IMODE(etc.st_mode) == 0o750 and (etc.st_uid, etc.st_gid) == (7, 8)
    assert etc.st_mtime == 1_700_000_000
    assert (path / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert stat.S_IMODE(os.lstat(path / "usr/bin/su").st_mode) == 0o4755
    assert os.lstat(path / "usr/bin/su").st_ino == os.lstat(path / "usr/bin/su2").st_ino
    assert os.readlink(path / "bin") == "usr/bin" and os.readlink(path / "etc/abs") == "/etc/passwd"
    assert stat.S_ISCHR(os.lstat(path / "dev/null").st_mode)
    assert os.getxattr(path / "caps", "user.note") == b"hi"


def test_whiteouts_and_opaque_dirs(store: ContentStore) -> None:
    tar = tar_bytes(
        [
            directory("var"),
            file("var/.wh.gone"),
            directory("opt/app"),
            file("opt/app/.wh..wh..opq"),
            file("opt/app/new", b"n"),
            file("deep/dir/.wh.x"),  # parents not in the tar: created
        ]
    )
    path = unpack_layer(store, *put(store, tar))
    gone = os.lstat(path / "var/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == os.makedev(0, 0)
    assert not (path / "var/.wh.gone").exists()
    assert os.getxattr(path / "opt/app", "trusted.overlay.opaque") == b"y"
    assert not (path / "opt/app/.wh..wh..opq").exists()
    assert (path / "opt/app/new").read_bytes() == b"n"
    assert stat.S_ISCHR(os.lstat(path / "deep/dir/x").st_mode)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([file("../escape", b"x")], "climbs out"),
        ([file("a/../../escape", b"x")], "climbs out"),
        ([file("/etc/evil", b"x")], "absolute path"),
        ([symlink("link", "/"), file("link/escape", b"x")], "goes through the symlink"),
        ([symlink("up", "../../.."), file("up/escape", b"x")], "goes through the symlink"),
        ([hardlink("h", "../../etc/passwd")], "climbs out"),
        ([symlink("s", "/etc"), hardlink("h", "s/passwd")], "goes through the symlink"),
        ([hardlink("h", "missing")], "not in this layer"),
    ],
)
def test_traversal_refused(
    store: ContentStore, tmp_path: Path, entries: list[Entry], message: str
) -> None:
    layer, diff_id = put(store, tar_bytes([file("ok", b"1"), *entries]))
    with pytest.raises(Invalid, match=message):
        unpack_layer(store, layer, diff_id)
    assert nothing_left(store)
    assert not (tmp_path / "escape").exists() and not (store.root / "escape").exists()
    assert not Path("/escape").exists() and not Path("/etc/evil").exists()


def test_truncated_gzip_refused(store: ContentStore) -> None:
    tar = tar_bytes([file("big", os.urandom(200_000))])
    blob = gzip.compress(tar)[:-5000]
    layer = Descriptor(mediaType=OCI_LAYER_GZIP, digest=store.write_blob([blob]), size=len(blob))
    with pytest.raises(Invalid, match="corrupt or truncated"):
        unpack_layer(store, layer, sha(tar))
    assert nothing_left(store)


def test_truncated_plain_tar_refused(store: ContentStore) -> None:
    tar = tar_bytes([file("big", os.urandom(50_000)), file("second", b"2")])
    blob = tar[:30_000]
    layer = Descriptor(mediaType=OCI_LAYER, digest=store.write_blob([blob]), size=len(blob))
    with pytest.raises(Invalid):
        unpack_layer(store, layer, sha(tar))
    assert nothing_left(store)


def test_wrong_diff_id_refused(store: ContentStore) -> None:
    layer, _ = put(store, tar_bytes([file("a", b"1")]))
    wrong = sha(b"another tar")
    with pytest.raises(Invalid) as caught:
        unpack_layer(store, layer, wrong)
    assert wrong in str(caught.value)
    assert nothing_left(store)


def test_not_a_layer_media_type(store: ContentStore) -> None:
    layer, diff_id = put(store, tar_bytes([file("a")]))
    weird = layer.model_copy(update={"mediaType": "application/vnd.oci.image.config.v1+json"})
    with pytest.raises(Invalid, match="not a layer"):
        unpack_layer(store, weird, diff_id)


def test_concurrent_unpack_done_once(store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    tar = tar_bytes([file(f"f{i}", os.urandom(20_000)) for i in range(50)])
    layer, diff_id = put(store, tar)
    calls: list[int] = []
    real = unpack.extract_layer

    def counting(*args: object) -> None:
        calls.append(1)
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(unpack, "extract_layer", counting)
    results: list[Path] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        results.append(unpack_layer(store, layer, diff_id))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [layer_dir(store, diff_id)] * 8
    assert len(list(layer_dir(store, diff_id).iterdir())) == 50
