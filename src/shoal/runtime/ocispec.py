"""The OCI runtime `config.json` for one container, from its `ContainerSpec` (pure functions).

Defaults follow Docker's, so workloads behave as they do under `docker run`: its default
capability set (± `cap_add`/`cap_drop`), masked and read-only /proc and /sys paths, new pid,
ipc, uts, mount and network namespaces (or the given netns), /dev as a tmpfs with the standard
devices, `no_new_privileges` and the default seccomp profile on. With `init`, tini runs as PID 1
(bound read-only at /dev/init, so the rootfs is not touched) and forwards signals to the
command. Everything read from the disk (the rootfs's /etc/passwd, the seccomp profile, the
host's capabilities) is passed in, so the output depends only on the arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.model.errors import Invalid

from .base import ContainerSpec
from .seccomp import to_oci

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_TARGET = "/dev/init"
CPU_PERIOD = 100_000  # µs, the kernel's default CFS period

DOCKER_DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_RLIMIT_NAMES = (
    "as core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
    "sigpending stack"
)
RLIMITS = frozenset(_RLIMIT_NAMES.split())


@dataclass(frozen=True)
class User:
    """A resolved `user:` value."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


@dataclass(frozen=True)
class Host:
    """What the config depends on beyond the spec: facts about this machine and its files."""

    init_path: str | None = None
    seccomp_profile: dict[str, Any] | None = None  # Docker format; see seccomp.py
    host_caps: tuple[str, ...] = DOCKER_DEFAULT_CAPS
    max_rlimits: dict[str, int] = field(default_factory=dict)  # hard limits we may not exceed
    cgroup_parent: str = "shoal"


def _cap(name: str) -> str:
    name = name.strip().upper()
    return name if name.startswith("CAP_") or name == "ALL" else "CAP_" + name


def capabilities(spec: ContainerSpec, host_caps: tuple[str, ...]) -> list[str]:
    """Docker's rule: the default set, plus `cap_add`, minus `cap_drop` (`ALL` allowed in
    both); privileged gets everything the host has."""
    if spec.privileged:
        return sorted(host_caps)
    add = {_cap(c) for c in spec.cap_add}
    drop = {_cap(c) for c in spec.cap_drop}
    caps = set() if "ALL" in drop else set(DOCKER_DEFAULT_CAPS)
    caps |= set(host_caps) if "ALL" in add else add
    caps -= drop
    unknown = caps - set(host_caps) - set(DOCKER_DEFAULT_CAPS)
    if unknown:
        raise Invalid(
            f"unknown or unavailable capabilities: {', '.join(sorted(unknown))}",
            hint="use names like NET_ADMIN; the host itself must hold them",
        )
    return sorted(caps)


def _lookup(text: str, key: str, key_index: int) -> list[str] | None:
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[key_index] == key:
            return fields
    return None


def resolve_user(user: str | None, passwd: str, group: str) -> User:
    """`name|uid[:group|gid]` against the rootfs's /etc/passwd and /etc/group text (Docker's
    rules: a bare uid needs no passwd entry and gets gid 0; names must exist)."""
    if not user:
        entry = _lookup(passwd, "0", 2)
        return User(home=entry[5] if entry and len(entry) > 5 else "/root")
    name, _, grp = user.partition(":")
    entry = _lookup(passwd, name, 2 if name.isdigit() else 0)
    if entry is None and not name.isdigit():
        raise Invalid(
            f"user {name!r} is not in the image's /etc/passwd", hint="use a numeric uid:gid"
        )
    try:
        uid = int(name) if name.isdigit() else int(entry[2])  # type: ignore[index]
        gid = int(entry[3]) if entry else 0
    except ValueError:
        raise Invalid(f"user {name!r}: malformed /etc/passwd entry") from None
    home = entry[5] if entry and len(entry) > 5 and entry[5] else "/"
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            gentry = _lookup(group, grp, 0)
            if gentry is None:
                raise Invalid(f"group {grp!r} is not in the image's /etc/group")
            gid = int(gentry[2])
    extra: list[int] = []
    if entry:
        for line in group.splitlines():
            fields = line.split(":")
            member = len(fields) >= 4 and entry[0] in fields[3].split(",")
            if member and fields[2].isdigit() and int(fields[2]) != gid:
                extra.append(int(fields[2]))
    return User(uid=uid, gid=gid, additional_gids=tuple(extra), home=home)


def _rlimits(spec: ContainerSpec, max_rlimits: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for name, (soft, hard) in sorted(spec.ulimits.items()):
        if name not in RLIMITS:
            raise Invalid(f"unknown ulimit {name!r}", hint=f"one of {', '.join(sorted(RLIMITS))}")
        if soft > hard:
            raise Invalid(f"ulimit {name}: soft limit {soft} is above the hard limit {hard}")
        ceiling = max_rlimits.get(name)
        if ceiling is not None:  # raising a hard limit needs CAP_SYS_RESOURCE: clamp instead
            hard, soft = min(hard, ceiling), min(soft, ceiling)
        out.append({"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard})
    return out


def _mount(target: str, type: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": target, "type": type, "source": source, "options": options}


def _tmpfs_options(options: str) -> list[str]:
    given = [o.strip() for o in options.split(",") if o.strip()]
    base = ["nosuid", "nodev"] + ([] if "exec" in given else ["noexec"])
    return base + [o for o in given if o not in base]


def mounts(spec: ContainerSpec, init_path: str | None) -> list[dict[str, Any]]:
    """The standard container filesystems, then tmpfs, binds, files and tini; a user mount at
    one of the standard targets replaces it."""
    sys_ro = [] if spec.privileged else ["ro"]
    defaults = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _mount(
            "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        ),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", *sys_ro]),
        _mount(
            "/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", *sys_ro]
        ),
    ]
    extra = [_mount(t, "tmpfs", "tmpfs", _tmpfs_options(o)) for t, o in sorted(spec.tmpfs.items())]
    for m in spec.mounts:
        options = ["rbind", "ro" if m.read_only else "rw"]
        extra.append(_mount(m.target, "bind", m.source, options))
    for target, source in sorted(spec.files.items()):
        extra.append(_mount(target, "bind", source, ["bind", "ro", "nosuid", "nodev"]))
    if spec.init and init_path:
        extra.append(_mount(INIT_TARGET, "bind", init_path, ["bind", "ro", "nosuid", "nodev"]))
    taken = {m["destination"] for m in extra}
    return [m for m in defaults if m["destination"] not in taken] + extra


def resources(spec: ContainerSpec) -> dict[str, Any]:
    r = spec.resources
    out: dict[str, Any] = {"devices": [{"allow": spec.privileged, "access": "rwm"}]}
    memory: dict[str, int] = {}
    if r.memory is not None:
        memory["limit"] = r.memory
    if r.memory_reservation is not None:
        memory["reservation"] = r.memory_reservation
    if memory:
        out["memory"] = memory
    if r.cpus is not None:
        out["cpu"] = {"quota": max(1000, round(r.cpus * CPU_PERIOD)), "period": CPU_PERIOD}
    if r.pids is not None:
        out["pids"] = {"limit": r.pids}
    return out


def build_config(spec: ContainerSpec, user: User, host: Host) -> dict[str, Any]:
    """The whole `config.json` for `spec`, whose `rootfs` must be set."""
    if not spec.rootfs:
        raise Invalid(f"container {spec.id!r} has no rootfs", hint="prepare the image first")
    if spec.init and not host.init_path:
        raise Invalid("init requested but no init binary (tini) is configured")
    env = {"PATH": DEFAULT_PATH, "HOME": user.home, **spec.env}
    hostname = spec.hostname or spec.id[:12]
    env.setdefault("HOSTNAME", hostname)
    args = [INIT_TARGET, "--", *spec.command] if spec.init else list(spec.command)
    caps = capabilities(spec, host.host_caps)
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": spec.working_dir or "/",
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": spec.no_new_privileges and not spec.privileged,
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    rlimits = _rlimits(spec, host.max_rlimits)
    if rlimits:
        process["rlimits"] = rlimits
    netns: dict[str, str] = {"type": "network"}
    if spec.netns:
        netns["path"] = spec.netns
    linux: dict[str, Any] = {
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")] + [netns],
        "cgroupsPath": f"/{host.cgroup_parent}/{spec.id}",
        "resources": resources(spec),
    }
    if spec.sysctls:
        linux["sysctl"] = dict(spec.sysctls)
    if not spec.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if spec.seccomp and host.seccomp_profile is not None:
            linux["seccomp"] = to_oci(host.seccomp_profile, caps)
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": spec.rootfs, "readonly": spec.read_only},
        "hostname": hostname,
        "mounts": mounts(spec, host.init_path),
        "linux": linux,
    }


# Capability names by number (linux/capability.h), to name the host's bounding set.
_CAP_WORDS = (
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
    "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
    "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
    "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
    "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
    "checkpoint_restore"
)
CAP_NAMES = tuple("CAP_" + n.upper() for n in _CAP_WORDS.split())


def caps_from_mask(mask: int) -> tuple[str, ...]:
    """`CapBnd:` of /proc/<pid>/status (as an int) → capability names."""
    return tuple(name for bit, name in enumerate(CAP_NAMES) if mask >> bit & 1)


# The rest reads the rootfs (the only I/O here): what `build_config` and `start` need from it.


def resolve_in_rootfs(rootfs: Path, path: str) -> Path | None:
    """`path` as the container would see it, symlinks resolved inside `rootfs` (an absolute
    link restarts at the rootfs, never the host's /), or None when it does not exist."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current, hops = rootfs, 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != rootfs else rootfs
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = rootfs
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        if not os.path.lexists(candidate):
            return None
        current = candidate
    return current


def read_rootfs_file(rootfs: Path, path: str) -> str:
    found = resolve_in_rootfs(rootfs, path)
    if found is None or not found.is_file():
        return ""
    return found.read_text(errors="replace")


def check_command(spec: ContainerSpec) -> tuple[int, str] | None:
    """(exit code, error) when the command surely cannot run in the rootfs: 127 when missing,
    126 when not executable (shells' codes); None when it can, or when a mount may provide it."""
    assert spec.rootfs is not None
    rootfs, argv0 = Path(spec.rootfs), spec.command[0]
    if "/" in argv0:
        base = spec.working_dir or "/"
        candidates = [argv0 if argv0.startswith("/") else f"{base.rstrip('/')}/{argv0}"]
    else:
        search = spec.env.get("PATH", DEFAULT_PATH)
        candidates = [f"{d.rstrip('/')}/{argv0}" for d in search.split(":") if d.startswith("/")]
    targets = [m.target for m in spec.mounts] + [*spec.files, *spec.tmpfs]
    denied = False
    for candidate in candidates:
        if any(candidate == t or candidate.startswith(t.rstrip("/") + "/") for t in targets):
            return None
        found = resolve_in_rootfs(rootfs, candidate)
        if found is not None and found.is_file():
            if os.access(found, os.X_OK):
                return None
            denied = True
    if denied:
        return 126, f"exec {argv0}: permission denied"
    where = "" if "/" in argv0 else " in $PATH"
    return 127, f"exec {argv0}: no such file or directory{where}"
