"""The default seccomp profile, converted to the OCI runtime-spec form runc reads.

The source is the profile Podman and CRI-O ship (`/usr/share/containers/seccomp.json`, Debian
package `golang-github-containers-common`): Docker's format, with an `archMap` and rules that
apply only `includes`/`excludes` given capabilities, architectures or kernel versions. The OCI
form has none of that: `to_oci` keeps the rules that apply to this container (its capabilities,
this machine's architecture and kernel) and lists the architectures. A tiny hand-written
allow-list is no substitute: runc itself needs many syscalls after the filter is loaded.
"""

from __future__ import annotations

import json
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

from shoal.model.errors import Unavailable

DEFAULT_PROFILE = Path("/usr/share/containers/seccomp.json")

# Go's GOARCH names (used in `includes.arches`) for the machine's `uname -m`.
_GOARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
}
# The seccomp architecture of each GOARCH, to pick the `archMap` entry.
_SCMP_ARCH = {
    "amd64": "SCMP_ARCH_X86_64",
    "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM",
    "386": "SCMP_ARCH_X86",
    "s390x": "SCMP_ARCH_S390X",
    "ppc64le": "SCMP_ARCH_PPC64LE",
}


def _kernel_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split("-")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _applies(
    rule: dict[str, Any], caps: frozenset[str], goarch: str, kernel: tuple[int, ...]
) -> bool:
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("caps") and not set(includes["caps"]) <= caps:
        return False
    if includes.get("arches") and goarch not in includes["arches"]:
        return False
    if includes.get("minKernel") and kernel < _kernel_tuple(includes["minKernel"]):
        return False
    if excludes.get("caps") and set(excludes["caps"]) & caps:
        return False
    return not (excludes.get("arches") and goarch in excludes["arches"])


def to_oci(
    profile: dict[str, Any],
    caps: list[str] | frozenset[str],
    *,
    machine: str | None = None,
    kernel: str | None = None,
) -> dict[str, Any]:
    """The OCI `linux.seccomp` object for a container holding `caps` (names like CAP_CHOWN)."""
    goarch = _GOARCH.get(machine or platform.machine(), machine or platform.machine())
    release = _kernel_tuple(kernel or platform.release())
    held = frozenset(caps)
    native = _SCMP_ARCH.get(goarch)
    arches: list[str] = []
    for arch in profile.get("archMap") or []:
        if arch.get("architecture") == native:
            arches = [arch["architecture"], *arch.get("subArchitectures", [])]
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": arches}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    syscalls: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, held, goarch, release):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        entry: dict[str, Any] = {"names": list(names), "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            entry["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            entry["args"] = [
                {k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                for a in rule["args"]
            ]
        syscalls.append(entry)
    out["syscalls"] = syscalls
    return out


@lru_cache(maxsize=4)
def load_profile(path: Path = DEFAULT_PROFILE) -> dict[str, Any]:
    """The Docker-format profile at `path` (read once per process)."""
    try:
        profile = json.loads(path.read_text())
    except FileNotFoundError:
        raise Unavailable(
            f"no seccomp profile at {path}",
            hint="apt-get install golang-github-containers-common, or set seccomp: false",
        ) from None
    except ValueError as exc:
        raise Unavailable(f"seccomp profile {path} is not valid JSON: {exc}") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise Unavailable(f"seccomp profile {path} has no defaultAction")
    return profile
