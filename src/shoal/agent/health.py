"""Health checks run by the agent: Compose `healthcheck`, the image's HEALTHCHECK, and shoal's
own http/tcp probes — so traffic (DNS, VIPs, published ports) only reaches tasks that answer.

Which check (Docker's rules): the service's `healthcheck` overrides the image's HEALTHCHECK field
by field (`test`, `interval` 30s, `timeout` 30s, `retries` 3, `start_period` 0s, `start_interval`
5s; a zero or missing field inherits). `disable: true` or `test: ["NONE"]`: no check.
`["CMD", arg…]` runs argv in the container; `["CMD-SHELL", "cmd"]` (a plain string in Compose)
runs `/bin/sh -c cmd` (the image's `Shell` if it has one).

shoal's probes, run by the agent itself against the task's first address, from inside the
task's network namespace (127.0.0.1 for a task without a network of its own), so the image
needs neither a shell nor a client::

    services:
      web:
        healthcheck:                       # timing fields as usual, no `test`
          interval: 1s
          x-shoal: {http: {port: 8080, path: /health, status: 200}}
      db:
        x-shoal:
          healthcheck: {tcp: {port: 5432}, interval: 2s, retries: 5}

`http`: `port` (required, 1–65535), `path` (default `/`), `status` (one code; default any of
200–399, as Kubernetes). `tcp`: `port`; passes once a connection is accepted. Exactly one of the
two. The service-level block may also carry `interval`, `timeout`, `retries`, `start_period` and
`start_interval`, which win over `healthcheck:`'s. A probe together with a `healthcheck.test`,
or in both places, is an error: say once what runs. `disable: true` still turns everything off.

Timing and status (Docker's): the first probe runs `start_interval` after the container started
while within `start_period` (else `interval`), each next one that long after the previous ended.
The status is `starting` until a probe passes, `healthy` after a pass, `unhealthy` after
`retries` consecutive failures; failures while `starting` within `start_period` do not count.
A probe that outlives `timeout` fails ("timed out after 1s") and its process is killed.

Pure parts: `resolve` (spec + image config → `Check`), `next_delay`, `observe`; `Monitor` is
the loop (sleep, probe, observe; calls back only when the status changes). Running one probe
is `health_probes.probe`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

from shoal.images.manifest import ContainerConfig
from shoal.model.cluster import HealthResult, TaskStatus
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid, Unavailable
from shoal.model.units import format_duration, parse_duration

log = logging.getLogger(__name__)

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
LOG_SIZE = 5
OUTPUT_LIMIT = 4096  # bytes of a probe's output kept, as Docker
EXIT_TIMED_OUT = -1
DEFAULTS = {
    "interval": 30.0,
    "timeout": 30.0,
    "retries": 3,
    "start_period": 0.0,
    "start_interval": 5.0,
}
_TIMING = ("interval", "timeout", "retries", "start_period", "start_interval")
_IMAGE_FIELDS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "retries": "Retries",
    "start_period": "StartPeriod",
    "start_interval": "StartInterval",
}
_PROBE_KEYS = {"http": ("port", "path", "status"), "tcp": ("port",)}
_SERVICE_BLOCK = "x-shoal.healthcheck"
_CHECK_BLOCK = "healthcheck.x-shoal"
_PROBE_HINT = "e.g. `x-shoal: {healthcheck: {http: {port: 8080, path: /health}}}`"


@dataclass(frozen=True)
class Check:
    """One resolved health check; durations in seconds."""

    kind: Literal["exec", "http", "tcp"]
    argv: tuple[str, ...] = ()
    port: int = 0
    path: str = "/"
    status: int | None = None  # http: the one code that passes; None: 200–399
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    start_interval: float = 5.0


@dataclass(frozen=True)
class HealthState:
    status: str = STARTING
    failing_streak: int = 0
    log: tuple[HealthResult, ...] = field(default_factory=tuple)

    def apply(self, status: TaskStatus) -> TaskStatus:
        """`status` with these health fields."""
        update = {"health": self.status, "health_log": list(self.log)}
        return status.model_copy(update={**update, "failing_streak": self.failing_streak})


# --- where the check comes from ----------------------------------------------------------


def resolve(spec: ServiceSpec, image: ContainerConfig | None = None) -> Check | None:
    """The check a task of `spec` runs (None: none); `Invalid` for a malformed one."""
    own = spec.healthcheck
    if own is not None and own.disable:
        return None
    probe, timing = _shoal_probe(spec)
    test = list(own.test) if own is not None and own.test else None
    if probe is not None and test is not None:
        raise Invalid(
            "healthcheck: both `test` and an x-shoal http/tcp probe are given",
            hint="keep one of them: the probe replaces the command",
        )
    from_image = image.Healthcheck if image is not None else None
    if probe is None:
        test = test or (list(from_image.Test) if from_image and from_image.Test else None)
        if not test or test[0] == "NONE":
            return None
    values: dict[str, Any] = {}
    for name in _TIMING:
        values[name] = _timing(name, timing, own, from_image)
    if probe is not None:
        return Check(**probe, **values)
    assert test is not None
    return Check(kind="exec", argv=_argv(test, image), **values)


def validate(spec: ServiceSpec) -> None:
    """Raise `Invalid` when the service's own health check settings are malformed."""
    resolve(spec)


def _argv(test: list[str], image: ContainerConfig | None) -> tuple[str, ...]:
    kind, rest = test[0], test[1:]
    if kind == "CMD" and rest:
        return tuple(rest)
    if kind == "CMD-SHELL" and rest:
        shell = list(image.Shell) if image is not None and image.Shell else ["/bin/sh", "-c"]
        return (*shell, " ".join(rest))
    raise Invalid(
        f"healthcheck.test: {test!r} is not a check",
        hint='write ["CMD", "prog", "arg"], ["CMD-SHELL", "command"], a string, or ["NONE"]',
    )


def _timing(name: str, block: Mapping[str, Any], own: Any, image: Any) -> float | int:
    """A timing field: the x-shoal block's, the service's, the image's, Docker's default."""
    if name in block:
        value: Any = block[name]
    else:
        value = getattr(own, name, None) if own is not None else None
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if not value and image is not None:
            raw = getattr(image, _IMAGE_FIELDS[name])
            value = (raw if name == "retries" else raw / 1e9) if raw else None
    if not value:
        return DEFAULTS[name]
    if value < 0 or (name != "retries" and 0 < value < 0.001):
        raise Invalid(f"healthcheck.{name}: must be at least 1ms, not {value}s")
    return value  # type: ignore[no-any-return]


def _shoal_probe(spec: ServiceSpec) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The x-shoal probe (Check fields) and the timing fields its block sets."""
    ext = spec.extensions.get("x-shoal")
    at_service = ext.get("healthcheck") if isinstance(ext, dict) else None
    at_check = spec.healthcheck.extensions.get("x-shoal") if spec.healthcheck else None
    if at_service is not None and at_check is not None:
        raise Invalid(
            f"{_SERVICE_BLOCK} and {_CHECK_BLOCK} are both given",
            hint="give the probe in one place",
        )
    if at_service is not None:
        return _probe_block(at_service, _SERVICE_BLOCK, with_timing=True)
    if at_check is not None:
        return _probe_block(at_check, _CHECK_BLOCK, with_timing=False)
    return None, {}


def _probe_block(
    block: Any, where: str, *, with_timing: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    allowed = ("http", "tcp", *(_TIMING if with_timing else ()))
    if not isinstance(block, dict):
        raise Invalid(f"{where}: must be a mapping", hint=_PROBE_HINT)
    unknown = sorted(str(k) for k in block if k not in allowed)
    if unknown:
        raise Invalid(
            f"{where}: unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(allowed)}"
        )
    kinds = [k for k in ("http", "tcp") if k in block]
    if len(kinds) != 1:
        raise Invalid(f"{where}: give exactly one of `http` or `tcp`", hint=_PROBE_HINT)
    kind = kinds[0]
    probe = _probe_fields(kind, block[kind], f"{where}.{kind}")
    timing = {k: _timing_value(k, v, f"{where}.{k}") for k, v in block.items() if k in _TIMING}
    return probe, timing


def _probe_fields(kind: str, body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid(f"{where}: must be a mapping", hint=_PROBE_HINT)
    unknown = sorted(str(k) for k in body if k not in _PROBE_KEYS[kind])
    if unknown:
        known = ", ".join(_PROBE_KEYS[kind])
        raise Invalid(f"{where}: unknown key {unknown[0]!r}", hint=f"known keys: {known}")
    if "port" not in body:
        raise Invalid(f"{where}: `port` is required", hint=_PROBE_HINT)
    fields: dict[str, Any] = {
        "kind": kind,
        "port": _number(body["port"], f"{where}.port", 1, 65535),
    }
    if "path" in body:
        path = body["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise Invalid(f"{where}.path: must start with '/', not {path!r}", hint="e.g. /health")
        fields["path"] = path
    if "status" in body:
        fields["status"] = _number(body["status"], f"{where}.status", 100, 599)
    return fields


def _number(value: Any, where: str, low: int, high: int) -> int:
    """A whole number in [low, high]; digits in a string too (what interpolation gives)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{where}: must be a whole number from {low} to {high}, not {value!r}")
    return value


def _timing_value(name: str, value: Any, where: str) -> float | int:
    if name == "retries":
        return _number(value, where, 0, 1_000_000)
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise Invalid(f"{where}: {exc}", hint="a duration such as 1s, 500ms or 1m30s") from None


# --- the state machine (pure) ------------------------------------------------------------


def initial(status: TaskStatus) -> HealthState:
    """Where a monitor starts: what the task record says (an agent restart keeps `healthy`)."""
    known = status.health if status.health in (HEALTHY, UNHEALTHY) else STARTING
    return HealthState(known, status.failing_streak, tuple(status.health_log[-LOG_SIZE:]))


def next_delay(check: Check, state: HealthState, now: float, started_at: float) -> float:
    """Seconds until the next probe: `start_interval` while starting within the start period."""
    in_start = state.status == STARTING and now - started_at < check.start_period
    return check.start_interval if in_start else check.interval


def observe(
    check: Check, state: HealthState, result: HealthResult, started_at: float
) -> HealthState:
    """The health after one more probe result."""
    log = (*state.log, result)[-LOG_SIZE:]
    if result.exit_code == 0:
        return HealthState(HEALTHY, 0, log)
    if state.status == STARTING and result.start - started_at < check.start_period:
        return replace(state, log=log)  # still starting up: does not count
    streak = state.failing_streak + 1
    return HealthState(UNHEALTHY if streak >= check.retries else state.status, streak, log)


def make_result(start: float, end: float, exit_code: int, output: str) -> HealthResult:
    data = output.encode(errors="replace")
    if len(data) > OUTPUT_LIMIT:
        output = data[:OUTPUT_LIMIT].decode(errors="ignore")
    return HealthResult(start=start, end=end, exit_code=exit_code, output=output)


def timed_out(start: float, end: float, timeout: float) -> HealthResult:
    shown = format_duration(timedelta(seconds=timeout))
    return make_result(start, end, EXIT_TIMED_OUT, f"timed out after {shown}")


# --- the loop ----------------------------------------------------------------------------


class Monitor:
    """Probes one task's container until it is unhealthy (or cancelled). `on_change` hears of
    each status the server does not know yet (`reported`), with the log — never of every
    probe; one that fails with `Unavailable` is told again after the next probe. `unhealthy`
    is always told (it is the call to act), then the monitor ends."""

    def __init__(
        self,
        check: Check,
        run_probe: Callable[[], Awaitable[HealthResult]],
        state: HealthState,
        started_at: float,
        on_change: Callable[[HealthState], Awaitable[None]],
        *,
        reported: str = "",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.check = check
        self.state = state
        self.started_at = started_at
        self.reported = reported
        self._probe = run_probe
        self._on_change = on_change
        self._clock = clock
        self._sleep = sleep

    async def run(self) -> None:
        while True:
            if self.state.status != self.reported or self.state.status == UNHEALTHY:
                try:
                    await self._on_change(self.state)
                    self.reported = self.state.status
                except Unavailable as exc:
                    log.warning("health %s not reported yet: %s", self.state.status, exc)
                else:
                    if self.reported == UNHEALTHY:
                        return
            await self._sleep(next_delay(self.check, self.state, self._clock(), self.started_at))
            result = await self._probe()
            self.state = observe(self.check, self.state, result, self.started_at)
