"""COPY and ADD: which files go where, and writing them into a layer.

`plan_copy` resolves the sources (wildcards, `.dockerignore`, directories copied by content) and
the destination (a trailing `/`, several sources, or an existing directory make it a directory;
relative paths start at WORKDIR) into a list of entries, and hashes what they read for the cache.
`write_copy` then writes those entries, with `--chown`/`--chmod` applied, into a `LayerWriter`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shoal.images.build.context import IgnoreRules, clean_source, hash_paths, select, walk
from shoal.images.build.layer import LayerWriter
from shoal.images.build.parser import Instruction

_MAX_LINKS = 16


@dataclass(frozen=True, slots=True)
class Entry:
    source: Path | None  # None: a directory to create
    target: str  # absolute path in the image
    archive: bool = False  # ADD: extract this tar into `target`


def _follow(root: Path, rel: str) -> str:
    """Resolve symlinks in the last element of `rel`, staying inside `root`."""
    for _hop in range(_MAX_LINKS):
        full = root / rel
        if not full.is_symlink():
            return rel
        target = os.readlink(full)
        base = "/" if target.startswith("/") else "/" + posixpath.dirname(rel)
        rel = posixpath.normpath(posixpath.join(base, target)).lstrip("/") or "."
    return rel


def _is_archive(path: Path) -> bool:
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False


def plan_copy(
    inst: Instruction,
    root: Path,
    srcs: list[str],
    dest: str,
    workdir: str,
    rules: IgnoreRules | None,
    is_dir_in_image: Callable[[str], bool],
    extract_archives: bool,
) -> tuple[list[Entry], str]:
    """The entries to write and a digest of the content they read."""
    dest_abs = posixpath.normpath(posixpath.join(workdir or "/", dest))
    as_dir = dest.endswith("/") or dest in (".", "./")
    hits: list[str] = []
    for src in srcs:
        found = select(root, clean_source(src, inst.where), rules)
        if not found:
            raise inst.error(
                f"source {src!r} not found in the build context",
                hint="check the path (relative to the context) and the .dockerignore file",
            )
        hits.extend(_follow(root, hit) for hit in found)
    if len(hits) > 1 and not as_dir:
        raise inst.error(
            "with more than one source file, the destination must be a directory ending in /",
            hint=f"write the destination as {dest.rstrip('/')}/",
        )
    as_dir = as_dir or len(hits) > 1 or is_dir_in_image(dest_abs)
    entries: list[Entry] = []
    read: list[str] = []
    for hit in hits:
        full = root / hit
        if full.is_dir() and not full.is_symlink():
            if not is_dir_in_image(dest_abs):
                entries.append(Entry(None, dest_abs))
            for rel in walk(root, hit, rules):
                if rel == hit:
                    continue
                inner = rel if hit == "." else posixpath.relpath(rel, hit)
                entries.append(Entry(root / rel, posixpath.join(dest_abs, inner)))
                read.append(rel)
        elif extract_archives and _is_archive(full):
            entries.append(Entry(full, dest_abs, archive=True))
            read.append(hit)
        else:
            target = posixpath.join(dest_abs, posixpath.basename(hit)) if as_dir else dest_abs
            entries.append(Entry(full, target))
            read.append(hit)
    digest = hashlib.sha256(hash_paths(root, read).encode())
    for entry in entries:
        digest.update(f"{entry.target}\0{entry.archive}\n".encode())
    return entries, digest.hexdigest()


def _arc(path: str) -> str:
    return path.lstrip("/")


def _extract_into(layer: LayerWriter, archive_path: Path, dest: str, inst: Instruction) -> None:
    with tarfile.open(archive_path, "r:*") as archive:
        for member in archive:
            name = posixpath.normpath(member.name.lstrip("/"))
            if name == "." or name.startswith(".."):
                if name == ".":
                    continue
                raise inst.error(
                    f"archive {archive_path.name} has an entry outside its root: {member.name!r}",
                    hint="the archive is malicious or broken",
                )
            member.name = _arc(posixpath.join(dest, name))
            if member.islnk():
                member.linkname = _arc(posixpath.join(dest, posixpath.normpath(member.linkname)))
            data = archive.extractfile(member) if member.isreg() else None
            layer.add_member(member, data)


def write_copy(
    layer: LayerWriter,
    entries: list[Entry],
    owner: tuple[int, int] | None,
    mode: int | None,
    inst: Instruction,
) -> None:
    for entry in entries:
        if entry.archive and entry.source is not None:
            _extract_into(layer, entry.source, entry.target, inst)
        elif not _arc(entry.target):
            continue  # the image root itself
        elif entry.source is None:
            layer.add_dir(_arc(entry.target), owner=owner or (0, 0))
        else:
            layer.add_path(entry.source, _arc(entry.target), owner=owner or (0, 0), mode=mode)
