"""Per-container root filesystems: an overlayfs over the image's shared, unpacked layers.

`<container_dir>/rootfs` is the mount point, `upper/` takes the container's writes and `work/` is
overlayfs's scratch space, so the shared layer directories are never written. Even a one-layer
image is mounted this way. Preparing again an already mounted rootfs returns it as it is (an
agent re-adopting its containers after a restart).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

from shoal.images.content import ContentStore
from shoal.images.image import load_image
from shoal.images.unpack import unpack_image
from shoal.model.errors import Unavailable

_MAX_OPTIONS = 4000  # the kernel reads mount options from one page
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _mount_overlay(target: Path, lowers: list[Path], upper: Path, work: Path) -> None:
    options = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    if len(options) <= _MAX_OPTIONS:
        rc = _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode())
        if rc != 0:
            err = ctypes.get_errno()
            raise Unavailable(
                f"cannot mount the overlay rootfs at {target}: {os.strerror(err)}",
                hint="overlay mounts need root and a kernel with overlayfs",
            )
        return
    # Too long for one page: name the lowers relative to their common directory, as a child
    # process with that as its cwd (changing our own cwd would race with other threads).
    base = os.path.commonpath([str(p) for p in lowers])
    relative = ":".join(os.path.relpath(p, base) for p in lowers)
    short = f"lowerdir={relative},upperdir={upper},workdir={work}"
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", short, str(target)],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise Unavailable(
            f"cannot mount the overlay rootfs at {target}: {done.stderr.strip()}",
            hint="an image with very many layers may exceed the kernel's mount option limit",
        )


def prepare_rootfs(store: ContentStore, image_ref_or_digest: str, container_dir: Path) -> Path:
    """Mount the image's rootfs at `<container_dir>/rootfs` and return that path."""
    container_dir = Path(container_dir)
    target = container_dir / "rootfs"
    if os.path.ismount(target):
        return target
    image = load_image(store, image_ref_or_digest)
    lowers = list(reversed(unpack_image(store, image.manifest, image.config)))  # top first
    upper, work = container_dir / "upper", container_dir / "work"
    if not lowers:  # an image with no layers: an empty lower keeps the mount uniform
        empty = store.layers / ".empty"
        empty.mkdir(exist_ok=True)
        lowers = [empty]
    for directory in (target, upper, work):
        directory.mkdir(parents=True, exist_ok=True)
    os.chmod(upper, 0o755)
    try:
        _mount_overlay(target, lowers, upper, work)
    except BaseException:
        for directory in (target, upper, work):
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return target


def _umount(target: Path) -> None:
    for _attempt in range(10):
        if _libc.umount2(os.fsencode(target), 0) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
            return
        if err != errno.EBUSY:
            raise Unavailable(f"cannot unmount {target}: {os.strerror(err)}")
        time.sleep(0.05)
    if _libc.umount2(os.fsencode(target), _MNT_DETACH) != 0:  # busy: detach lazily
        err = ctypes.get_errno()
        raise Unavailable(
            f"cannot unmount {target}: {os.strerror(err)}",
            hint="a process still uses the container's filesystem; stop it first",
        )


def release_rootfs(container_dir: Path) -> None:
    """Unmount the container's rootfs and delete `rootfs/`, `upper/` and `work/` (idempotent)."""
    container_dir = Path(container_dir)
    target = container_dir / "rootfs"
    for _layer in range(8):  # stacked mounts: take them all down
        if not os.path.ismount(target):
            break
        _umount(target)
    for name in ("rootfs", "upper", "work"):
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(container_dir / name)
