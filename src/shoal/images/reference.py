"""Image references parsed and normalised the way Docker does it.

`nginx` → `docker.io/library/nginx:latest`, `user/app` → `docker.io/user/app:latest`,
`localhost:5000/a/b:v1`, `name@sha256:…` and `name:tag@sha256:…`. The first path component is a
registry host when it contains `.` or `:` or is `localhost`; otherwise the image is on Docker Hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shoal.model.errors import Invalid

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DEFAULT_TAG = "latest"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([A-Za-z0-9=_-]{32,})")
_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference; `str()` gives the canonical form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def endpoint(self) -> str:
        """Host (and port) to talk to: Docker Hub's API lives on another name than its brand."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """`registry/repository` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def locator(self) -> str:
        """What goes after `/manifests/`: the digest when known (it pins content), else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, parse_digest(digest))

    def with_repository(self, repository: str) -> Reference:
        return Reference(self.registry, repository, self.tag, self.digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_digest(text: str) -> str:
    """Validate `algorithm:hex`; known algorithms must have the right hex length."""
    m = _DIGEST.fullmatch(text)
    if not m:
        raise Invalid(f"invalid digest {text!r}", hint="a digest looks like sha256:<64 hex digits>")
    algo, hexpart = m.groups()
    want = _HEX.get(algo)
    if want is not None and (len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart)):
        raise Invalid(
            f"invalid {algo} digest {text!r}: expected {want} lowercase hex digits",
            hint="copy the digest exactly as the registry printed it",
        )
    return text


def _split_host(rest: str) -> tuple[str, str]:
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise Invalid(f"invalid registry host {first!r}")
        host = first
        if host in _HUB_ALIASES:
            host = DOCKER_HUB
        return host, remainder
    return DOCKER_HUB, rest


def parse_reference(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise an image reference; raises `Invalid` naming what is wrong.

    A reference with a digest and no tag keeps no tag; otherwise a missing tag becomes
    `default_tag` (pass None to keep it absent, e.g. for `image ls` filters).
    """
    hint = "an image reference looks like [registry/]name[:tag][@sha256:digest], e.g. nginx:1.27"
    raw = text
    text = text.strip()
    if not text:
        raise Invalid("empty image reference", hint=hint)
    if any(c.isspace() for c in text):
        raise Invalid(f"invalid image reference {raw!r}: contains whitespace", hint=hint)
    digest: str | None = None
    if "@" in text:
        text, _, digest_text = text.partition("@")
        digest = parse_digest(digest_text)
    tag: str | None = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise Invalid(
                f"invalid tag {tag!r} in image reference {raw!r}",
                hint="tags use letters, digits, '_', '.', '-' (max 128, not starting with . or -)",
            )
    registry, repository = _split_host(text)
    if not repository:
        raise Invalid(f"invalid image reference {raw!r}: repository name is empty", hint=hint)
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    for component in repository.split("/"):
        if _COMPONENT.fullmatch(component):
            continue
        if _COMPONENT.fullmatch(component.lower()):
            raise Invalid(
                f"invalid image reference {raw!r}: repository name must be lowercase",
                hint=f"use {component.lower()!r}",
            )
        raise Invalid(
            f"invalid image reference {raw!r}: bad path component {component!r}",
            hint="components use lowercase letters, digits and single separators . _ __ -",
        )
    if len(f"{registry}/{repository}") > _MAX_NAME:
        raise Invalid(f"invalid image reference {raw!r}: name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, repository, tag, digest)


def is_loopback(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1, with or without a port."""
    if host.startswith("["):
        bare = host[1:].partition("]")[0]
    else:
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return bare == "localhost" or bare.startswith("127.") or bare == "::1"
