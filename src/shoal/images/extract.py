"""Extracting one layer tar into a directory shaped as an overlayfs lower dir.

Whiteouts (`.wh.NAME`) become `c 0,0` character devices and opaque markers (`.wh..wh..opq`)
become the `trusted.overlay.opaque=y` xattr on their directory, which is what overlayfs reads in
a lower dir. Entries are refused when their path is absolute, climbs out with `..`, or goes
through a symlink (which could point anywhere on the host); hardlinks must stay inside the layer.
Modes, owners, mtimes, symlinks, hardlinks, devices and xattrs are preserved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO, Any

from shoal.model.errors import Invalid, Unavailable

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX = "SCHILY.xattr."


def _clean(name: str, what: str) -> list[str]:
    if name.startswith("/"):
        raise Invalid(
            f"{what}: entry {name!r} has an absolute path",
            hint="layer entries must be relative to the image root",
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Invalid(
            f"{what}: entry {name!r} climbs out of the layer with '..'",
            hint="the archive is malicious or broken; it was not unpacked",
        )
    return parts


def _walk(root: Path, parts: list[str], name: str, what: str, *, create: bool) -> Path:
    """The directory `root/parts…`, refusing symlinks on the way; creates missing ones."""
    current = root
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            if not create:
                raise Invalid(f"{what}: entry {name!r} refers to a missing path") from None
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(mode):
            raise Invalid(
                f"{what}: entry {name!r} goes through the symlink "
                f"{current.relative_to(root)}, refusing to follow it",
                hint="the archive is malicious or broken; it was not unpacked",
            )
        if not stat.S_ISDIR(mode):
            raise Invalid(f"{what}: entry {name!r} needs {current.relative_to(root)} as a dir")
    return current


def _remove(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _mknod(path: Path, mode: int, device: int) -> None:
    try:
        os.mknod(path, mode, device)
    except PermissionError:
        raise Unavailable(
            f"cannot create device node {path}: unpacking layers needs root",
            hint="run the agent as root",
        ) from None


def _metadata(path: Path, member: tarfile.TarInfo) -> None:
    with contextlib.suppress(PermissionError):  # not root: files stay ours
        os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)  # after chown, which clears setuid bits
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PAX):
            continue
        attr = key[len(_XATTR_PAX) :]
        if attr.startswith("trusted.overlay."):
            continue  # only our own whiteout handling may speak to overlayfs
        with contextlib.suppress(OSError):  # e.g. security.selinux on a host without it
            os.setxattr(path, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    if not member.isdir():
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _write_file(path: Path, data: IO[bytes] | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        if data is not None:
            shutil.copyfileobj(data, out, 1 << 20)


def _create(archive: Any, member: tarfile.TarInfo, root: Path, target: Path, what: str) -> None:
    if member.isdir():
        try:
            is_dir = stat.S_ISDIR(os.lstat(target).st_mode)
        except FileNotFoundError:
            is_dir = False
        if not is_dir:
            _remove(target)
            os.mkdir(target, 0o755)
        return
    _remove(target)
    if member.isreg():
        _write_file(target, archive.extractfile(member))
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        parts = _clean(member.linkname, what)
        if not parts:
            raise Invalid(f"{what}: hardlink {member.name!r} points at the layer root")
        source = _walk(root, parts[:-1], member.name, what, create=False) / parts[-1]
        if not os.path.lexists(source):
            raise Invalid(
                f"{what}: hardlink {member.name!r} points at {member.linkname!r}, "
                "which is not in this layer"
            )
        os.link(source, target, follow_symlinks=False)
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        _mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        os.mkfifo(target, 0o600)
    else:
        raise Invalid(f"{what}: entry {member.name!r} has an unsupported type {member.type!r}")


def extract_layer(stream: Any, root: Path, what: str) -> None:
    """Extract the tar read from `stream` into the existing directory `root`."""
    directories: list[tuple[Path, tarfile.TarInfo]] = []
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            parts = _clean(member.name, what)
            if not parts:  # the layer root itself
                if member.isdir():
                    _metadata(root, member)
                    directories.append((root, member))
                continue
            parent = _walk(root, parts[:-1], member.name, what, create=True)
            base = parts[-1]
            if base == OPAQUE:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
                continue
            if base.startswith(WHITEOUT + WHITEOUT):
                continue  # other AUFS metadata (.wh..wh.plnk, …): meaningless to overlayfs
            if base.startswith(WHITEOUT):
                hidden = parent / base[len(WHITEOUT) :]
                _remove(hidden)
                _mknod(hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                continue
            target = parent / base
            _create(archive, member, root, target, what)
            if not member.islnk():  # a hardlink shares its target's inode and metadata
                _metadata(target, member)
            if member.isdir():
                directories.append((target, member))
    # Directory mtimes last: creating their children changed them.
    for path, member in reversed(directories):
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
