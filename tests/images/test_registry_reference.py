"""Image reference parsing and normalisation, as a table."""

from __future__ import annotations

import pytest

from shoal.images.reference import Reference, is_loopback, parse_reference
from shoal.model.errors import Invalid

D = "sha256:" + "a" * 64

GOOD = [
    ("nginx", "docker.io", "library/nginx", "latest", None, "docker.io/library/nginx:latest"),
    ("nginx:1.27", "docker.io", "library/nginx", "1.27", None, "docker.io/library/nginx:1.27"),
    ("user/app", "docker.io", "user/app", "latest", None, "docker.io/user/app:latest"),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None, None),
    ("index.docker.io/library/nginx", "docker.io", "library/nginx", "latest", None, None),
    ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest"),
    ("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", None, None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None, None),
    ("ghcr.io/o/r/deep/name:v_1.2-rc", "ghcr.io", "o/r/deep/name", "v_1.2-rc", None, None),
    (f"nginx@{D}", "docker.io", "library/nginx", None, D, f"docker.io/library/nginx@{D}"),
    (f"nginx:1.27@{D}", "docker.io", "library/nginx", "1.27", D, None),
    ("Registry.Example.COM/app", "Registry.Example.COM", "app", "latest", None, None),
    ("a__b/c-d.e", "docker.io", "a__b/c-d.e", "latest", None, None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None, None),
]


@pytest.mark.parametrize(("text", "registry", "repo", "tag", "digest", "canonical"), GOOD)
def test_parse_good(
    text: str, registry: str, repo: str, tag: str | None, digest: str | None, canonical: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)
    if canonical:
        assert str(ref) == canonical
    assert parse_reference(str(ref)) == ref  # canonical form is a fixed point


BAD = [
    ("", "empty"),
    ("Nginx", "must be lowercase"),
    ("user/App:1", "must be lowercase"),
    ("nginx:-bad", "invalid tag"),
    ("nginx:" + "x" * 129, "invalid tag"),
    ("nginx@sha256:abc", "invalid digest"),
    ("nginx@sha256:" + "A" * 64, "expected 64"),
    ("nginx@md5", "invalid digest"),
    ("a//b", "bad path component"),
    ("a/-b", "bad path component"),
    ("a b", "whitespace"),
    ("localhost:5000/", "repository name is empty"),
    ("bad_host.com/app", "invalid registry host"),
    ("x/" * 130 + "y", "longer than 255"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_parse_bad(text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_reference(text)


def test_endpoint_and_locator() -> None:
    hub = parse_reference("nginx")
    assert hub.endpoint == "registry-1.docker.io"
    assert hub.locator == "latest"
    pinned = parse_reference(f"localhost:5000/app:v1@{D}")
    assert pinned.endpoint == "localhost:5000"
    assert pinned.locator == D
    assert parse_reference("app", default_tag=None) == Reference("docker.io", "library/app")


@pytest.mark.parametrize(
    ("host", "loop"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.3.4.5", True),
        ("[::1]:5000", True),
        ("registry-1.docker.io", False),
        ("10.0.0.1:5000", False),
    ],
)
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop
