"""A container's cgroup on the host: where it lives, what it uses, and removing it.

runc (cgroupfs driver) puts a container with `cgroupsPath: /shoal/<id>` at
`/sys/fs/cgroup/<hierarchy>/shoal/<id>` in every v1 hierarchy (cpu and cpuacct are separate
here, and hybrid hosts also have `unified/`), or at `/sys/fs/cgroup/shoal/<id>` on a pure v2
host. `runc delete` leaves the parent `shoal/` directories behind: `remove` takes them too when
they are empty.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

CGROUP_ROOT = Path("/sys/fs/cgroup")
_V2_UNLIMITED = "max"


class CgroupStats(BaseModel):
    """Resource usage of one container, as `shoal stats` shows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_usage_ns: int | None = None
    memory_usage: int | None = None
    memory_limit: int | None = None
    pids_current: int | None = None
    pids_limit: int | None = None
    oom_kills: int = 0


def is_v2(root: Path = CGROUP_ROOT) -> bool:
    return (root / "cgroup.controllers").exists()


def directories(path: str, root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """The directory for cgroup `path` (like `/shoal/c1`) in each hierarchy, by hierarchy name
    (`""` for a pure v2 host). They need not exist."""
    rel = path.strip("/")
    if is_v2(root):
        return {"": root / rel}
    out: dict[str, Path] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(root.iterdir()):
            # Skip the symlinks (cpu -> cpu,cpuacct) so each hierarchy appears once.
            if entry.is_dir() and not entry.is_symlink():
                out[entry.name] = entry / rel
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return None


def _int(text: str | None) -> int | None:
    if text is None or text == _V2_UNLIMITED:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _int(value.strip())
    return None


def _v1_dir(dirs: dict[str, Path], controller: str) -> Path | None:
    for name, path in dirs.items():
        if controller in name.split(","):
            return path
    return None


def stats(path: str, root: Path = CGROUP_ROOT) -> CgroupStats | None:
    """Usage of cgroup `path`, or None once it is gone."""
    dirs = directories(path, root)
    if is_v2(root):
        d = dirs[""]
        if not d.is_dir():
            return None
        usage = _keyed(_read(d / "cpu.stat"), "usage_usec")
        return CgroupStats(
            cpu_usage_ns=None if usage is None else usage * 1000,
            memory_usage=_int(_read(d / "memory.current")),
            memory_limit=_int(_read(d / "memory.max")),
            pids_current=_int(_read(d / "pids.current")),
            pids_limit=_int(_read(d / "pids.max")),
            oom_kills=_keyed(_read(d / "memory.events"), "oom_kill") or 0,
        )
    memory, cpuacct, pids = (_v1_dir(dirs, c) for c in ("memory", "cpuacct", "pids"))
    if memory is None or not memory.is_dir():
        return None
    limit = _int(_read(memory / "memory.limit_in_bytes"))
    if limit is not None and limit >= 1 << 62:  # v1 writes "no limit" as a huge number
        limit = None
    return CgroupStats(
        cpu_usage_ns=_int(_read(cpuacct / "cpuacct.usage")) if cpuacct else None,
        memory_usage=_int(_read(memory / "memory.usage_in_bytes")),
        memory_limit=limit,
        pids_current=_int(_read(pids / "pids.current")) if pids else None,
        pids_limit=_int(_read(pids / "pids.max")) if pids else None,
        oom_kills=_keyed(_read(memory / "memory.oom_control"), "oom_kill") or 0,
    )


def oom_kills(path: str, root: Path = CGROUP_ROOT) -> int:
    found = stats(path, root)
    return found.oom_kills if found else 0


def remove(path: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Remove cgroup `path` in every hierarchy, then its parents while they are empty (another
    container's cgroup keeps them). Returns the leaf directories that could not be removed
    (a process still in them)."""
    left: list[Path] = []
    depth = len(path.strip("/").split("/"))
    for base in directories(path, root).values():
        d = base
        for level in range(depth):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:  # EBUSY: processes inside; ENOTEMPTY: a sibling's child cgroups
                if level == 0:
                    left.append(d)
                break
            d = d.parent
    return left


def leftovers(parent: str = "shoal", root: Path = CGROUP_ROOT) -> list[Path]:
    """Directories under `parent` in any hierarchy (a leak check for tests)."""
    found: list[Path] = []
    for base in directories(parent, root).values():
        if base.is_dir():
            found.append(base)
    return found
