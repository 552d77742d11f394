"""Writing layer blobs: a gzip tar streamed into the store, with its diff_id computed on the way.

`LayerWriter` is what COPY, ADD and WORKDIR write their entries into; `add_upper_dir` turns an
overlayfs upper directory (what a RUN changed) into layer entries: `c 0,0` whiteout devices
become `.wh.NAME` files and the `trusted.overlay.opaque` xattr becomes `.wh..wh..opq`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from shoal.images.content import ContentStore
from shoal.images.manifest import OCI_LAYER_GZIP, Descriptor

_OPAQUE_XATTR = "trusted.overlay.opaque"


class _HashingSink:
    """A write-only stream that hashes what passes through to `inner`."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.inner.write(data)


class LayerWriter:
    """`with LayerWriter(store) as layer: layer.tar.addfile(...)`; then `layer.descriptor`."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self._file = tempfile.TemporaryFile(dir=store.ingest, prefix="build-layer-")  # noqa: SIM115
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", mtime=0, compresslevel=6)
        self._sink = _HashingSink(self._gzip)
        self.tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
            fileobj=self._sink, mode="w|", format=tarfile.PAX_FORMAT
        )
        self.entries = 0
        self.descriptor: Descriptor | None = None
        self.diff_id = ""

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                self._finish()
        finally:
            self._file.close()

    def _finish(self) -> None:
        self.tar.close()
        self._gzip.close()
        self.diff_id = f"sha256:{self._sink.hash.hexdigest()}"
        self._file.seek(0)
        digest = self.store.write_blob(iter(lambda: self._file.read(1 << 20), b""))
        self.descriptor = Descriptor(
            mediaType=OCI_LAYER_GZIP, digest=digest, size=self.store.blob_size(digest)
        )

    def add_path(
        self,
        path: Path,
        arcname: str,
        owner: tuple[int, int] | None = None,
        mode: int | None = None,
    ) -> None:
        """Add the file, directory or link at `path` (not following symlinks) as `arcname`."""
        info = self.tar.gettarinfo(str(path), arcname)
        info.uname = info.gname = ""
        if owner is not None:
            info.uid, info.gid = owner
        if mode is not None and not info.issym():
            info.mode = mode
        self.entries += 1
        if info.isreg():
            with open(path, "rb") as handle:
                self.tar.addfile(info, handle)
        else:
            self.tar.addfile(info)

    def add_dir(self, arcname: str, mode: int = 0o755, owner: tuple[int, int] = (0, 0)) -> None:
        info = tarfile.TarInfo(arcname)
        info.type, info.mode = tarfile.DIRTYPE, mode
        info.uid, info.gid = owner
        self.entries += 1
        self.tar.addfile(info)

    def add_member(self, info: tarfile.TarInfo, data: IO[bytes] | None) -> None:
        self.entries += 1
        self.tar.addfile(info, data)

    def add_whiteout(self, arcname: str) -> None:
        info = tarfile.TarInfo(arcname)
        self.entries += 1
        self.tar.addfile(info)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def add_upper_dir(layer: LayerWriter, upper: Path) -> None:
    """Write the changes an overlay upper dir holds as OCI layer entries."""
    for dirpath, dirs, files in os.walk(upper):
        dirs.sort()
        rel_dir = os.path.relpath(dirpath, upper)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if prefix and _is_opaque(dirpath):
            layer.add_whiteout(f"{prefix}.wh..wh..opq")
        for name in sorted(dirs + files):
            full = os.path.join(dirpath, name)
            info = os.lstat(full)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                layer.add_whiteout(f"{prefix}.wh.{name}")
                continue
            layer.add_path(Path(full), prefix + name)
