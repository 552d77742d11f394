"""The volumes hook of the task runner: named volumes (the local driver), anonymous volumes and
copy-up, plus the agent's `DELETE /v1/volumes/{name}`.

- A named volume is `<agent data>/volumes/<name>`: a plain directory, or with `driver_opts` a
  mount there (`type: tmpfs` → a tmpfs with its size; `type: none, o: bind, device: /path` →
  a bind of that existing path; any other type → `mount -t type -o o device`). The mount is
  made on first use and kept until the volume is removed: a tmpfs volume's data lives as long
  as the node's mount — across container restarts, updates and agent restarts, not reboots
  (Docker's local driver unmounts when the last container stops; shoal keeps it so a replaced
  task finds its data).
- An anonymous volume (a `volumes:` entry without a source) is `<agent data>/anonymous/<task
  id>/<n>`, removed with the task's container.
- Copy-up (Docker's rule): a volume that is empty when a container mounts it first gets the
  image's content at the mount target copied in (owners, modes, links kept), unless the entry
  says `volume: {nocopy: true}`.

The record of a named volume (its name, options, node) comes from the server's API.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from shoal.client.http import AsyncClient
from shoal.model.cluster import Stack, Task
from shoal.model.compose_mounts import VolumeMount
from shoal.model.errors import Conflict, Invalid, NotFound, ShoalError
from shoal.model.volume import NAME_RE, Volume, local_mount, volume_name
from shoal.runtime.base import ContainerMount, ContainerSpec
from shoal.runtime.ocispec import resolve_in_rootfs

VOLUMES = "volumes"
ANONYMOUS = "anonymous"


# --- mounts on this node -------------------------------------------------------------------------


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    """Every mount point of this mount namespace (a bind on the same filesystem included,
    which `os.path.ismount` misses)."""
    with open("/proc/self/mountinfo") as f:
        return [_unescape(line.split()[4]) for line in f if line.strip()]


def mounted(path: Path) -> bool:
    return str(path) in mount_points()


def mounts_below(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    return [p for p in mount_points() if p.startswith(prefix)]


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        raise Invalid(f"{what}: {why}")


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise Invalid(f"invalid volume name {name!r}")


def ensure_named(root: Path, volume: Volume) -> Path:
    """The volume's directory on this node, created (and mounted, with driver_opts) if new."""
    _check_name(volume.name)
    try:
        how = local_mount(volume.driver_opts)
    except ValueError as exc:
        raise Invalid(f"volume {volume.name}: driver_opts: {exc}") from None
    path = root / volume.name
    path.mkdir(parents=True, exist_ok=True)
    path = path.resolve()  # as /proc/self/mountinfo spells it
    if how.plain or mounted(path):
        return path
    if how.bind and not Path(how.device).exists():
        raise Invalid(
            f"volume {volume.name}: bind device {how.device} does not exist",
            hint="create it on the node, or change the volume's driver_opts.device",
        )
    argv = ["mount", "-t", how.fstype] + (["-o", how.options] if how.options else [])
    _run([*argv, how.device, str(path)], f"volume {volume.name}: mount failed")
    return path


def copy_up(rootfs: Path, target: str, dest: Path) -> bool:
    """Docker's copy-up: the image's content at `target` into `dest` if `dest` is empty."""
    if any(dest.iterdir()):
        return False
    source = resolve_in_rootfs(rootfs, target)
    if source is None or not source.is_dir() or not any(source.iterdir()):
        return False
    _run(["cp", "-a", "--", f"{source}/.", f"{dest}/"], f"copying {target} into the volume")
    return True


def delete_local(root: Path, name: str) -> bool:
    """Unmount and delete a named volume's directory; False if there was none."""
    _check_name(name)
    path = (root / name).resolve()
    for _ in range(8):  # a mount may be stacked on another
        if not mounted(path):
            break
        _run(["umount", str(path)], f"volume {name}: umount failed")
    if mounted(path) or mounts_below(path):
        raise Conflict(f"volume {name}: something is still mounted at or below {path}")
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def _remove_tree(path: Path) -> None:
    if mounts_below(path):
        raise Conflict(f"{path}: something is still mounted below it")
    shutil.rmtree(path, ignore_errors=True)


# --- the hook ----------------------------------------------------------------------------------


def with_volumes(spec: ContainerSpec, mounts: list[ContainerMount]) -> ContainerSpec:
    """`spec` with the volume mounts added; parents before children (as Docker sorts them)."""
    if not mounts:
        return spec
    merged = sorted([*spec.mounts, *mounts], key=lambda m: len(Path(m.target).parts))
    return spec.model_copy(update={"mounts": merged})


class LocalVolumes:
    """Named and anonymous volumes of the tasks this node runs."""

    def __init__(self, client: AsyncClient, data_dir: Path, node_id: Callable[[], str]) -> None:
        self.client = client
        self.root = (data_dir / VOLUMES).resolve()
        self.anonymous_root = (data_dir / ANONYMOUS).resolve()
        self.node_id = node_id
        self._locks: dict[str, asyncio.Lock] = {}  # one preparation per volume at a time

    async def _record(self, task: Task, key: str, stack: Stack) -> Volume:
        name = volume_name(task.stack, key, stack.volumes.get(key))
        try:
            data = await self.client.request("GET", f"/v1/volumes/{name}")
        except NotFound:
            raise Invalid(
                f"volume {name} does not exist (removed?)",
                hint=f"deploy stack {task.stack} again: a deploy creates its missing volumes",
            ) from None
        volume = Volume.model_validate({k: v for k, v in data.items() if k in Volume.model_fields})
        if volume.removing:
            raise Conflict(f"volume {name} is being removed")
        if volume.node_id and volume.node_id != self.node_id():
            raise Invalid(f"volume {name} lives on node {volume.node_id}, not on this one")
        return volume

    async def prepare(self, task: Task, rootfs: str) -> list[ContainerMount]:
        """Create (or find) every volume the task mounts, copy-up where due; their mounts."""
        entries = [v for v in task.spec.volumes or [] if v.type == "volume"]
        if not entries:
            return []
        stack: Stack | None = None
        if any(v.source for v in entries):
            stack = Stack.model_validate(
                await self.client.request("GET", f"/v1/stacks/{task.stack}")
            )
        out: list[ContainerMount] = []
        for index, entry in enumerate(entries):
            if entry.source and stack is not None:
                volume = await self._record(task, entry.source, stack)
                lock = self._locks.setdefault(volume.name, asyncio.Lock())
                async with lock:
                    path = await asyncio.to_thread(ensure_named, self.root, volume)
                    source = await asyncio.to_thread(self._fill, path, entry, rootfs, volume.name)
            else:
                path = self.anonymous_root / task.id / str(index)
                await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
                source = await asyncio.to_thread(self._fill, path, entry, rootfs, "anonymous")
            out.append(
                ContainerMount(
                    source=str(source), target=entry.target or "/", read_only=bool(entry.read_only)
                )
            )
        return out

    @staticmethod
    def _fill(path: Path, entry: VolumeMount, rootfs: str, name: str) -> Path:
        """Copy-up into `path` unless told not to; the directory to mount (its subpath)."""
        options = entry.volume
        subpath = options.subpath if options and options.subpath else ""
        if subpath:
            found = (path / subpath).resolve()
            if not found.is_relative_to(path.resolve()) or not found.exists():
                raise Invalid(f"volume {name} has no subpath {subpath}", hint="create it first")
            return found
        if not (options and options.nocopy) and entry.target:
            copy_up(Path(rootfs), entry.target, path)
        return path

    def anonymous(self) -> set[str]:
        """Task ids that have anonymous volumes here."""
        if not self.anonymous_root.is_dir():
            return set()
        return {p.name for p in self.anonymous_root.iterdir() if p.is_dir()}

    async def release(self, task_id: str) -> None:
        """Delete a task's anonymous volumes (its container is gone)."""
        directory = self.anonymous_root / task_id
        if directory.exists():
            await asyncio.to_thread(_remove_tree, directory)


# --- the agent's HTTP endpoint -----------------------------------------------------------------

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def volumes_root(runtime: object) -> Path | None:
    """Where the agent keeps named volumes: beside the runtime's state directory, in the agent's
    data directory (None for a runtime without one)."""
    root = getattr(runtime, "root", None)
    return Path(root).parent / VOLUMES if root is not None else None


def delete_endpoint(root: Path | None, authorized: Callable[[HTTPConnection], bool]) -> Handler:
    """`DELETE /v1/volumes/{name}`: unmount and delete a volume's data on this node (the server
    has checked that no task uses it)."""

    async def delete(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": {"kind": "Unauthorized", "message": "bad token"}}, 401)
        name = request.path_params["name"]
        try:
            if root is None:
                raise Invalid("this agent's runtime keeps no volumes")
            existed = await asyncio.to_thread(delete_local, root, name)
        except ShoalError as exc:
            status = 409 if isinstance(exc, Conflict) else 400
            error = {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint}
            return JSONResponse({"error": error}, status)
        return JSONResponse({"removed": name, "existed": existed})

    return delete
