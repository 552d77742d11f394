"""The content store: verified blob writes that leave nothing behind, tags, and gc."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from shoal.images.manifest import OCI_INDEX, Descriptor, ImageIndex, Platform
from shoal.model.errors import Invalid, NotFound
from tests.images.layers import add_image, file, sha, tar_bytes


def leftovers(store: ContentStore) -> list[Path]:
    return list(store.blobs.iterdir()) + list(store.ingest.iterdir())


def test_write_and_read_blob(store: ContentStore) -> None:
    digest = store.write_blob([b"hello ", b"world"], sha(b"hello world"), 11)
    assert digest == sha(b"hello world")
    assert store.has_blob(digest)
    assert store.read_blob(digest) == b"hello world"
    assert store.blob_path(digest) == store.root / "blobs" / "sha256" / digest[7:]
    assert (store.root / "oci-layout").exists()
    assert store.write_blob([b"hello world"]) == digest  # second write finds it present
    assert len(list(store.blobs.iterdir())) == 1


def test_wrong_digest_leaves_nothing(store: ContentStore) -> None:
    wrong = sha(b"something else")
    with pytest.raises(Invalid) as caught:
        store.write_blob([b"corrupt"], wrong)
    assert wrong in str(caught.value) and sha(b"corrupt") in str(caught.value)
    assert leftovers(store) == []


def test_short_and_long_writes_leave_nothing(store: ContentStore) -> None:
    with pytest.raises(Invalid, match="expected 10 bytes, got 5"):
        store.write_blob([b"12345"], sha(b"1234567890"), 10)
    with pytest.raises(Invalid, match="larger than expected"):
        store.write_blob([b"12345", b"67890"], None, 6)
    assert leftovers(store) == []


def test_failing_source_leaves_nothing(store: ContentStore) -> None:
    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise ConnectionError("peer went away")

    with pytest.raises(ConnectionError):
        store.write_blob(broken(), sha(b"partial data"))
    assert leftovers(store) == []


def test_malformed_digest_refused(store: ContentStore) -> None:
    with pytest.raises(Invalid):
        store.write_blob([b"x"], "md5:abc")
    with pytest.raises(Invalid):
        store.has_blob("sha256:../../etc/passwd")


def test_concurrent_writes_of_one_blob(store: ContentStore) -> None:
    data = b"x" * 300_000
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.write_blob([data], sha(data))))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [sha(data)] * 8
    assert len(list(store.blobs.iterdir())) == 1 and list(store.ingest.iterdir()) == []


def test_tags_normalised_and_persisted(store: ContentStore) -> None:
    digest = add_image(store, [tar_bytes([file("a", b"1")])])
    store.set_tag("busybox", digest)
    store.set_tag("localhost:5000/team/app:v1", digest)
    assert store.list_tags() == {
        "docker.io/library/busybox:latest": digest,
        "localhost:5000/team/app:v1": digest,
    }
    assert store.resolve("busybox:latest") == digest
    assert store.resolve("docker.io/library/busybox") == digest
    assert store.resolve(digest) == digest
    assert store.resolve(f"busybox@{digest}") == digest
    assert ContentStore(store.root).resolve("busybox") == digest  # survives a restart
    store.remove_tag("busybox")
    with pytest.raises(NotFound) as caught:
        store.resolve("busybox")
    assert caught.value.hint and "image ls" in caught.value.hint
    with pytest.raises(NotFound):
        store.remove_tag("busybox")


def test_tag_needs_the_manifest(store: ContentStore) -> None:
    with pytest.raises(NotFound):
        store.set_tag("app:v1", sha(b"not written"))
    with pytest.raises(Invalid):
        store.set_tag("app@" + sha(b"x"), sha(b"x"))


def test_gc_frees_unreachable_blobs(store: ContentStore) -> None:
    shared = tar_bytes([file("shared", b"s" * 1000)])
    keep = add_image(store, [shared], "keep:1")
    drop = add_image(store, [shared, tar_bytes([file("own", b"o" * 5000)])], "drop:1")
    stray = store.write_blob([b"stray"])
    before = {p.name for p in store.blobs.iterdir()}
    assert store.gc(min_age=3600) == 0  # everything is young
    store.remove_tag("drop:1")
    freed = store.gc()
    after = {p.name for p in store.blobs.iterdir()}
    assert freed > 5 and not store.has_blob(stray) and not store.has_blob(drop)
    assert store.has_blob(keep) and len(after) == 3  # manifest, config, shared layer
    assert after < before


def test_gc_walks_indexes(store: ContentStore) -> None:
    child = add_image(store, [tar_bytes([file("x", b"x")])])
    index = ImageIndex(
        mediaType=OCI_INDEX,
        manifests=[
            Descriptor(
                mediaType="application/vnd.oci.image.manifest.v1+json",
                digest=child,
                size=store.blob_size(child),
                platform=Platform(os="linux", architecture="amd64"),
            )
        ],
    )
    top = store.write_blob([index.to_json()])
    store.set_tag("multi:1", top)
    assert store.gc() == 0
    assert store.has_blob(child)
    assert store.referenced_blobs() >= {top, child}
