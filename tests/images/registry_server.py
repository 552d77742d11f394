"""Test helpers for the registry client: the real docker-registry, a misbehaving fake, images.

`RegistryServer` runs Debian's `docker-registry serve` on 127.0.0.1 with filesystem storage in a
temp dir (optionally behind htpasswd); `FakeRegistry` is a tiny `http.server` whose handler the
test writes, for 500s, dropped connections and corrupt blobs. Both stop by PID / shutdown and
delete their temp dirs even when a test fails. Test images go straight into a real ContentStore.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from shoal.images.content import ContentStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_store(root: Path) -> ContentStore:
    return ContentStore(root)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@dataclass
class Image:
    manifest_digest: str
    manifest: bytes
    config_digest: str
    config: bytes
    layers: list[tuple[str, bytes]]

    @property
    def blob_digests(self) -> list[str]:
        return [self.config_digest, *(d for d, _ in self.layers)]


def build_image(store: ContentStore, sizes: Iterable[int], *, arch: str = "amd64") -> Image:
    """Write random layers, a config and an OCI manifest to `store`; nothing is tagged."""
    layers = []
    for size in sizes:
        data = os.urandom(size)
        layers.append((store.write_blob([data]), data))
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]},
            "config": {"Cmd": ["/bin/sh"]},
        }
    ).encode()
    config_digest = store.write_blob([config])
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": len(b)} for d, b in layers],
        }
    ).encode()
    return Image(store.write_blob([manifest]), manifest, config_digest, config, layers)


def build_index(store: ContentStore, images: dict[str, Image]) -> str:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": img.manifest_digest,
                "size": len(img.manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
            for arch, img in images.items()
        ],
    }
    return store.write_blob([json.dumps(index).encode()])


class RegistryServer:
    """The real `docker-registry` on a free loopback port; use as a context manager."""

    def __init__(self, *, user: str | None = None, password: str | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="shoal-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user, self.password = user, password

    def __enter__(self) -> RegistryServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        auth = ""
        if self.user is not None:
            out = subprocess.run(
                ["htpasswd", "-Bbn", self.user, self.password or ""],
                check=True,
                capture_output=True,
            )
            (self.tmp / "htpasswd").write_bytes(out.stdout)
            auth = f"auth:\n  htpasswd:\n    realm: shoal-test\n    path: {self.tmp / 'htpasswd'}\n"
        config = self.tmp / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.tmp / 'data'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: {self.host}\n{auth}"
        )
        with (self.tmp / "registry.log").open("wb") as log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 15
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    log_text = (self.tmp / "registry.log").read_text(errors="replace")
                    raise RuntimeError(f"docker-registry exited: {log_text[-2000:]}")
                try:
                    if client.get(f"http://{self.host}/v2/").status_code in (200, 401):
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


Handler = Callable[[BaseHTTPRequestHandler], None]


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    route: Handler

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _dispatch(self) -> None:
        self.server.requests.append((self.command, self.path))  # type: ignore[attr-defined]
        self.server.route(self)  # type: ignore[attr-defined]

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _dispatch


class FakeRegistry:
    """A loopback HTTP server whose every request goes to `route(handler)`."""

    def __init__(self, route: Handler) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
        self.server.daemon_threads = True
        self.server.route = route  # type: ignore[attr-defined]
        self.server.requests = []  # type: ignore[attr-defined]
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.server.requests  # type: ignore[attr-defined,no-any-return]

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def reply(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def drop(h: BaseHTTPRequestHandler, partial: bytes | None = None, length: int = 0) -> None:
    """Close the connection: before any answer, or after `partial` of a `length`-byte body."""
    if partial is not None:
        h.send_response(200)
        h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.write(partial)
        h.wfile.flush()
    h.close_connection = True
    h.connection.shutdown(socket.SHUT_RDWR)


@dataclass
class Served:
    """What a fake registry serves for one image: manifest and blobs by digest."""

    manifests: dict[str, tuple[str, bytes]]  # tag or digest -> (media type, body)
    blobs: dict[str, bytes]


def serve_image(image: Image, tag: str = "v1") -> Served:
    entry = (OCI_MANIFEST, image.manifest)
    blobs = {d: b for d, b in image.layers}
    blobs[image.config_digest] = image.config
    return Served({tag: entry, image.manifest_digest: entry}, blobs)


def path_tail(h: BaseHTTPRequestHandler) -> str:
    return h.path.split("?", 1)[0].rsplit("/", 1)[-1]
