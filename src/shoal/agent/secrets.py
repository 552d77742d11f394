"""The secrets hook: a task's secrets and configs as files on a tmpfs of its own, bound
read-only into its container.

At start the agent asks the server for the values (`GET /v1/tasks/{id}/secrets?node=`: only
the tasks of this node, only what they use), mounts a small tmpfs at
`<agent data>/secrets/<task id>` (mode 0700, memory only: a value never touches the disk) and
writes one file per secret/config there with the Compose `uid`, `gid` and `mode` (default
0, 0, 0444 as Docker). Each file is bound at `/run/secrets/<target or source>` (a secret) or
at `target` / `/<source>` (a config). When the container is removed the tmpfs goes too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ctypes
import errno
import os
import shutil
from pathlib import Path

from shoal.client.http import AsyncClient
from shoal.model.cluster import Task
from shoal.model.compose_mounts import FileReference
from shoal.model.errors import Invalid, Unavailable
from shoal.runtime.base import ContainerSpec

SECRETS_DIR = "/run/secrets"
DEFAULT_MODE = 0o444
BASE_SIZE = 1024 * 1024  # what the tmpfs holds beyond the values themselves
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def target_of(kind: str, use: FileReference) -> str:
    """Where a secret/config appears in the container (Compose's defaults)."""
    target = use.target or use.source
    if target.startswith("/"):
        return target
    return f"{SECRETS_DIR}/{target}" if kind == "secret" else f"/{target}"


def _owner(value: str | None, what: str) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit():
        raise Invalid(f"{what}: {value!r} is not a numeric id", hint="use a number, like 1000")
    return int(value)


def uses(task: Task) -> list[tuple[str, FileReference]]:
    spec = task.spec
    return [("secret", u) for u in spec.secrets or []] + [("config", u) for u in spec.configs or []]


def _mount_tmpfs(target: Path, size: int) -> None:
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    options = f"size={size},mode=0700".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options) != 0:
        err = ctypes.get_errno()
        raise Unavailable(
            f"cannot mount a tmpfs for secrets at {target}: {os.strerror(err)}",
            hint="secrets need an agent running as root",
        )


def _unmount(target: Path) -> None:
    for _attempt in range(3):
        if not os.path.ismount(target):
            break
        if _libc.umount2(os.fsencode(target), 0) != 0:
            err = ctypes.get_errno()
            if err == errno.EBUSY:  # held open: detach now, the kernel frees it later
                _libc.umount2(os.fsencode(target), _MNT_DETACH)
            elif err not in (errno.EINVAL, errno.ENOENT):
                raise Unavailable(f"cannot unmount the secrets of {target}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        if os.path.ismount(target):
            raise Unavailable(f"the secrets tmpfs at {target} is still mounted")
        shutil.rmtree(target)


def _write(path: Path, value: bytes, uid: int, gid: int, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, value)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


class TaskSecrets:
    """Per task: fetch, mount and write on start; unmount and delete on removal."""

    def __init__(self, client: AsyncClient, data_dir: Path) -> None:
        self.client = client
        self.root = data_dir / "secrets"

    def mounted(self) -> set[str]:
        """Task ids with a secrets directory here (mounted, or half released)."""
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.iterdir() if p.is_dir()}

    async def attach(self, task: Task, spec: ContainerSpec) -> ContainerSpec:
        """`spec` with the task's secrets and configs bound in (unchanged if it uses none)."""
        wanted = uses(task)
        if not wanted:
            return spec
        if spec.rootfs is None:
            raise Invalid(
                f"task {task.name} uses secrets or configs, which the process runtime cannot mount",
                hint="run the agent with the runc runtime",
            )
        payload = await self.client.request(
            "GET", f"/v1/tasks/{task.id}/secrets", params={"node": task.node_id}
        )
        values = {(i["kind"], i["source"]): i["data"] for i in payload["items"]}
        files = await asyncio.to_thread(self._materialise, task, wanted, values)
        return spec.model_copy(update={"files": {**spec.files, **files}})

    def _materialise(
        self,
        task: Task,
        wanted: list[tuple[str, FileReference]],
        values: dict[tuple[str, str], str],
    ) -> dict[str, str]:
        decoded: list[tuple[str, FileReference, bytes]] = []
        for kind, use in wanted:
            data = values.get((kind, use.source))
            if data is None:
                raise Unavailable(f"the server sent no value for {kind} {use.source}")
            try:
                decoded.append((kind, use, base64.b64decode(data, validate=True)))
            except (ValueError, binascii.Error):
                raise Unavailable(
                    f"the server sent a malformed value for {kind} {use.source}"
                ) from None
        directory = self.root / task.id
        _unmount(directory)  # a start tried again: begin from an empty tmpfs
        size = BASE_SIZE + sum(len(v) + 4096 for _, _, v in decoded)
        _mount_tmpfs(directory, size)
        files: dict[str, str] = {}
        try:
            for index, (kind, use, value) in enumerate(decoded):
                target = target_of(kind, use)
                if target in files:
                    raise Invalid(
                        f"task {task.name}: two secrets or configs are mounted at {target}"
                    )
                where = f"{kind}s.{use.source}"
                host = directory / f"{index:03d}-{kind}"  # never a name from the spec: no paths
                mode = DEFAULT_MODE if use.mode is None else use.mode
                _write(
                    host,
                    value,
                    _owner(use.uid, f"{where}.uid"),
                    _owner(use.gid, f"{where}.gid"),
                    mode,
                )
                files[target] = str(host)
        except BaseException:
            _unmount(directory)
            raise
        return files

    async def release(self, task_id: str) -> None:
        directory = self.root / task_id
        if directory.exists():
            await asyncio.to_thread(_unmount, directory)
