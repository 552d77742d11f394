"""Registry client against the real docker-registry on loopback: push, pull, skip, chunks, mount."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shoal.images.registry import PullResult, RegistryClient, RetryPolicy
from shoal.model.errors import NotFound, Unauthorized
from tests.images.registry_server import (
    RegistryServer,
    build_image,
    build_index,
    files_under,
    make_store,
)

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("htpasswd") is None,
    reason="needs Debian packages docker-registry and apache2-utils",
)


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="module")
def secured() -> Iterator[RegistryServer]:
    with RegistryServer(user="alice", password="s3cret") as server:
        yield server


class Recorder:
    """Counts requests through an httpx event hook: (method, path, query, status)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, int]] = []

    async def hook(self, resp: httpx.Response) -> None:
        req = resp.request
        self.seen.append((req.method, req.url.path, req.url.query.decode(), resp.status_code))

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(event_hooks={"response": [self.hook]}, follow_redirects=True)

    def count(self, method: str, part: str = "") -> int:
        return sum(1 for m, p, q, _ in self.seen if m == method and part in p + "?" + q)


def run_client(
    coro_fn: Callable[[RegistryClient], Awaitable[T]],
    recorder: Recorder | None = None,
    **kwargs: Any,
) -> T:
    """Run `coro_fn(client)` in a fresh loop; the client (and its http pool) dies with it."""

    async def main() -> T:
        http = recorder.client() if recorder else None
        try:
            async with RegistryClient(
                retry=RetryPolicy(base_delay=0.01), http=http, **kwargs
            ) as rc:
                return await coro_fn(rc)
        finally:
            if http is not None:
                await http.aclose()

    return asyncio.run(main())


def test_push_then_pull_roundtrip(registry: RegistryServer, tmp_path: Path) -> None:
    src, dst = make_store(tmp_path / "src"), make_store(tmp_path / "dst")
    image = build_image(src, [3000, 70_000, 1])
    ref = f"{registry.host}/team/app:v1"
    src.set_tag(ref, image.manifest_digest)
    progress: dict[str, tuple[int, int]] = {}

    async def go(rc: RegistryClient) -> tuple[str, PullResult]:
        pushed = await rc.push(ref, src)
        pulled = await rc.pull(ref, dst, progress=lambda d, n, t: progress.__setitem__(d, (n, t)))
        return pushed, pulled

    pushed, result = run_client(go)
    assert pushed == image.manifest_digest
    assert (
        result.digest == image.manifest_digest and result.manifest_digest == image.manifest_digest
    )
    assert result.fetched_blobs == 4
    assert dst.resolve(ref) == image.manifest_digest
    for digest in [*image.blob_digests, image.manifest_digest]:
        assert dst.read_blob(digest) == src.read_blob(digest)
    for digest, data in image.layers:
        assert progress[digest] == (len(data), len(data))


def test_pull_by_digest_and_missing_tag(registry: RegistryServer, tmp_path: Path) -> None:
    src, dst = make_store(tmp_path / "src"), make_store(tmp_path / "dst")
    image = build_image(src, [500])
    src.set_tag(f"{registry.host}/bydigest/app:v1", image.manifest_digest)

    async def go(rc: RegistryClient) -> PullResult:
        await rc.push(f"{registry.host}/bydigest/app:v1", src)
        return await rc.pull(f"{registry.host}/bydigest/app@{image.manifest_digest}", dst)

    result = run_client(go)
    assert result.digest == image.manifest_digest
    assert dst.has_blob(image.layers[0][0])
    with pytest.raises(NotFound, match=r"bydigest/app:nope not found") as info:
        run_client(lambda rc: rc.pull(f"{registry.host}/bydigest/app:nope", dst))
    assert info.value.hint


def test_existing_blobs_are_skipped(registry: RegistryServer, tmp_path: Path) -> None:
    src = make_store(tmp_path / "src")
    image = build_image(src, [1000, 2000])
    ref = f"{registry.host}/skip/app:v1"
    src.set_tag(ref, image.manifest_digest)
    run_client(lambda rc: rc.push(ref, src))

    rec = Recorder()

    async def again(rc: RegistryClient) -> None:
        await rc.push(ref, src)
        await rc.pull(ref, src)  # the pulling store holds every blob: only the manifest travels

    run_client(again, rec)
    assert rec.count("HEAD", "/blobs/") == 3
    assert rec.count("POST") == rec.count("PATCH") == 0
    assert rec.count("GET", "/blobs/") == 0
    assert rec.count("GET", "/manifests/") == 1


def test_chunked_upload(registry: RegistryServer, tmp_path: Path) -> None:
    src, dst = make_store(tmp_path / "src"), make_store(tmp_path / "dst")
    image = build_image(src, [10_000])
    ref = f"{registry.host}/chunks/app:v1"
    src.set_tag(ref, image.manifest_digest)
    rec = Recorder()
    run_client(lambda rc: rc.push(ref, src), rec, chunk_size=1024)
    patches = [(p, q) for m, p, q, s in rec.seen if m == "PATCH" and s == 202]
    assert len(patches) == 10 + 1  # ten for the layer, one for the small config
    assert all("_state=" in q for _, q in patches)
    puts = [q for m, p, q, s in rec.seen if m == "PUT" and "/blobs/uploads/" in p]
    assert len(puts) == 2 and all("_state=" in q and "digest=sha256" in q for q in puts)
    run_client(lambda rc: rc.pull(ref, dst))
    assert dst.read_blob(image.layers[0][0]) == image.layers[0][1]


def test_cross_repo_mount(registry: RegistryServer, tmp_path: Path) -> None:
    src = make_store(tmp_path / "src")
    image = build_image(src, [4000, 5000])
    first, second, third = (f"{registry.host}/mount/{n}:v1" for n in ("one", "two", "three"))
    for ref in (first, second, third):
        src.set_tag(ref, image.manifest_digest)
    rec = Recorder()

    async def same_client(rc: RegistryClient) -> None:
        await rc.push(first, src)
        await rc.push(second, src)  # this client saw the blobs go to mount/one

    run_client(same_client, rec)
    before = len(rec.seen)
    run_client(lambda rc: rc.push(third, src, mount_from=["mount/one"]), rec)
    mounts = [(q, s) for m, _, q, s in rec.seen if m == "POST" and "mount=" in q]
    assert len(mounts) == 6 and all(s == 201 and "from=mount%2Fone" in q for q, s in mounts)
    assert rec.count("PATCH") == 3  # only the first push sent bytes
    assert any("mount=" in q for _, _, q, _ in rec.seen[before:])


def test_index_pull_selects_platform(registry: RegistryServer, tmp_path: Path) -> None:
    src, dst = make_store(tmp_path / "src"), make_store(tmp_path / "dst")
    amd, arm = build_image(src, [100], arch="amd64"), build_image(src, [200], arch="arm64")
    index = build_index(src, {"amd64": amd, "arm64": arm})
    ref = f"{registry.host}/multi/app:v1"
    src.set_tag(ref, index)
    run_client(lambda rc: rc.push(ref, src))

    result = run_client(lambda rc: rc.pull(ref, dst, platform="linux/arm64"))
    assert (result.digest, result.manifest_digest) == (index, arm.manifest_digest)
    assert dst.has_blob(arm.layers[0][0]) and not dst.has_blob(amd.layers[0][0])
    before = files_under(dst.root)
    with pytest.raises(NotFound, match="platform linux/s390x; the image offers: linux/amd64"):
        run_client(lambda rc: rc.pull(ref, dst, platform="linux/s390x"))
    assert files_under(dst.root) == before


def _docker_config(path: Path, host: str, entry: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"auths": {host: entry}}))
    return path / "config.json"


def test_htpasswd_registry(
    secured: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = make_store(tmp_path / "src"), make_store(tmp_path / "dst")
    image = build_image(src, [1234])
    ref = f"{secured.host}/private/app:v1"
    src.set_tag(ref, image.manifest_digest)
    nobody = tmp_path / "nobody.json"

    with pytest.raises(Unauthorized, match="authentication required") as info:
        run_client(lambda rc: rc.push(ref, src), config_path=nobody)
    assert "config.json" in (info.value.hint or "")

    wrong = _docker_config(tmp_path / "wrong", secured.host, {"username": "alice", "password": "x"})
    with pytest.raises(Unauthorized, match="authentication required") as info:
        run_client(lambda rc: rc.pull(ref, dst), config_path=wrong)
    assert "rejected" in (info.value.hint or "")

    token = base64.b64encode(b"alice:s3cret").decode()
    good = _docker_config(tmp_path / "good", f"http://{secured.host}", {"auth": token})
    assert run_client(lambda rc: rc.push(ref, src), config_path=good) == image.manifest_digest

    # username/password form, found through $DOCKER_CONFIG.
    env_dir = tmp_path / "env"
    _docker_config(env_dir, secured.host, {"username": "alice", "password": "s3cret"})
    monkeypatch.setenv("DOCKER_CONFIG", str(env_dir))
    result = run_client(lambda rc: rc.pull(ref, dst))
    assert dst.read_blob(image.layers[0][0]) == image.layers[0][1]
    assert result.fetched_blobs == 2
