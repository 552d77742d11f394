"""Docker's colon-separated specs: short port syntax and short volume syntax.

`parse_port` and `parse_volume` follow compose-go (`types.ParsePortConfig`, `format.ParseVolume`)
and its exact error texts, so users see the messages they know. Deviations: ports of a range come
out in numeric order, and a one-letter volume name is not mistaken for a Windows drive.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from shoal.model.errors import Invalid

__all__ = ["clean_target", "normalize_port", "parse_port", "parse_volume"]

# --- ports -------------------------------------------------------------------------------------

_PROTOCOLS = frozenset({"tcp", "udp", "sctp"})
_DIGITS = re.compile(r"[0-9]+")


def _port_number(text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ValueError(text)
    number = int(text)
    if number > 65535:
        raise ValueError(text)
    return number


def _port_range(text: str) -> tuple[int, int]:
    if "-" not in text:
        number = _port_number(text)
        return number, number
    start_text, _, end_text = text.partition("-")
    start, end = _port_number(start_text), _port_number(end_text)
    if end < start:
        raise ValueError(text)
    return start, end


def _valid_ip(text: str) -> bool:
    if "%" in text:  # zoned IPv6 addresses cannot be published on
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _split_port_spec(raw: str) -> tuple[str, str, str]:
    """`[ip:][host:]container` split the way Docker does: IPv6 hosts keep their inner colons."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _split_proto(container: str) -> tuple[str, str]:
    if not container or container.startswith("/"):
        return "", ""
    port, slash, proto = container.partition("/")
    if not slash:
        return "tcp", container
    return (proto.split("/")[0] or "tcp"), port


def _port_entry(target: int, protocol: str) -> dict[str, Any]:
    return {"target": target, "protocol": protocol, "mode": "ingress"}


def parse_port(spec: str | int) -> list[dict[str, Any]]:
    """Short port syntax `[[ip:]host:]container[/proto]` → long-form entries (ranges expanded).

    Follows Docker's `nat.ParsePortSpec`: a container range maps one-to-one onto an equally long
    host range; a single container port with a host range keeps the range as `published`.
    """
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise Invalid(f"invalid type {type(spec).__name__} for port")
    if isinstance(spec, int):
        if not 0 <= spec <= 65535:
            raise Invalid(f"Invalid containerPort: {spec}")
        return [_port_entry(spec, "tcp")]

    ip, host, container = _split_port_spec(spec)
    proto, container = _split_proto(container)
    if ip.startswith("["):
        if not ip.endswith("]"):
            raise Invalid(f"Invalid ip address: {ip}")
        ip = ip[1:-1]
    if ip and not _valid_ip(ip):
        raise Invalid(f"Invalid ip address: {ip}")
    if not container:
        raise Invalid(f"No port specified: {spec}<empty>")
    try:
        start, end = _port_range(container)
    except ValueError:
        raise Invalid(f"Invalid containerPort: {container}") from None
    host_start = host_end = 0
    if host:
        try:
            host_start, host_end = _port_range(host)
        except ValueError:
            raise Invalid(f"Invalid hostPort: {host}") from None
        if end - start != host_end - host_start and end != start:
            raise Invalid(
                f"Invalid ranges specified for container and host Ports: {container} and {host}"
            )
    if proto.lower() not in _PROTOCOLS:
        raise Invalid(f"Invalid proto: {proto}")

    entries = []
    for offset in range(end - start + 1):
        entry = _port_entry(start + offset, proto.lower())
        if host:
            if start == end and host_start != host_end:
                entry["published"] = f"{host_start}-{host_end}"
            else:
                entry["published"] = str(host_start + offset)
        if ip:
            entry["host_ip"] = ip
        entries.append(entry)
    return entries


def normalize_port(port: Mapping[str, Any]) -> dict[str, Any]:
    """Long port syntax with the defaults filled in: `published` a string, `target` an int."""
    out = dict(port)
    target = out.get("target")
    if isinstance(target, str) and _DIGITS.fullmatch(target):
        out["target"] = int(target)
    published = out.get("published")
    if isinstance(published, int) and not isinstance(published, bool):
        out["published"] = str(published)
    elif published is None or published == "":
        out.pop("published", None)
    out.setdefault("protocol", "tcp")
    out.setdefault("mode", "ingress")
    return out


# --- volumes -----------------------------------------------------------------------------------

_PROPAGATIONS = frozenset({"rprivate", "private", "rshared", "shared", "rslave", "slave"})
_SELINUX = frozenset({"z", "Z"})


_PATH_START = re.compile(r"[/\\]|[A-Za-z]:[/\\]")


def _is_drive_colon(spec: str, index: int, buffer: list[str], first: bool) -> bool:
    """Is the colon at `index`, after a one-letter field, a Windows drive's (`C:\\data`)?

    compose-go says yes for any letter, which makes `v:/data` an anonymous volume. A source
    is the one place a volume name can stand, so there a letter followed by `:/` is a drive only
    when a container path follows (`C:/data:/data`); otherwise (`v:/data`) it names a volume.
    """
    if len(buffer) != 1 or not buffer[0].isalpha():
        return False
    if not first or spec[index + 1 : index + 2] != "/":
        return True
    next_colon = spec.find(":", index + 1)
    return next_colon >= 0 and bool(_PATH_START.match(spec, next_colon + 1))


def _is_host_path(source: str) -> bool:
    if not source:
        return False
    if source[0] in "./~" or source.startswith("\\\\"):
        return True
    return len(source) > 1 and source[0].isalpha() and source[1] == ":"


def _split_volume_spec(spec: str) -> list[str]:
    """Split on colons, except a drive letter's and those inside `${...}` (interpolation left)."""
    fields: list[str] = []
    buffer: list[str] = []
    depth = 0
    for index, char in enumerate(spec):
        if char == "$" and spec[index + 1 : index + 2] == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif char == ":" and not depth and not _is_drive_colon(spec, index, buffer, not fields):
            if not buffer:
                raise Invalid(f"invalid spec: {spec}: empty section between colons")
            fields.append("".join(buffer))
            buffer = []
            if len(fields) == 3:
                raise Invalid(f"invalid spec: {spec}: too many colons")
            continue
        buffer.append(char)
    if not buffer:
        raise Invalid(f"invalid spec: {spec}: empty section between colons")
    fields.append("".join(buffer))
    return fields


def clean_target(path: str) -> str:
    """Lexical clean-up of a container path (Go's `path.Clean`), so merges compare targets."""
    if not path:
        return path
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def parse_volume(spec: str) -> dict[str, Any]:
    """Short volume syntax `[source:]target[:options]` → long form.

    A source starting with `.`, `/`, `~`, `\\\\` or a drive letter is a bind mount (created on
    the host if missing, as docker-compose always did); anything else names a volume.
    Unknown options are ignored, like compose-go.
    """
    if not isinstance(spec, str):
        raise Invalid(f"invalid type {type(spec).__name__} for service volume mount")
    if not spec:
        raise Invalid("invalid empty volume spec")
    if len(spec) <= 2:
        return {"type": "volume", "target": clean_target(spec), "volume": {}}

    fields = _split_volume_spec(spec)
    out: dict[str, Any] = {}
    if len(fields) == 1:
        out["target"] = clean_target(fields[0])
    else:
        out["source"], out["target"] = fields[0], clean_target(fields[1])
    read_only = False
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    for option in fields[2].split(",") if len(fields) == 3 else ():
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option == "nocopy":
            volume["nocopy"] = True
        elif option in _PROPAGATIONS:
            bind["propagation"] = option
        elif option in _SELINUX:
            bind["selinux"] = option
    if read_only:
        out["read_only"] = True
    if _is_host_path(out.get("source", "")):
        out["type"] = "bind"
        out["bind"] = {"create_host_path": True, **bind}
        if volume:
            out["volume"] = volume
    else:
        out["type"] = "volume"
        out["volume"] = volume
        if bind:
            out["bind"] = bind
    return out
