"""The build cache: which layer an instruction produced on top of which parent chain.

Keys are sha256 chains: each instruction's key hashes the previous key, the instruction text
after substitution and, for COPY/ADD, a digest of the content it reads. The index is one small
JSON file in the image store (`<store>/build-cache.json`), updated under a `flock`. An entry whose
layer blob was garbage-collected is a miss.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from shoal.images.content import ContentStore
from shoal.images.manifest import Descriptor


def chain_key(parent: str, *parts: str) -> str:
    digest = hashlib.sha256(parent.encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


class BuildCache:
    def __init__(self, store: ContentStore, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled
        self.path = store.root / "build-cache.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.store.root / ".build-cache.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def get(self, key: str) -> tuple[Descriptor, str] | None:
        """The (layer descriptor, diff_id) cached under `key`, or None."""
        if not self.enabled:
            return None
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            layer = Descriptor.model_validate(entry["layer"])
            diff_id = str(entry["diff_id"])
        except (KeyError, ValueError):
            return None
        return (layer, diff_id) if self.store.has_blob(layer.digest) else None

    def put(self, key: str, layer: Descriptor, diff_id: str) -> None:
        entry = {"layer": layer.model_dump(exclude_none=True), "diff_id": diff_id}
        with self._locked():
            doc = self._read()
            doc[key] = entry
            fd, tmp = tempfile.mkstemp(dir=self.store.root, prefix=".build-cache-")
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(doc, out)
                os.replace(tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
