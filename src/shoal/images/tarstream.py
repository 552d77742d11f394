"""Reading a layer blob as an uncompressed tar stream, hashing it on the way (for the diff_id).

Compression is detected from the magic bytes (gzip, zstd, else plain tar); the media type, when
given, must be a layer type. Errors of the decompressors and of `tarfile` become `Invalid`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shoal.model.errors import Invalid, Unavailable

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


def detect_compression(head: bytes) -> str:
    """`gzip`, `zstd` or `none` from the first bytes of a blob."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class HashingReader:
    """A read-only stream that hashes (sha256) and counts every byte read through it."""

    def __init__(self, inner: IO[bytes] | Any) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._inner.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader left, e.g. the trailing zero blocks."""
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"


def _decompression_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [tarfile.TarError, EOFError, zlib.error]
    errors.append(gzip.BadGzipFile)
    try:
        import zstandard
    except ImportError:  # pragma: no cover - zstd layers then fail earlier with Unavailable
        pass
    else:
        errors.append(zstandard.ZstdError)
    return tuple(errors)


@contextlib.contextmanager
def layer_errors(what: str) -> Iterator[None]:
    """Turn the decompressors' and tarfile's complaints into one `Invalid` naming the layer."""
    try:
        yield
    except _decompression_errors() as exc:
        raise Invalid(
            f"{what} is corrupt or truncated: {exc or type(exc).__name__}",
            hint="pull or import the image again; the blob does not decompress to a valid tar",
        ) from None


@contextlib.contextmanager
def open_uncompressed(path: Path) -> Iterator[HashingReader]:
    """The uncompressed bytes of the layer blob at `path`, through a `HashingReader`."""
    with open(path, "rb") as raw:
        kind = detect_compression(raw.read(4))
        raw.seek(0)
        if kind == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as inner:
                yield HashingReader(inner)
        elif kind == "zstd":
            try:
                import zstandard
            except ImportError:
                raise Unavailable(
                    "this layer is zstd-compressed and the zstandard module is not installed",
                    hint="pip install zstandard",
                ) from None
            decompressor = zstandard.ZstdDecompressor()
            with decompressor.stream_reader(raw, read_across_frames=True) as zreader:
                yield HashingReader(zreader)
        else:
            yield HashingReader(raw)


def tar_diff_id(path: Path, what: str) -> str:
    """The diff_id of a (possibly compressed) tar file, checking that it reads as a tar."""
    with layer_errors(what), open_uncompressed(path) as reader:
        with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
            for _member in archive:
                pass
        reader.drain()
        return reader.digest
