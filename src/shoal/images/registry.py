"""Client for the OCI distribution API: pull images into a content store and push them back.

Every blob is verified against its digest while it streams into the store (the store writes
atomically, so a failed or corrupt download leaves nothing). Idempotent requests are retried with
back-off on connection errors, 429 and 5xx; uploads restart from a fresh session instead. httpx
errors never leave this module: they become `Unavailable`, and HTTP statuses become `NotFound`,
`Unauthorized`, `Invalid` or `Unavailable` naming the image and what to do.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from shoal.images.auth import Authenticator, Credentials, load_credentials
from shoal.images.manifest import (
    ACCEPT,
    DOCKER_SCHEMA1,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_manifest,
    select_platform,
)
from shoal.images.reference import Reference, is_loopback, parse_reference
from shoal.model.errors import Invalid, NotFound, ShoalError, Unauthorized, Unavailable

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

ProgressFn = Callable[[str, int, int], None]
"""Called as `(digest, done_bytes, total_bytes)` on the event loop as a blob moves."""


class BlobStore(Protocol):
    """The part of `shoal.images.content.ContentStore` this client uses (synchronous)."""

    def has_blob(self, digest: str) -> bool: ...
    def blob_path(self, digest: str) -> Path: ...
    def read_blob(self, digest: str) -> bytes: ...
    def write_blob(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> str: ...
    def set_tag(self, ref: str, digest: str) -> None: ...
    def resolve(self, ref: str) -> str: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 4.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        return float(min(self.base_delay * 2**attempt, self.max_delay))


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest or index exactly as the registry served it (its bytes define its digest)."""

    digest: str
    data: bytes
    parsed: ImageManifest | ImageIndex

    @property
    def media_type(self) -> str:
        return self.parsed.mediaType

    def blobs(self) -> list[Descriptor]:
        """The config and layers of an image manifest, each once."""
        assert isinstance(self.parsed, ImageManifest)
        unique = {d.digest: d for d in [self.parsed.config, *self.parsed.layers]}
        return list(unique.values())


@dataclass(frozen=True, slots=True)
class PullResult:
    reference: Reference
    digest: str  # what the tag now points at: the index for a multi-platform image
    manifest_digest: str  # the image manifest chosen for the platform
    fetched_blobs: int
    fetched_bytes: int


def _platform_parts(text: str | None) -> tuple[str, str | None, str | None]:
    if not text:
        return "linux", None, None
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise Invalid(
            f"invalid platform {text!r}", hint="write os/arch[/variant], e.g. linux/arm64"
        )
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


class RegistryClient:
    """Async OCI distribution client; use as `async with RegistryClient() as rc:`."""

    def __init__(
        self,
        *,
        insecure: Iterable[str] = (),
        config_path: Path | None = None,
        credentials: Mapping[str, Credentials] | None = None,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        parallel: int = 3,
        chunk_size: int = 8 * 1024 * 1024,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._insecure = set(insecure)
        self._config_path = config_path
        self._credentials = dict(credentials or {})
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=True
        )
        self._retry = retry or RetryPolicy()
        self._parallel = max(1, parallel)
        self._chunk_size = max(1, chunk_size)
        self._sleep = sleep
        self._auth: dict[str, Authenticator] = {}
        self._seen: dict[tuple[str, str], set[str]] = {}  # (registry, digest) -> repositories

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- requests -------------------------------------------------------------------------------

    def _base(self, ref: Reference) -> str:
        host = ref.endpoint
        plain = host in self._insecure or ref.registry in self._insecure or is_loopback(host)
        return f"{'http' if plain else 'https'}://{host}/v2/{ref.repository}"

    def _authenticator(self, ref: Reference) -> Authenticator:
        auth = self._auth.get(ref.endpoint)
        if auth is None:
            creds = self._credentials.get(ref.registry) or self._credentials.get(ref.endpoint)
            if creds is None:
                creds = load_credentials(ref.registry, self._config_path)
            auth = self._auth[ref.endpoint] = Authenticator(ref.endpoint, creds)
        return auth

    async def _send_once(
        self, request: httpx.Request, ref: Reference, scopes: tuple[str, ...], stream: bool
    ) -> httpx.Response:
        auth = self._authenticator(ref)
        for attempt in range(2):
            header = await auth.header(self._http, scopes)
            if header:
                request.headers["Authorization"] = header
            resp = await self._http.send(request, stream=stream, follow_redirects=True)
            if resp.status_code != 401 or attempt == 1:
                return resp
            if not auth.learn(resp.headers.get("WWW-Authenticate")):
                return resp
            challenge = auth.challenge
            if challenge and challenge.scheme == "basic" and (header or not auth.credentials):
                return resp  # refused, or nothing to offer: sending again won't help
            auth.invalidate(scopes)
            await resp.aclose()
        raise AssertionError("unreachable")

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        ref: Reference,
        action: str,
        *,
        scopes: tuple[str, ...],
        ok: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        retry: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with auth and bounded retries; a status outside `ok` raises a shoal error."""
        attempts = self._retry.attempts if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            request = self._http.build_request(method, url, headers=headers, content=content)
            try:
                resp = await self._send_once(request, ref, scopes, stream)
            except httpx.TransportError as exc:
                if last:
                    raise _unreachable(ref, action, exc) from exc
                await self._sleep(self._retry.delay(attempt))
                continue
            except httpx.HTTPError as exc:
                raise _unreachable(ref, action, exc) from exc
            if resp.status_code in _RETRY_STATUSES and not last:
                await resp.aclose()
                await self._sleep(self._retry.delay(attempt, resp.headers.get("Retry-After")))
                continue
            if resp.status_code not in ok:
                await _read_quietly(resp)
                raise self._status_error(resp, ref, action)
            return resp
        raise AssertionError("unreachable")

    def _status_error(self, resp: httpx.Response, ref: Reference, action: str) -> ShoalError:
        code, host, detail = resp.status_code, ref.endpoint, _registry_message(resp)
        suffix = f": {detail}" if detail else ""
        if code == 401:
            has_creds = self._authenticator(ref).credentials is not None
            return Unauthorized(
                f"registry {host} refused to {action} {ref}: authentication required{suffix}",
                hint=(
                    f"the credentials for {ref.registry} were rejected; check them in config.json"
                    if has_creds
                    else f"add credentials for {ref.registry} to your Docker config.json "
                    "($DOCKER_CONFIG or ~/.docker/config.json), e.g. with `docker login`"
                ),
            )
        if code == 403:
            return Unauthorized(
                f"registry {host} denied access to {action} {ref}{suffix}",
                hint=f"the account has no permission on {ref.repository}; ask its owner",
            )
        if code == 404:
            return NotFound(
                f"{ref} not found on registry {host} (while trying to {action}){suffix}",
                hint="check the repository name, the tag and the registry address",
            )
        if code in _RETRY_STATUSES or code >= 500:
            return Unavailable(
                f"registry {host} failed to {action} {ref}: HTTP {code}{suffix}",
                hint="the registry is having trouble; try again later",
            )
        return Invalid(
            f"registry {host} rejected the request to {action} {ref}: HTTP {code}{suffix}"
        )

    # -- pull -----------------------------------------------------------------------------------

    async def get_manifest(self, ref: Reference | str) -> FetchedManifest:
        """Fetch a manifest or index by tag or digest, verify its digest and parse it."""
        ref = _ref(ref)
        url = f"{self._base(ref)}/manifests/{ref.locator}"
        resp = await self._request(
            "GET", url, ref, "pull", scopes=(_scope(ref, "pull"),), headers={"Accept": ACCEPT}
        )
        data = resp.content
        if len(data) > MAX_MANIFEST_BYTES:
            raise Invalid(f"manifest of {ref} is {len(data)} bytes, over the 4 MiB limit")
        digest = _digest_of(data, ref.digest)
        served = resp.headers.get("Docker-Content-Digest")
        expected = ref.digest or (served if served and served.startswith("sha256:") else None)
        if expected and digest != expected:
            raise Invalid(
                f"registry {ref.endpoint} served a manifest for {ref} whose digest is {digest}, "
                f"not {expected}",
                hint="the registry or a proxy in between corrupts content; nothing was stored",
            )
        declared = resp.headers.get("Content-Type", "").split(";")[0].strip() or None
        if declared in DOCKER_SCHEMA1:
            declared = None  # parse_manifest names the problem
        return FetchedManifest(
            digest, data, parse_manifest(data, declared, what=f"manifest of {ref}")
        )

    async def has_blob(self, ref: Reference | str, digest: str) -> bool:
        ref = _ref(ref)
        resp = await self._request(
            "HEAD",
            f"{self._base(ref)}/blobs/{digest}",
            ref,
            "check a blob of",
            scopes=(_scope(ref, "pull"),),
            ok=(200, 404),
        )
        found = resp.status_code == 200
        if found:
            self._remember(ref, digest)
        return found

    async def fetch_blob(
        self, ref: Reference | str, desc: Descriptor, store: BlobStore, progress: ProgressFn
    ) -> None:
        """Stream one blob into `store`, verified; a dropped connection restarts it (bounded)."""
        ref = _ref(ref)
        url = f"{self._base(ref)}/blobs/{desc.digest}"
        for attempt in range(self._retry.attempts):
            resp = await self._request(
                "GET", url, ref, "pull", scopes=(_scope(ref, "pull"),), stream=True
            )
            try:
                await self._write_stream(resp, ref, desc, store, progress)
            except httpx.HTTPError as exc:
                if attempt == self._retry.attempts - 1:
                    raise _unreachable(ref, f"download blob {desc.digest} of", exc) from exc
                await self._sleep(self._retry.delay(attempt))
                continue
            finally:
                await resp.aclose()
            self._remember(ref, desc.digest)
            return

    async def _write_stream(
        self,
        resp: httpx.Response,
        ref: Reference,
        desc: Descriptor,
        store: BlobStore,
        progress: ProgressFn,
    ) -> None:
        loop = asyncio.get_running_loop()
        chunks: AsyncIterator[bytes] = resp.aiter_bytes(1024 * 1024)
        done = 0
        progress(desc.digest, 0, desc.size)

        async def next_chunk() -> bytes | None:
            nonlocal done
            chunk = await anext(chunks, None)
            if chunk is not None:
                done += len(chunk)
                progress(desc.digest, min(done, desc.size), desc.size)
            return chunk

        def pump() -> Iterator[bytes]:
            # write_blob runs in a worker thread; each chunk is awaited back on the event loop.
            while (
                chunk := asyncio.run_coroutine_threadsafe(next_chunk(), loop).result()
            ) is not None:
                yield chunk

        try:
            await asyncio.to_thread(store.write_blob, pump(), desc.digest, desc.size)
        except Invalid as exc:  # the store verifies size and digest as the bytes arrive
            raise Invalid(
                f"blob {desc.digest} of {ref} from {ref.endpoint} failed verification: "
                f"{exc.message}",
                hint="the registry serves corrupt or truncated content; nothing was stored",
            ) from exc

    async def pull(
        self,
        ref: Reference | str,
        store: BlobStore,
        *,
        platform: str | None = None,
        progress: ProgressFn | None = None,
    ) -> PullResult:
        """Pull `ref` (an index resolves to `platform`, default this host) into `store`.

        Blobs already in the store are skipped, the others download in parallel (bounded).
        Manifests are written last, and the tag (if `ref` has one) set after them, so an
        interrupted pull never leaves a tag pointing at missing content.
        """
        ref = _ref(ref)
        report = progress or _no_progress
        top = manifest = await self.get_manifest(ref)
        if isinstance(top.parsed, ImageIndex):
            os_, arch, variant = _platform_parts(platform)
            try:
                child = select_platform(top.parsed, os_, arch, variant)
            except NotFound as exc:
                raise NotFound(f"{ref}: {exc.message}", hint=exc.hint) from None
            manifest = await self.get_manifest(ref.with_digest(child.digest))
            if not isinstance(manifest.parsed, ImageManifest):
                raise Invalid(f"{ref}: index entry {child.digest} is not an image manifest")
        missing: list[Descriptor] = []
        for desc in manifest.blobs():
            if await asyncio.to_thread(store.has_blob, desc.digest):
                report(desc.digest, desc.size, desc.size)
            else:
                missing.append(desc)
        await self._run_limited(self.fetch_blob(ref, d, store, report) for d in missing)
        for m in [manifest] if manifest is top else [manifest, top]:
            await asyncio.to_thread(store.write_blob, [m.data], m.digest, len(m.data))
        if ref.tag:
            tag = str(Reference(ref.registry, ref.repository, ref.tag))
            await asyncio.to_thread(store.set_tag, tag, top.digest)
        fetched = sum(d.size for d in missing)
        return PullResult(ref, top.digest, manifest.digest, len(missing), fetched)

    # -- push -----------------------------------------------------------------------------------

    async def push(
        self,
        ref: Reference | str,
        store: BlobStore,
        *,
        source: str | None = None,
        mount_from: Iterable[str] = (),
        progress: ProgressFn | None = None,
    ) -> str:
        """Push the image tagged `source` (default: `ref`) in `store` as `ref`; returns its digest.

        Blobs the registry already has are skipped; blobs known to live in another repository of
        the same registry (seen by this client, or named in `mount_from`) are mounted, not sent.
        """
        ref = _ref(ref)
        try:
            digest = await asyncio.to_thread(store.resolve, source or str(ref))
        except (KeyError, FileNotFoundError) as exc:
            raise NotFound(
                f"no local image {source or ref}", hint="pull or build it first"
            ) from exc
        mounts = [_ref(f"{ref.registry}/{m}").repository for m in mount_from]
        await self._push_manifest(ref, digest, store, mounts, progress or _no_progress, top=True)
        return digest

    async def _push_manifest(
        self,
        ref: Reference,
        digest: str,
        store: BlobStore,
        mounts: list[str],
        progress: ProgressFn,
        *,
        top: bool,
    ) -> None:
        data = await asyncio.to_thread(store.read_blob, digest)
        parsed = parse_manifest(data, what=f"local manifest {digest}")
        if isinstance(parsed, ImageIndex):
            for child in parsed.manifests:
                if not await asyncio.to_thread(store.has_blob, child.digest):
                    raise Invalid(
                        f"cannot push {ref}: its index lists {child.digest}, which was never "
                        "pulled into the local store (only one platform is pulled)",
                        hint="push a single-platform image, e.g. pull by the platform digest",
                    )
                await self._push_manifest(ref, child.digest, store, mounts, progress, top=False)
        else:
            blobs = FetchedManifest(digest, data, parsed).blobs()
            await self._run_limited(self._push_blob(ref, d, store, mounts, progress) for d in blobs)
        locator = (ref.tag or digest) if top else digest
        resp = await self._request(
            "PUT",
            f"{self._base(ref)}/manifests/{locator}",
            ref,
            "push",
            scopes=(_scope(ref, "pull,push"),),
            ok=(200, 201),
            headers={"Content-Type": parsed.mediaType},
            content=data,
        )
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise Invalid(f"registry {ref.endpoint} stored {ref} as {served}, expected {digest}")

    async def _push_blob(
        self,
        ref: Reference,
        desc: Descriptor,
        store: BlobStore,
        mounts: list[str],
        progress: ProgressFn,
    ) -> None:
        if await self.has_blob(ref, desc.digest):
            progress(desc.digest, desc.size, desc.size)
            return
        base = self._base(ref)
        push_scope = _scope(ref, "pull,push")
        known = self._seen.get((ref.endpoint, desc.digest), set())
        location: httpx.URL | None = None
        for source in dict.fromkeys([*mounts, *sorted(known)]):
            if source == ref.repository:
                continue
            resp = await self._request(
                "POST",
                httpx.URL(f"{base}/blobs/uploads/", params={"mount": desc.digest, "from": source}),
                ref,
                "push",
                scopes=(push_scope, _scope(ref.with_repository(source), "pull")),
                ok=(201, 202),
                content=b"",
            )
            await resp.aread()
            if resp.status_code == 201:
                progress(desc.digest, desc.size, desc.size)
                self._remember(ref, desc.digest)
                return
            location = _location(resp, ref)
            break
        for attempt in range(self._retry.attempts):
            try:
                if location is None:
                    location = await self._start_upload(ref)
                await self._upload(ref, location, desc, store, progress)
                self._remember(ref, desc.digest)
                return
            except Unavailable:
                if attempt == self._retry.attempts - 1:
                    raise
                location = None  # a failed session cannot be trusted; start a fresh one
                await self._sleep(self._retry.delay(attempt))

    async def _start_upload(self, ref: Reference) -> httpx.URL:
        resp = await self._request(
            "POST",
            f"{self._base(ref)}/blobs/uploads/",
            ref,
            "push",
            scopes=(_scope(ref, "pull,push"),),
            ok=(202,),
            content=b"",
        )
        await resp.aread()
        return _location(resp, ref)

    async def _upload(
        self,
        ref: Reference,
        location: httpx.URL,
        desc: Descriptor,
        store: BlobStore,
        progress: ProgressFn,
    ) -> None:
        scopes = (_scope(ref, "pull,push"),)
        path = await asyncio.to_thread(store.blob_path, desc.digest)
        action = f"upload blob {desc.digest} of"
        offset = 0
        progress(desc.digest, 0, desc.size)
        with await asyncio.to_thread(path.open, "rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, self._chunk_size):
                end = offset + len(chunk) - 1
                resp = await self._request(
                    "PATCH",
                    location,
                    ref,
                    action,
                    scopes=scopes,
                    ok=(202,),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                    },
                    content=chunk,
                    retry=False,
                )
                await resp.aread()
                location = _location(resp, ref)  # always continue at the newest Location
                offset = end + 1
                progress(desc.digest, offset, desc.size)
        if offset != desc.size:
            raise Invalid(
                f"local blob {desc.digest} has {offset} bytes, its manifest says {desc.size}"
            )
        resp = await self._request(
            "PUT",
            location.copy_merge_params({"digest": desc.digest}),  # keeps `_state` and friends
            ref,
            action,
            scopes=scopes,
            ok=(201, 204),
            content=b"",
            retry=False,
        )
        await resp.aread()

    # -- helpers --------------------------------------------------------------------------------

    def _remember(self, ref: Reference, digest: str) -> None:
        self._seen.setdefault((ref.endpoint, digest), set()).add(ref.repository)

    async def _run_limited(self, jobs: Iterable[Awaitable[None]]) -> None:
        limit = asyncio.Semaphore(self._parallel)

        async def run(job: Awaitable[None]) -> None:
            async with limit:
                await job

        try:
            async with asyncio.TaskGroup() as tg:
                for job in jobs:
                    tg.create_task(run(job))
        except BaseExceptionGroup as group:
            raise _first_error(group) from None


def _no_progress(digest: str, done: int, total: int) -> None:
    return None


def _ref(ref: Reference | str) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


def _scope(ref: Reference, actions: str) -> str:
    return f"repository:{ref.repository}:{actions}"


def _digest_of(data: bytes, expected: str | None) -> str:
    algo = expected.split(":", 1)[0] if expected else "sha256"
    if algo not in ("sha256", "sha384", "sha512"):
        raise Invalid(f"unsupported digest algorithm {algo!r}")
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _location(resp: httpx.Response, ref: Reference) -> httpx.URL:
    loc = resp.headers.get("Location")
    if not loc:
        raise Unavailable(f"registry {ref.endpoint} started an upload for {ref} without a Location")
    return resp.request.url.join(loc)


def _unreachable(ref: Reference, action: str, exc: Exception) -> Unavailable:
    return Unavailable(
        f"cannot reach registry {ref.endpoint} to {action} {ref}: {type(exc).__name__}: {exc}",
        hint="check that the registry runs and the address is right; a registry without TLS "
        "must be listed as insecure",
    )


async def _read_quietly(resp: httpx.Response) -> None:
    try:
        await resp.aread()
    except httpx.HTTPError:
        pass
    finally:
        await resp.aclose()


def _registry_message(resp: httpx.Response) -> str:
    try:
        errors = resp.json().get("errors")
        return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
    except Exception:
        return ""


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    return next((e for e in leaves if isinstance(e, ShoalError)), leaves[0])
