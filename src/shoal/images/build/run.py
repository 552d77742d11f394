"""Running a RUN instruction: a runc container over an overlay of the image built so far.

The container gets a new, empty network namespace (so RUN has no network), Docker's default
capability set, and the stage's env, working directory and user. Its output is streamed to the
build log and the last lines are kept for the error report. The container is always deleted and
the overlay always unmounted, whatever happens.
"""

from __future__ import annotations

import collections
import contextlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.images.content import ContentStore
from shoal.images.rootfs import prepare_rootfs, release_rootfs
from shoal.model.errors import Invalid, Unavailable

CONTAINER_PREFIX = "shoal-build-"
_CAPS = [
    f"CAP_{c}"
    for c in [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SYS_CHROOT",
        "MKNOD",
        "AUDIT_WRITE",
        "SETFCAP",
    ]
]
_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
]


@dataclass(frozen=True, slots=True)
class RunSpec:
    args: list[str]
    env: list[str]
    cwd: str
    user: str  # as USER wrote it: name or uid, optionally :group


def _lookup(table: str, file: str, name: str, what: str) -> tuple[int, int]:
    """(id, primary gid) of `name` (or of the numeric id) in a passwd or group file's text."""
    for line in table.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and name in (fields[0], fields[2]):
            with contextlib.suppress(ValueError):
                return int(fields[2]), int(fields[3] if file == "passwd" else fields[2])
    if name.isdigit():
        return int(name), 0
    raise Invalid(
        f"{what} {name!r} is not in the image's /etc/{file}",
        hint="use a numeric id, or add the entry to the image first",
    )


def resolve_user(user: str, passwd: str, group: str) -> tuple[int, int]:
    """USER `name[:group]` or `uid[:gid]` → numeric (uid, gid), given the image's files."""
    name, _, group_name = user.partition(":")
    uid, gid = _lookup(passwd, "passwd", name, "user")
    if group_name:
        gid = _lookup(group, "group", group_name, "group")[0]
    return uid, gid


def _read(rootfs: Path, name: str) -> str:
    try:
        return (rootfs / "etc" / name).read_text(errors="replace")
    except OSError:
        return ""


def oci_config(rootfs: Path, spec: RunSpec, hostname: str) -> dict[str, Any]:
    """A runtime spec in the shape `runc spec` writes, adjusted for a build step."""
    uid, gid = (0, 0)
    if spec.user:
        uid, gid = resolve_user(spec.user, _read(rootfs, "passwd"), _read(rootfs, "group"))
    caps = list(_CAPS) if uid == 0 else []
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": _MOUNTS,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }


def _runc() -> str:
    found = shutil.which("runc")
    if not found:
        raise Unavailable("RUN needs runc, which is not installed", hint="apt-get install runc")
    return found


def run_step(
    store: ContentStore,
    image_digest: str,
    spec: RunSpec,
    workdir: Path,
    log: Callable[[str], None],
    on_success: Callable[[Path], None],
    tail: int = 20,
) -> None:
    """Run `spec` over `image_digest`; on exit 0 hand the overlay's upper dir to `on_success`.

    A non-zero exit raises `Invalid` carrying the exit code and the last `tail` lines.
    """
    runc = _runc()
    container_id = CONTAINER_PREFIX + secrets.token_hex(6)
    bundle = workdir / container_id
    bundle.mkdir(parents=True)
    last: collections.deque[str] = collections.deque(maxlen=tail)
    try:
        rootfs = prepare_rootfs(store, image_digest, bundle)
        config = oci_config(rootfs, spec, "shoal-build")
        (bundle / "config.json").write_text(json.dumps(config))
        with subprocess.Popen(
            [runc, "run", "--bundle", str(bundle), container_id],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                last.append(line)
                log(line)
            code = proc.wait()
        if code != 0:
            output = "\n".join(last) or "(no output)"
            raise RunFailed(code, output)
        on_success(bundle / "upper")
    finally:
        subprocess.run(
            [runc, "delete", "--force", container_id],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        release_rootfs(bundle)
        shutil.rmtree(bundle, ignore_errors=True)


class RunFailed(Exception):
    """The command exited non-zero (the executor turns this into `Invalid` with file:line)."""

    def __init__(self, code: int, output: str) -> None:
        super().__init__(f"exit code {code}")
        self.code = code
        self.output = output


def leftover_containers() -> list[str]:
    """Build containers runc still knows (for tests and cleanup)."""
    done = subprocess.run(
        [_runc(), "list", "--format", "json"], capture_output=True, text=True, check=False
    )
    try:
        listed = json.loads(done.stdout or "null") or []
    except ValueError:
        return []
    return [str(c["id"]) for c in listed if str(c.get("id", "")).startswith(CONTAINER_PREFIX)]


def with_default_path(env: list[str]) -> list[str]:
    """Ensure PATH is set, as Docker does for RUN when the image sets none."""
    if not any(e.startswith("PATH=") for e in env):
        return ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *env]
    return env
