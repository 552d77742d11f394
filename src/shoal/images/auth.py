"""Registry credentials and authorisation: Docker `config.json`, Basic auth, the Bearer token flow.

A registry that wants auth answers 401 with `WWW-Authenticate`. For `Basic` the client resends
with the user's credentials; for `Bearer realm=…,service=…,scope=…` it fetches a token from the
realm (with Basic credentials when it has some, anonymously otherwise) and caches it per scope
until it expires.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shoal.model.errors import Invalid, Unauthorized, Unavailable

_DEFAULT_TOKEN_TTL = 60.0  # the distribution spec's default when `expires_in` is absent
_EXPIRY_MARGIN = 5.0
_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def _host_key(key: str) -> str:
    """`https://index.docker.io/v1/` → `index.docker.io`: config keys may be URLs."""
    key = key.strip().lower()
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0]


def default_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def load_credentials(host: str, config_path: Path | None = None) -> Credentials | None:
    """Credentials for `host` from a Docker-style config.json, or None when there are none.

    Reads `auths.<host>.auth` (base64 `user:pass`) or `username`/`password`. Docker Hub is found
    under any of its names. A missing file means no credentials; a broken one is `Invalid`.
    """
    path = config_path or default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Invalid(f"cannot read registry credentials {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
            hint="fix the file or point $DOCKER_CONFIG at another directory",
        ) from exc
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = {_host_key(host)}
    if wanted & set(_HUB_KEYS):
        wanted |= set(_HUB_KEYS)
    for key, entry in auths.items():
        if _host_key(key) in wanted and isinstance(entry, dict):
            creds = _entry_credentials(entry, path, key)
            if creds is not None:
                return creds
    return None


def _entry_credentials(entry: dict[str, object], path: Path, key: str) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Invalid(
                f"{path}: auths.{key}.auth is not base64 of user:password",
                hint="log in again to rewrite the entry",
            ) from exc
        if not sep:
            raise Invalid(f"{path}: auths.{key}.auth has no ':' between user and password")
        return Credentials(user, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lowercase: "basic" or "bearer"
    params: dict[str, str]


def parse_www_authenticate(header: str) -> Challenge:
    """Parse `Bearer realm="…",service="…",scope="…"` (quoted or bare values)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        quoted, bare = m.group(2), m.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[m.group(1).lower()] = value
        pos = m.end()
    return Challenge(scheme.lower(), params)


@dataclass
class _Token:
    value: str
    expires_at: float


@dataclass
class Authenticator:
    """Authorisation state for one registry host, shared by all requests to it."""

    host: str
    credentials: Credentials | None = None
    clock: Callable[[], float] = time.monotonic
    challenge: Challenge | None = None
    _tokens: dict[tuple[str, ...], _Token] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # parallel layers share one fetch

    def learn(self, header: str | None) -> bool:
        """Record the registry's challenge; False when it cannot be answered (unknown scheme)."""
        if not header:
            return False
        challenge = parse_www_authenticate(header)
        if challenge.scheme == "basic" or (
            challenge.scheme == "bearer" and "realm" in challenge.params
        ):
            self.challenge = challenge
            return True
        return False

    def invalidate(self, scopes: tuple[str, ...]) -> None:
        self._tokens.pop(tuple(sorted(scopes)), None)

    async def header(self, http: httpx.AsyncClient, scopes: tuple[str, ...]) -> str | None:
        """The `Authorization` value for a request needing `scopes`, or None (not needed yet)."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            return self.credentials.basic_header() if self.credentials else None
        key = tuple(sorted(scopes))
        async with self._lock:
            cached = self._tokens.get(key)
            if cached is None or cached.expires_at <= self.clock():
                cached = self._tokens[key] = await self._fetch_token(http, self.challenge, key)
        return f"Bearer {cached.value}"

    async def _fetch_token(
        self, http: httpx.AsyncClient, challenge: Challenge, scopes: tuple[str, ...]
    ) -> _Token:
        realm = challenge.params["realm"]
        query: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        query.extend(("scope", s) for s in scopes)
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic_header()
        started = self.clock()
        try:
            resp = await http.get(realm, params=query, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the token service {realm} for {self.host}: {exc}",
                hint="check the network; retrying may help",
            ) from exc
        if resp.status_code in (401, 403):
            raise Unauthorized(
                f"token service {realm} refused the credentials for {self.host}",
                hint=f"check the user and password for {self.host} in your Docker config.json",
            )
        if resp.status_code != 200:
            raise Unavailable(f"token service {realm} answered HTTP {resp.status_code}")
        try:
            body = resp.json()
            value = body.get("token") or body.get("access_token")
            ttl = float(body.get("expires_in") or _DEFAULT_TOKEN_TTL)
        except (ValueError, AttributeError) as exc:
            raise Unavailable(f"token service {realm} sent an unreadable answer") from exc
        if not isinstance(value, str) or not value:
            raise Unavailable(f"token service {realm} sent no token")
        return _Token(value, started + max(ttl - _EXPIRY_MARGIN, 1.0))
