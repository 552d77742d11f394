"""Registry auth: config.json credentials, WWW-Authenticate parsing, the Bearer token flow."""

from __future__ import annotations

import asyncio
import base64
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shoal.images.auth import Authenticator, Credentials, load_credentials, parse_www_authenticate
from shoal.images.registry import RegistryClient, RetryPolicy
from shoal.model.errors import Invalid, Unauthorized
from tests.images.registry_server import (
    FakeRegistry,
    build_image,
    make_store,
    path_tail,
    reply,
    serve_image,
)


def write_config(path: Path, auths: dict[str, object]) -> Path:
    path.write_text(json.dumps({"auths": auths}))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_credentials_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(
        tmp_path / "c.json",
        {
            "https://index.docker.io/v1/": {"auth": b64("hub:pw:with:colons")},
            "reg.example.com:5000": {"username": "u", "password": "p"},
            "http://127.0.0.1:5000": {"auth": b64("local:x")},
            "empty.example.com": {},
        },
    )
    assert load_credentials("docker.io", cfg) == Credentials("hub", "pw:with:colons")
    assert load_credentials("registry-1.docker.io", cfg) == Credentials("hub", "pw:with:colons")
    assert load_credentials("reg.example.com:5000", cfg) == Credentials("u", "p")
    assert load_credentials("127.0.0.1:5000", cfg) == Credentials("local", "x")
    assert load_credentials("empty.example.com", cfg) is None
    assert load_credentials("other.example.com", cfg) is None
    assert load_credentials("docker.io", tmp_path / "missing.json") is None
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(cfg.read_text())
    assert load_credentials("reg.example.com:5000") == Credentials("u", "p")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"auths": ', r"c\.json:1:\d+: not valid JSON"),
        ('{"auths": {"h": {"auth": "***"}}}', "not base64"),
        ('{"auths": {"h": {"auth": "' + b64("nocolon") + '"}}}', "no ':'"),
    ],
)
def test_broken_config(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(Invalid, match=message):
        load_credentials("h", tmp_path / "c.json")


def test_parse_www_authenticate() -> None:
    c = parse_www_authenticate(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_www_authenticate('Basic realm="x \\"y\\""').params == {"realm": 'x "y"'}
    assert parse_www_authenticate("Bearer realm=http://h/t, service=s").params["service"] == "s"


class TokenRegistry:
    """A registry that wants `Bearer tok-N`, and its token service (Basic alice:pw)."""

    def __init__(self, served: object, ttl: int = 300) -> None:
        self.route = None
        self.token_queries: list[dict[str, list[str]]] = []
        self.issued = 0
        self.ttl = ttl
        self.served = served
        self.host = ""

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        if url.path == "/token":
            if h.headers.get("Authorization") != "Basic " + b64("alice:pw"):
                reply(h, 401)
                return
            self.token_queries.append(parse_qs(url.query))
            self.issued += 1
            body = {"token": f"tok-{self.issued}", "expires_in": self.ttl}
            reply(h, 200, json.dumps(body).encode())
            return
        if h.headers.get("Authorization") != f"Bearer tok-{self.issued}" or not self.issued:
            challenge = (
                f'Bearer realm="http://{self.host}/token",service="fake",'
                'scope="repository:team/app:pull"'
            )
            reply(h, 401, headers={"WWW-Authenticate": challenge})
            return
        tail = path_tail(h)
        manifests, blobs = self.served.manifests, self.served.blobs  # type: ignore[attr-defined]
        if tail in manifests:
            media, body_bytes = manifests[tail]
            reply(h, 200, body_bytes, {"Content-Type": media})
        else:
            reply(h, 200, blobs[tail])


def test_bearer_token_flow(tmp_path: Path) -> None:
    image = build_image(make_store(tmp_path / "src"), [1000, 2000, 3000])
    registry = TokenRegistry(serve_image(image))
    dst = make_store(tmp_path / "dst")
    with FakeRegistry(registry) as fake:
        registry.host = fake.host
        cfg = write_config(tmp_path / "c.json", {fake.host: {"auth": b64("alice:pw")}})

        async def main() -> None:
            async with RegistryClient(config_path=cfg, retry=RetryPolicy(base_delay=0.01)) as rc:
                await rc.pull(f"{fake.host}/team/app:v1", dst)

        asyncio.run(main())
    assert registry.issued == 1  # one token serves the manifest and all four blobs
    assert registry.token_queries == [{"service": ["fake"], "scope": ["repository:team/app:pull"]}]
    assert dst.read_blob(image.layers[2][0]) == image.layers[2][1]


def test_bearer_token_refused(tmp_path: Path) -> None:
    image = build_image(make_store(tmp_path / "src"), [10])
    registry = TokenRegistry(serve_image(image))
    with FakeRegistry(registry) as fake:
        registry.host = fake.host
        cfg = write_config(tmp_path / "c.json", {fake.host: {"auth": b64("alice:wrong")}})

        async def main() -> None:
            async with RegistryClient(config_path=cfg) as rc:
                await rc.pull(f"{fake.host}/team/app:v1", make_store(tmp_path / "dst"))

        with pytest.raises(Unauthorized, match="refused the credentials") as info:
            asyncio.run(main())
    assert "config.json" in (info.value.hint or "")


def test_token_cache_expires(tmp_path: Path) -> None:
    registry = TokenRegistry(None, ttl=60)
    now = [1000.0]
    with FakeRegistry(registry) as fake:
        auth = Authenticator(fake.host, Credentials("alice", "pw"), clock=lambda: now[0])
        assert auth.learn(f'Bearer realm="http://{fake.host}/token",service="fake"')

        async def main() -> list[str | None]:
            async with httpx.AsyncClient() as http:
                scopes = ("repository:a:pull",)
                first = await auth.header(http, scopes)
                again = await auth.header(http, scopes)
                other = await auth.header(http, ("repository:b:pull",))
                now[0] += 120  # past expiry
                late = await auth.header(http, scopes)
                return [first, again, other, late]

        headers = asyncio.run(main())
    assert headers == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2", "Bearer tok-3"]
