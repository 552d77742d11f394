"""The instructions that change only the image config: ENV, LABEL, USER, CMD, ENTRYPOINT, SHELL,
VOLUME, EXPOSE, HEALTHCHECK, STOPSIGNAL, MAINTAINER. Each is a pure function of the stage state.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from shoal.images.build.parser import Instruction
from shoal.images.build.state import StageState
from shoal.images.build.words import expand, key_values, split_words
from shoal.images.manifest import HealthConfig

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNIT_NS["h"] = 3600 * 10**9
_SIGNAL = re.compile(r"(SIG)?[A-Z][A-Z0-9+-]*|\d+")
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?")
DEFAULT_SHELL = ["/bin/sh", "-c"]


def parse_duration(text: str, inst: Instruction) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds."""
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise inst.error(f"invalid duration {text!r}", hint="use e.g. 30s, 1m30s or 500ms")
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if not text:
        raise inst.error("empty duration", hint="use e.g. 30s")
    return int(total)


def shell_of(state: StageState) -> list[str]:
    return list(state.config.Shell or DEFAULT_SHELL)


def command_of(state: StageState, inst: Instruction, text: str) -> list[str]:
    """Exec form as written, or the shell form wrapped in SHELL (default `/bin/sh -c`)."""
    if inst.json_args is not None:
        return list(inst.json_args)
    return [*shell_of(state), text]


def env(state: StageState, inst: Instruction, escape: str) -> None:
    for key, value in key_values(inst.args, state.env_map(), escape):
        state.set_env(key, value)


def label(state: StageState, inst: Instruction, escape: str) -> None:
    labels = dict(state.config.Labels or {})
    labels.update(key_values(inst.args, state.env_map(), escape))
    state.config.Labels = labels


def maintainer(state: StageState, inst: Instruction, escape: str) -> None:
    labels = dict(state.config.Labels or {})
    labels["maintainer"] = expand(inst.args, state.env_map(), escape)
    state.config.Labels = labels


def user(state: StageState, inst: Instruction, escape: str) -> None:
    value = expand(inst.args, state.env_map(), escape)
    if not value or " " in value:
        raise inst.error("USER takes one user[:group]", hint="e.g. USER nobody or USER 1000:1000")
    state.config.User = value


def cmd(state: StageState, inst: Instruction, escape: str) -> None:
    state.config.Cmd = command_of(state, inst, inst.args)
    state.cmd_set = True


def entrypoint(state: StageState, inst: Instruction, escape: str) -> None:
    state.config.Entrypoint = command_of(state, inst, inst.args)
    if not state.cmd_set:
        state.config.Cmd = None  # an inherited CMD does not survive a new ENTRYPOINT


def shell(state: StageState, inst: Instruction, escape: str) -> None:
    if not inst.json_args:
        raise inst.error("SHELL needs the JSON form", hint='e.g. SHELL ["/bin/sh", "-ec"]')
    state.config.Shell = list(inst.json_args)


def volume(state: StageState, inst: Instruction, escape: str) -> None:
    paths = (
        list(inst.json_args)
        if inst.json_args is not None
        else split_words(inst.args, state.env_map(), escape)
    )
    volumes = dict(state.config.Volumes or {})
    volumes.update({p: {} for p in paths})
    state.config.Volumes = volumes


def expose(state: StageState, inst: Instruction, escape: str) -> None:
    ports = dict(state.config.ExposedPorts or {})
    for word in split_words(inst.args, state.env_map(), escape):
        match = _PORT.fullmatch(word.lower())
        if not match:
            raise inst.error(f"invalid port {word!r}", hint="use PORT, PORT/tcp or PORT/udp")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not 0 < low <= high <= 65535:
            raise inst.error(f"invalid port range {word!r}", hint="ports are 1-65535")
        for port in range(low, high + 1):
            ports[f"{port}/{match.group(3) or 'tcp'}"] = {}
    state.config.ExposedPorts = ports


def stopsignal(state: StageState, inst: Instruction, escape: str) -> None:
    value = expand(inst.args, state.env_map(), escape)
    if not _SIGNAL.fullmatch(value):
        raise inst.error(f"invalid signal {value!r}", hint="e.g. SIGTERM, SIGQUIT or 9")
    state.config.StopSignal = value


def healthcheck(state: StageState, inst: Instruction, escape: str) -> None:
    kind, _, rest = inst.args.strip().partition(" ")
    if kind.upper() == "NONE":
        if inst.flags or rest.strip():
            raise inst.error("HEALTHCHECK NONE takes no options or arguments")
        state.config.Healthcheck = HealthConfig(Test=["NONE"])
        return
    if kind.upper() != "CMD" or not rest.strip():
        raise inst.error(
            "HEALTHCHECK needs CMD command or NONE",
            hint="e.g. HEALTHCHECK --interval=5s CMD wget -q -O- http://localhost/",
        )
    check = HealthConfig(
        Test=["CMD", *inst.json_args] if inst.json_args else ["CMD-SHELL", rest.strip()]
    )
    for key, value in inst.flags:
        if key in ("interval", "timeout", "start-period", "start-interval"):
            field = {"start-period": "StartPeriod", "start-interval": "StartInterval"}
            setattr(check, field.get(key, key.capitalize()), parse_duration(value, inst))
        elif key == "retries":
            if not value.isdigit():
                raise inst.error(f"invalid --retries {value!r}", hint="a whole number, e.g. 3")
            check.Retries = int(value)
        else:
            raise inst.error(
                f"unknown HEALTHCHECK option --{key}",
                hint="options: --interval --timeout --start-period --start-interval --retries",
            )
    state.config.Healthcheck = check


HANDLERS: dict[str, Callable[[StageState, Instruction, str], None]] = {
    "ENV": env,
    "LABEL": label,
    "MAINTAINER": maintainer,
    "USER": user,
    "CMD": cmd,
    "ENTRYPOINT": entrypoint,
    "SHELL": shell,
    "VOLUME": volume,
    "EXPOSE": expose,
    "STOPSIGNAL": stopsignal,
    "HEALTHCHECK": healthcheck,
}
