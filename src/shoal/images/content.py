"""Content-addressed blob store laid out as an OCI image layout, plus tags and garbage collection.

`<root>/blobs/sha256/<hex>` holds every blob (verified on write); `<root>/index.json` is the
layout's index and doubles as the tag table: each tagged manifest is a descriptor annotated with
`org.opencontainers.image.ref.name` = the normalised reference. Blob writes go through a temp file
in `<root>/ingest/` and an atomic rename, so readers never see a partial blob. Index updates take
an exclusive `flock` on `<root>/.lock`, which serialises threads and processes alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shoal.images.reference import parse_digest, parse_reference
from shoal.model.errors import Invalid, NotFound

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STALE_INGEST = 3600.0  # a temp file this old belongs to a writer that died


def _sha256_hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not _HEX64.fullmatch(hexpart):
        raise Invalid(
            f"unsupported or malformed digest {digest!r}",
            hint="the store holds sha256 blobs: sha256:<64 lowercase hex digits>",
        )
    return hexpart


def normalize_ref(ref: str) -> str:
    """`busybox` → `docker.io/library/busybox:latest`; a reference with a digest is refused."""
    parsed = parse_reference(ref)
    if parsed.digest:
        raise Invalid(
            f"cannot tag {ref!r}: a tag name must not carry a digest",
            hint="use NAME:TAG; the digest is what the tag points to",
        )
    return str(parsed)


class ContentStore:
    """Blobs, tags and gc over one directory; safe to share between threads and processes."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.ingest = self.root / "ingest"
        self.layers = self.root / "layers"
        for directory in (self.blobs, self.ingest, self.layers):
            directory.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._write_json(layout, {"imageLayoutVersion": "1.0.0"})
        if not (self.root / "index.json").exists():
            with self._locked():
                if not (self.root / "index.json").exists():
                    self._write_index([])

    # blobs -------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / _sha256_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(
                f"blob {digest} is not in the image store {self.root}",
                hint="pull or import the image that contains it",
            ) from None

    def blob_size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the image store {self.root}") from None

    def write_blob(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> str:
        """Stream `chunks` into the store, verify them, and return their digest.

        Nothing is left behind when the content does not match or the iterator raises.
        """
        if expected_digest is not None:
            _sha256_hex(parse_digest(expected_digest))
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.ingest, prefix="blob-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                    if expected_size is not None and size > expected_size:
                        raise Invalid(
                            f"blob is larger than expected: more than {expected_size} bytes "
                            f"(expected digest {expected_digest or 'unknown'})",
                            hint="the source sent more data than its descriptor declares",
                        )
            digest = f"sha256:{hasher.hexdigest()}"
            if expected_size is not None and size != expected_size:
                raise Invalid(
                    f"blob size mismatch: expected {expected_size} bytes, got {size} "
                    f"(expected digest {expected_digest or 'unknown'}, actual {digest})",
                    hint="the transfer was cut short or the source is corrupt; retry",
                )
            if expected_digest is not None and digest != expected_digest:
                raise Invalid(
                    f"blob digest mismatch: expected {expected_digest}, got {digest} "
                    f"({size} bytes)",
                    hint="the content is corrupt or the descriptor is wrong; retry the transfer",
                )
            final = self.blob_path(digest)
            if final.exists():
                os.utime(final)  # recently used: protects it from a gc with min_age
            else:
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
            return digest
        finally:
            tmp.unlink(missing_ok=True)

    def write_blob_bytes(self, data: bytes, expected_digest: str | None = None) -> str:
        return self.write_blob([data], expected_digest, None)

    # tags --------------------------------------------------------------------------------------

    def set_tag(self, ref: str, digest: str) -> None:
        """Point `ref` at the manifest or index `digest`, which must already be in the store."""
        name = normalize_ref(ref)
        if not self.has_blob(digest):
            raise NotFound(
                f"cannot tag {name}: manifest {digest} is not in the image store",
                hint="write the manifest blob before tagging it",
            )
        try:
            media_type = json.loads(self.read_blob(digest)).get("mediaType")
        except (ValueError, AttributeError):
            raise Invalid(f"cannot tag {name}: blob {digest} is not a JSON manifest") from None
        descriptor: dict[str, Any] = {
            "mediaType": media_type or "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": self.blob_size(digest),
            "annotations": {REF_NAME: name},
        }
        with self._locked():
            entries = [e for e in self._read_index() if _ref_of(e) != name]
            entries.append(descriptor)
            self._write_index(entries)

    def resolve(self, ref: str) -> str:
        """The manifest (or index) digest `ref` names: a tag, `name@digest` or a bare digest."""
        if ref.startswith("sha256:"):
            digest = parse_digest(ref)
            if not self.has_blob(digest):
                raise NotFound(f"image {ref} is not in the image store {self.root}")
            return digest
        parsed = parse_reference(ref)
        if parsed.digest:
            if not self.has_blob(parsed.digest):
                raise NotFound(
                    f"image {ref} is not in the image store",
                    hint=f"pull it: shoal image pull {ref}",
                )
            return parsed.digest
        name = str(parsed)
        tagged = self.list_tags().get(name)
        if tagged is None:
            raise NotFound(
                f"image {ref} ({name}) is not in the image store {self.root}",
                hint=f"pull, build or import it first (shoal image pull {ref}); "
                "`shoal image ls` lists what is there",
            )
        return tagged

    def list_tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        for entry in self._read_index():
            name = _ref_of(entry)
            if name:
                tags[name] = str(entry["digest"])
        return dict(sorted(tags.items()))

    def remove_tag(self, ref: str) -> None:
        name = normalize_ref(ref)
        with self._locked():
            entries = self._read_index()
            kept = [e for e in entries if _ref_of(e) != name]
            if len(kept) == len(entries):
                raise NotFound(f"no image tagged {name}", hint="`shoal image ls` lists the tags")
            self._write_index(kept)

    # gc ----------------------------------------------------------------------------------------

    def referenced_blobs(self) -> set[str]:
        """Every blob reachable from a tag: indexes → manifests → configs and layers."""
        seen: set[str] = set()
        pending = list(self.list_tags().values())
        while pending:
            digest = pending.pop()
            if digest in seen or not self.has_blob(digest):
                continue
            seen.add(digest)
            try:
                doc = json.loads(self.read_blob(digest))
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            for key in ("manifests", "layers"):
                pending.extend(str(d["digest"]) for d in doc.get(key) or [] if "digest" in d)
            for key in ("config", "subject"):
                if isinstance(doc.get(key), dict) and "digest" in doc[key]:
                    pending.append(str(doc[key]["digest"]))
        return seen

    def gc(self, *, min_age: float = 0.0) -> int:
        """Delete blobs no tag reaches (and stale temp files); return the bytes freed.

        `min_age` (seconds) spares blobs written that recently, e.g. by a pull in progress
        that has not tagged its manifest yet.
        """
        freed = 0
        now = time.time()
        with self._locked():
            keep = {_sha256_hex(d) for d in self.referenced_blobs()}
            for path in self.blobs.iterdir():
                if path.name in keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    if now - stat.st_mtime < min_age:
                        continue
                    path.unlink()
                    freed += stat.st_size
            for path in self.ingest.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if now - path.stat().st_mtime > _STALE_INGEST:
                        path.unlink()
        return freed

    # internals ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_index(self) -> list[dict[str, Any]]:
        path = self.root / "index.json"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise Invalid(
                f"image store index {path} is not valid JSON: {exc}",
                hint="restore it, or delete it and re-tag the images",
            ) from None
        manifests = doc.get("manifests") if isinstance(doc, dict) else None
        return [m for m in manifests or [] if isinstance(m, dict) and "digest" in m]

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
        self._write_json(self.root / "index.json", doc)

    def _write_json(self, path: Path, doc: dict[str, Any]) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f".{path.name}-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(doc, out, indent=2)
            os.replace(tmp_name, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)


def _ref_of(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations") or {}
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return str(name) if name else None
