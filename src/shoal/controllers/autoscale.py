"""Autoscaling decisions for `x-shoal: {autoscale: …}`: Kubernetes HPA's formula, pure.

A service names a floor and a ceiling of replicas and a target utilisation of its CPU and/or
memory limit. Every sample, each metric proposes `ceil(current × utilisation / target)`
(no change while the ratio is within ±TOLERANCE); the highest proposal, clamped, is the
sample's recommendation. Scaling up happens at once; scaling down only once `cooldown` passed
since the last change and every recommendation of the last `cooldown` seconds wanted fewer
(the highest of them is taken), so alternating samples never make replicas flap.

Tasks that are wanted but not measured yet (starting, or without a second CPU sample) count as
idle when deciding to scale up and as exactly on target when deciding to scale down, as the
HPA does, so a burst of new tasks is not mistaken for more load. The loop around this
(`shoal.server.autoscaler`) reads the cgroup counters and writes the decisions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shoal.model.cluster import AutoscaleState
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid
from shoal.model.units import parse_duration_ns

TOLERANCE = 0.1
DEFAULT_MIN = 1
DEFAULT_COOLDOWN = 300.0  # seconds: the HPA's default scale-down stabilisation window
KEYS = ("min", "max", "cpu", "memory", "cooldown")
_PERCENT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*%\s*")
_EPSILON = 1e-9  # so 2.0000000001 replicas, a float artefact, is not rounded up to 3


@dataclass(frozen=True, slots=True)
class AutoscaleConfig:
    """A validated `x-shoal.autoscale`: targets are fractions of the limit (0.7 = 70 %)."""

    min: int
    max: int
    cpu: float | None = None
    memory: float | None = None
    cooldown: float = DEFAULT_COOLDOWN

    def targets(self) -> list[tuple[str, float]]:
        found = [("cpu", self.cpu), ("memory", self.memory)]
        return [(metric, target) for metric, target in found if target is not None]


@dataclass(frozen=True, slots=True)
class Usage:
    """One running task's utilisation: CPU cores used / its CPU limit (1 core without one),
    memory used / its memory limit; None when not measured (yet)."""

    cpu: float | None = None
    memory: float | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    time: float
    replicas: int


@dataclass(frozen=True, slots=True)
class Proposal:
    """What one metric asks for: `utilisation` is the average over the `measured` tasks."""

    metric: str
    utilisation: float
    target: float
    measured: int
    replicas: int


@dataclass(frozen=True, slots=True)
class Decision:
    current: int
    replicas: int  # what replicas should be now (== current: leave it)
    proposal: Proposal | None  # the metric that drove the recommendation (None: no data)
    reason: str
    window: tuple[Recommendation, ...]  # hand back on the next call

    @property
    def changed(self) -> bool:
        return self.replicas != self.current


# --- configuration -----------------------------------------------------------------------------


def cpu_limit(spec: ServiceSpec) -> float | None:
    """Cores a task of `spec` may use (as the agent sets the cgroup quota), or None."""
    limits = spec.deploy.resources.limits if spec.deploy and spec.deploy.resources else None
    return (limits.cpus if limits else None) or spec.cpus or None


def memory_limit(spec: ServiceSpec) -> int | None:
    """Bytes a task of `spec` may use (as the agent sets the cgroup limit), or None."""
    limits = spec.deploy.resources.limits if spec.deploy and spec.deploy.resources else None
    memory = (int(limits.memory) if limits and limits.memory else None) or spec.mem_limit
    return int(memory) if memory and memory > 0 else None


def _count(raw: Any, key: str, where: str) -> int:
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise Invalid(f"{where}.{key}: expected a whole number ≥ 0, got {raw!r}")
    return raw


def _target(raw: Any, key: str, where: str) -> float:
    """`70%`, `0.7` or `"0.7"` → 0.7; must be in (0, 1]."""
    value: float | None = None
    if isinstance(raw, str) and (match := _PERCENT.fullmatch(raw)):
        value = float(match[1]) / 100
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            value = None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    if value is None or not 0 < value <= 1:
        raise Invalid(
            f"{where}.{key}: expected a utilisation target above 0 up to 100%, got {raw!r}",
            hint=f"write a percentage of the limit ({key}: 70%) or a fraction ({key}: 0.7)",
        )
    return value


def _cooldown(raw: Any, where: str) -> float:
    try:
        ns = parse_duration_ns(raw)
    except ValueError as exc:
        raise Invalid(f"{where}.cooldown: {exc}", hint="write a duration, e.g. 30s or 5m") from None
    if ns < 0:
        raise Invalid(f"{where}.cooldown: must not be negative, got {raw!r}")
    return ns / 1e9


def parse_config(raw: Any, spec: ServiceSpec, where: str = "x-shoal.autoscale") -> AutoscaleConfig:
    """Validate an `autoscale` mapping against the service it belongs to; Invalid if wrong."""
    if not isinstance(raw, dict):
        raise Invalid(f"{where}: expected a mapping (min, max, cpu, memory, cooldown)")
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise Invalid(f"{where}: unknown key {unknown[0]!r}", hint=f"known: {', '.join(KEYS)}")
    if "max" not in raw:
        raise Invalid(f"{where}.max: required (the most replicas autoscaling may set)")
    low = _count(raw.get("min", DEFAULT_MIN), "min", where)
    high = _count(raw["max"], "max", where)
    if high < low:
        raise Invalid(f"{where}: max ({high}) is below min ({low})")
    cpu = _target(raw["cpu"], "cpu", where) if raw.get("cpu") is not None else None
    memory = _target(raw["memory"], "memory", where) if raw.get("memory") is not None else None
    if cpu is None and memory is None:
        raise Invalid(f"{where}: needs a target: cpu, memory or both", hint="e.g. cpu: 70%")
    if memory is not None and memory_limit(spec) is None:
        raise Invalid(
            f"{where}.memory: the service has no memory limit to measure against",
            hint="set deploy.resources.limits.memory (or mem_limit), or scale on cpu only",
        )
    mode = spec.deploy.mode if spec.deploy and spec.deploy.mode else "replicated"
    if mode != "replicated":
        raise Invalid(f"{where}: only replicated services can autoscale, this one is {mode}")
    cooldown = _cooldown(raw["cooldown"], where) if "cooldown" in raw else DEFAULT_COOLDOWN
    return AutoscaleConfig(min=low, max=high, cpu=cpu, memory=memory, cooldown=cooldown)


def read_config(spec: ServiceSpec, service: str = "") -> AutoscaleConfig | None:
    """The service's autoscale settings, None when it has none; Invalid when they are wrong."""
    ext = spec.extensions.get("x-shoal")
    if not isinstance(ext, dict) or ext.get("autoscale") is None:
        return None
    where = f"services.{service}.x-shoal.autoscale" if service else "x-shoal.autoscale"
    return parse_config(ext["autoscale"], spec, where)


def check_services(services: Mapping[str, ServiceSpec]) -> None:
    """Invalid for the first service whose `x-shoal.autoscale` is wrong (deploy-time check)."""
    for name, spec in services.items():
        read_config(spec, name)


def bounds(
    config: AutoscaleConfig, state: AutoscaleState | None, deployed_at: float
) -> tuple[int, int]:
    """(floor, ceiling): the file's, unless `shoal scale` moved them since the last deploy."""
    if state is None or state.deployed_at != deployed_at:
        return config.min, config.max
    low = config.min if state.min is None else state.min
    high = config.max if state.max is None else state.max
    return low, max(low, high)


def after_manual_scale(
    config: AutoscaleConfig,
    state: AutoscaleState | None,
    deployed_at: float,
    replicas: int,
    now: float,
) -> AutoscaleState:
    """The state after `shoal scale …=replicas`: the floor or ceiling moves to include it."""
    low, high = bounds(config, state, deployed_at)
    low, high = min(low, replicas), max(high, replicas)
    return AutoscaleState(
        min=None if low == config.min else low,
        max=None if high == config.max else high,
        deployed_at=deployed_at,
        last_change=now,
    )


# --- the decision --------------------------------------------------------------------------------


def propose(metric: str, values: Sequence[float], target: float, current: int) -> Proposal | None:
    """One metric's replica count, or None when no task was measured."""
    if not values:
        return None
    total = sum(values)
    mean = total / len(values)
    base = max(current, len(values))
    missing = base - len(values)
    ratio = mean / target
    if ratio > 1 + TOLERANCE:
        # The unmeasured tasks count as idle; if that is then below target, hold (no flip).
        ratio = max(total / base / target, 1.0)
    elif ratio < 1 - TOLERANCE:
        ratio = (total + missing * target) / base / target  # … as exactly on target
    replicas = current
    if abs(ratio - 1) > TOLERANCE:
        replicas = math.ceil(base * ratio - _EPSILON)
    return Proposal(metric, mean, target, len(values), replicas)


def _window(
    window: Sequence[Recommendation], current: int, now: float, cooldown: float
) -> list[Recommendation]:
    """The recommendations of the last `cooldown` seconds; a first look starts from `current`
    (no evidence yet that fewer would do)."""
    if not window:
        return [Recommendation(now, current)]
    return [r for r in window if r.time >= now - cooldown]


def _describe(proposal: Proposal | None) -> str:
    if proposal is None:
        return "no measurement"
    return (
        f"{proposal.metric} {proposal.utilisation:.0%} of its limit, target "
        f"{proposal.target:.0%} ({proposal.measured} task{'s' * (proposal.measured != 1)})"
    )


def decide(
    config: AutoscaleConfig,
    usage: Sequence[Usage],
    *,
    current: int,
    floor: int,
    ceiling: int,
    window: Sequence[Recommendation],
    last_change: float,
    now: float,
) -> Decision:
    """Replicas for a service with `current` replicas whose running tasks measured `usage`."""
    recent = _window(window, current, now, config.cooldown)
    proposals = [
        found
        for metric, target in config.targets()
        if (
            found := propose(
                metric,
                [v for u in usage if (v := getattr(u, metric)) is not None],
                target,
                current,
            )
        )
        is not None
    ]
    best = max(proposals, key=lambda p: p.replicas, default=None)  # first wins a tie: cpu

    def clamp(n: int) -> int:
        return min(max(n, floor), ceiling)

    wanted = clamp(current)
    reason = f"outside {floor}-{ceiling}" if wanted != current else _describe(best)
    if best is not None:
        recommended = clamp(best.replicas)
        recent.append(Recommendation(now, recommended))
        highest = max(r.replicas for r in recent)
        if recommended > wanted:
            wanted, reason = recommended, _describe(best)
        elif wanted == current and highest < current:
            if now - last_change >= config.cooldown:
                wanted = clamp(highest)
                reason = f"{_describe(best)}; fewer wanted for {config.cooldown:g}s"
            else:
                reason = f"{_describe(best)}; cooling down"
    return Decision(current, wanted, best, reason, tuple(recent))
