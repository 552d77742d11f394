"""Registry client against a misbehaving fake registry: errors are clear, the store stays clean."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from shoal.images.registry import RegistryClient, RetryPolicy
from shoal.model.errors import Invalid, NotFound, Unauthorized, Unavailable
from tests.images.registry_server import (
    FakeRegistry,
    Image,
    Served,
    build_image,
    drop,
    free_port,
    make_store,
    path_tail,
    reply,
    serve_image,
)

Route = Callable[[BaseHTTPRequestHandler], None]


def pull(host: str, store: Any, ref: str = "team/app:v1", attempts: int = 3, **kwargs: Any) -> Any:
    async def main() -> Any:
        policy = RetryPolicy(attempts=attempts, base_delay=0.01)
        async with RegistryClient(retry=policy, **kwargs) as rc:
            return await rc.pull(f"{host}/{ref}", store)

    return asyncio.run(main())


def serving(served: Served, blob_hook: Route | None = None) -> Route:
    """A well-behaved read-only registry, except where `blob_hook` answers a blob GET."""

    def route(h: BaseHTTPRequestHandler) -> None:
        tail = path_tail(h)
        if "/manifests/" in h.path and tail in served.manifests:
            media, body = served.manifests[tail]
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            reply(h, 200, body, {"Content-Type": media, "Docker-Content-Digest": digest})
        elif "/blobs/" in h.path and tail in served.blobs:
            if blob_hook is not None and h.command == "GET":
                blob_hook(h)
            else:
                reply(h, 200, served.blobs[tail])
        else:
            reply(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')

    return route


def assert_clean(store: Any, image: Image, bad: str | None = None) -> None:
    """Every stored blob is whole and verified; no temp files; no manifest and no tag."""
    root: Path = store.root
    for path in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    leftovers = [
        p for p in root.rglob("*") if (p.is_file() and "tmp" in p.name) or "blob-" in p.name
    ]
    assert leftovers == []
    if (root / "ingest").exists():
        assert list((root / "ingest").iterdir()) == []
    assert not store.has_blob(image.manifest_digest)
    assert store.list_tags() == {}
    if bad:
        assert not store.has_blob(bad)


@pytest.fixture
def image(tmp_path: Path) -> Image:
    return build_image(make_store(tmp_path / "src"), [50_000, 3_000])


def test_pull_from_fake_works(image: Image, tmp_path: Path) -> None:
    dst = make_store(tmp_path / "dst")
    with FakeRegistry(serving(serve_image(image))) as fake:
        result = pull(fake.host, dst)
    assert result.digest == image.manifest_digest
    assert dst.read_blob(image.layers[0][0]) == image.layers[0][1]


def test_always_500_is_unavailable(tmp_path: Path) -> None:
    with (
        FakeRegistry(lambda h: reply(h, 500, b"boom")) as fake,
        pytest.raises(Unavailable, match="HTTP 500") as info,
    ):
        pull(fake.host, make_store(tmp_path / "dst"))
    assert len(fake.requests) == 3  # bounded retries
    assert info.value.hint


def test_transient_500_and_429_are_retried(image: Image, tmp_path: Path) -> None:
    answers = iter([500, 429, 503])
    good = serving(serve_image(image))

    def flaky(h: BaseHTTPRequestHandler) -> None:
        status = next(answers, None)
        if status is None:
            good(h)
        else:
            reply(h, status, b"", {"Retry-After": "0"} if status == 429 else {})

    dst = make_store(tmp_path / "dst")
    with FakeRegistry(flaky) as fake:
        result = pull(fake.host, dst, attempts=4)
    assert result.digest == image.manifest_digest


def test_connection_refused_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="cannot reach registry") as info:
        pull(f"127.0.0.1:{free_port()}", make_store(tmp_path / "dst"))
    assert "registry runs" in (info.value.hint or "")


def test_dropped_blob_connection(image: Image, tmp_path: Path) -> None:
    dst = make_store(tmp_path / "dst")
    big, data = image.layers[0]

    def hook(h: BaseHTTPRequestHandler) -> None:
        if path_tail(h) == big:
            drop(h, data[:10_000], len(data))  # half a body, then the connection goes
        else:
            reply(h, 200, serve_image(image).blobs[path_tail(h)])

    with (
        FakeRegistry(serving(serve_image(image), hook)) as fake,
        pytest.raises(Unavailable, match=f"download blob {big}"),
    ):
        pull(fake.host, dst)
    assert sum(1 for m, p in fake.requests if m == "GET" and big in p) == 3
    assert_clean(dst, image, bad=big)


def test_drop_before_answer_then_recover(image: Image, tmp_path: Path) -> None:
    dst = make_store(tmp_path / "dst")
    dropped: list[str] = []

    def hook(h: BaseHTTPRequestHandler) -> None:
        if not dropped:
            dropped.append(h.path)
            drop(h)
        else:
            reply(h, 200, serve_image(image).blobs[path_tail(h)])

    with FakeRegistry(serving(serve_image(image), hook)) as fake:
        result = pull(fake.host, dst)
    assert dropped and result.fetched_blobs == 3


@pytest.mark.parametrize("corruption", ["flipped", "longer", "shorter"])
def test_corrupt_blob_is_invalid_and_not_stored(
    image: Image, tmp_path: Path, corruption: str
) -> None:
    dst = make_store(tmp_path / "dst")
    big, data = image.layers[0]
    bad = {
        "flipped": bytes([data[0] ^ 1]) + data[1:],
        "longer": data + b"extra",
        "shorter": data[:-1],
    }[corruption]

    def hook(h: BaseHTTPRequestHandler) -> None:
        body = bad if path_tail(h) == big else serve_image(image).blobs[path_tail(h)]
        reply(h, 200, body)

    with (
        FakeRegistry(serving(serve_image(image), hook)) as fake,
        pytest.raises(Invalid, match=big) as info,
    ):
        pull(fake.host, dst)
    assert "nothing was stored" in (info.value.hint or "")
    assert sum(1 for m, p in fake.requests if m == "GET" and big in p) == 1  # not retried
    assert_clean(dst, image, bad=big)


def test_manifest_with_wrong_digest(image: Image, tmp_path: Path) -> None:
    served = serve_image(image)
    other = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    served.manifests[image.manifest_digest] = (served.manifests["v1"][0], other)
    dst = make_store(tmp_path / "dst")
    with (
        FakeRegistry(serving(served)) as fake,
        pytest.raises(Invalid, match="whose digest is"),
    ):
        pull(fake.host, dst, ref=f"team/app@{image.manifest_digest}")
    assert_clean(dst, image)


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (401, Unauthorized, "authentication required"),
        (403, Unauthorized, "denied access"),
        (404, NotFound, "team/app:v1 not found"),
        (400, Invalid, "HTTP 400"),
    ],
)
def test_status_errors(tmp_path: Path, status: int, error: type[Exception], message: str) -> None:
    with (
        FakeRegistry(lambda h: reply(h, status)) as fake,
        pytest.raises(error, match=message) as info,
    ):
        pull(fake.host, make_store(tmp_path / "dst"), config_path=tmp_path / "none.json")
    assert len(fake.requests) == 1
    if status != 400:
        assert getattr(info.value, "hint", None)


class UploadFake:
    """Accepts blob uploads (POST, PATCH, PUT ?digest=) and fails the first PATCH with 500."""

    def __init__(self) -> None:
        self.sessions: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.failed = False

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        path, _, query = h.path.partition("?")
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if h.command == "HEAD":
            reply(h, 200 if path_tail(h) in self.blobs else 404)
        elif h.command == "POST":
            sid = str(len(self.sessions))
            self.sessions[sid] = b""
            reply(h, 202, headers={"Location": f"{path}{sid}?_state=s{sid}"})
        elif h.command == "PATCH":
            if not self.failed:
                self.failed = True
                reply(h, 500)
                return
            sid = path_tail(h)
            self.sessions[sid] += body
            reply(h, 202, headers={"Location": f"{path}?_state=n{sid}"})
        elif h.command == "PUT" and "/blobs/uploads/" in path:
            digest = query.split("digest=")[1].replace("%3A", ":")
            data = self.sessions[path_tail(h)] + body
            ok = "_state=" in query and "sha256:" + hashlib.sha256(data).hexdigest() == digest
            self.blobs[digest] = data
            reply(h, 201 if ok else 400)
        else:
            reply(h, 201)


def test_push_restarts_an_upload_that_failed(image: Image, tmp_path: Path) -> None:
    src = make_store(tmp_path / "src2")
    img = build_image(src, [2000])
    fake_route = UploadFake()
    with FakeRegistry(fake_route) as fake:
        ref = f"{fake.host}/team/app:v1"
        src.set_tag(ref, img.manifest_digest)

        async def main() -> str:
            async with RegistryClient(retry=RetryPolicy(base_delay=0.01), parallel=1) as rc:
                return await rc.push(ref, src)

        assert asyncio.run(main()) == img.manifest_digest
    posts = [p for m, p in fake.requests if m == "POST"]
    assert len(posts) == 3  # two blobs, plus one fresh session after the failed PATCH
    assert fake_route.blobs[img.layers[0][0]] == img.layers[0][1]
