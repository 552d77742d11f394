"""A tiny real image for tests: Debian's static busybox with its applets as symlinks.

`make_busybox_image(store, ref)` builds the rootfs tarball in memory (deterministic: the same
bytes every time, so the layer is shared), imports it and returns the manifest digest.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from shoal.images.importer import import_rootfs_tar
from shoal.images.manifest import ContainerConfig

BUSYBOX = Path("/bin/busybox")
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def busybox_path() -> Path:
    """The static busybox binary, or skip the test when it is missing."""
    found = BUSYBOX if BUSYBOX.exists() else shutil.which("busybox")
    if not found:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    return Path(found)


def busybox_rootfs_tar() -> bytes:
    binary = busybox_path()
    applets = subprocess.run(
        [str(binary), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    out = io.BytesIO()

    def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "var"):
            add(name, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD)
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP)
        add("bin/busybox", tarfile.REGTYPE, 0o755, binary.read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
    return out.getvalue()


def make_busybox_image(
    store: ContentStore, ref: str = "busybox:test", config: ContainerConfig | None = None
) -> str:
    """Import a busybox rootfs as `ref` (default command `sh`); return the manifest digest."""
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "busybox.tar"
        tar.write_bytes(busybox_rootfs_tar())
        return import_rootfs_tar(store, tar, ref, config or ContainerConfig(Cmd=["sh"]))
