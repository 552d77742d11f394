"""Autoscaling decisions: HPA's formula, clamping, tolerance, cooldown window, memory, configs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from shoal.controllers.autoscale import (
    AutoscaleConfig,
    Decision,
    Recommendation,
    Usage,
    after_manual_scale,
    bounds,
    check_services,
    decide,
    propose,
    read_config,
)
from shoal.model.cluster import AutoscaleState
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid

NOW = 10_000.0
CPU70 = AutoscaleConfig(min=1, max=10, cpu=0.7, cooldown=30.0)


def spec(autoscale: Any = None, **raw: Any) -> ServiceSpec:
    doc: dict[str, Any] = {"image": "x", **raw}
    if autoscale is not None:
        doc["x-shoal"] = {"autoscale": autoscale}
    return ServiceSpec.model_validate(doc)


def cpu(*values: float) -> list[Usage]:
    return [Usage(cpu=v) for v in values]


def step(
    usage: Sequence[Usage],
    current: int,
    config: AutoscaleConfig = CPU70,
    *,
    window: Sequence[Recommendation] = (Recommendation(NOW - 1, 1),),
    last_change: float = 0.0,
    now: float = NOW,
    floor: int | None = None,
    ceiling: int | None = None,
) -> Decision:
    return decide(
        config,
        usage,
        current=current,
        floor=config.min if floor is None else floor,
        ceiling=config.max if ceiling is None else ceiling,
        window=window,
        last_change=last_change,
        now=now,
    )


# --- the formula ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "current", "expected"),
    [
        ((1.0,), 1, 2),  # ceil(1 × 1.0/0.7) = ceil(1.43)
        ((1.0, 1.0), 2, 3),  # ceil(2 × 1.43) = ceil(2.86)
        ((0.9, 0.9, 0.9), 3, 4),  # ceil(3 × 1.29) = ceil(3.86)
        ((1.4, 1.4), 2, 4),  # exactly twice the target: 4, not 5 (no float artefact)
        ((0.35, 0.35, 0.35, 0.35), 4, 2),  # half the target: half the replicas
        ((0.0, 0.0), 2, 0),  # idle: as few as the formula allows (clamping is separate)
        ((0.7,), 1, 1),
        ((0.75, 0.75), 2, 2),  # ratio 1.07: within the tolerance
        ((0.65, 0.65), 2, 2),  # ratio 0.93: within the tolerance
        ((0.78, 0.78), 2, 3),  # ratio 1.114: outside
    ],
)
def test_formula(values: tuple[float, ...], current: int, expected: int) -> None:
    proposal = propose("cpu", values, 0.7, current)
    assert proposal is not None
    assert proposal.replicas == expected
    assert proposal.utilisation == pytest.approx(sum(values) / len(values))
    assert proposal.measured == len(values)


def test_no_measurement_no_proposal() -> None:
    assert propose("cpu", [], 0.7, 3) is None


def test_unmeasured_tasks_count_as_idle_for_scale_up_and_on_target_for_scale_down() -> None:
    # 3 wanted, 1 measured at 1.0: with the two starting ones idle, 1.0/3 is below target,
    # which is no reason to scale down either: hold.
    hold_up = propose("cpu", [1.0], 0.7, 3)
    assert hold_up is not None and hold_up.replicas == 3
    # 1 measured at 2.8 of 2 wanted: (2.8 + 0)/2 = 1.4 → twice the target → 4, not 8.
    up = propose("cpu", [2.8], 0.7, 2)
    assert up is not None and up.replicas == 4
    # 1 measured at 1.4 of 2 wanted: (1.4 + 0)/2 = 0.7 → on target, keep 2.
    hold = propose("cpu", [1.4], 0.7, 2)
    assert hold is not None and hold.replicas == 2
    # 1 measured idle of 4 wanted: the 3 others are assumed on target → ceil(0 + 3) = 3.
    down = propose("cpu", [0.0], 0.7, 4)
    assert down is not None and down.replicas == 3


def test_decide_scales_up_at_once_and_reports_the_numbers() -> None:
    decision = step(cpu(1.0, 1.0), current=2, last_change=NOW - 1)
    assert decision.changed and decision.replicas == 3
    assert decision.proposal is not None
    assert decision.proposal.metric == "cpu"
    assert decision.proposal.utilisation == pytest.approx(1.0)
    assert decision.proposal.target == 0.7
    assert "cpu 100% of its limit, target 70% (2 tasks)" in decision.reason


def test_clamped_to_min_and_max() -> None:
    config = AutoscaleConfig(min=2, max=4, cpu=0.5, cooldown=0.0)
    assert step(cpu(1.0, 1.0, 1.0), 3, config).replicas == 4  # wants 6
    idle = step(cpu(0.0, 0.0, 0.0), 3, config, window=[Recommendation(NOW - 1, 2)])
    assert idle.replicas == 2  # wants 0
    # Outside the bounds without any measurement: moved inside at once.
    below = step([], 1, config)
    assert below.replicas == 2 and "outside 2-4" in below.reason and below.proposal is None
    above = step([], 7, config)
    assert above.replicas == 4
    assert step([], 3, config).changed is False


def test_manual_bounds_replace_the_files() -> None:
    config = AutoscaleConfig(min=1, max=3, cpu=0.5, cooldown=0.0)
    assert step(cpu(1.0, 1.0, 1.0), 3, config, ceiling=5).replicas == 5


# --- cooldown and the window ---------------------------------------------------------------------


def test_scale_down_waits_for_the_cooldown_since_the_last_change() -> None:
    window = [Recommendation(NOW - 40, 1)]
    early = step(cpu(0.1, 0.1), 2, window=window, last_change=NOW - 10)
    assert not early.changed and "cooling down" in early.reason
    late = step(cpu(0.1, 0.1), 2, window=window, last_change=NOW - 30)
    assert late.replicas == 1


def test_scale_down_takes_the_highest_recommendation_of_the_window() -> None:
    window = [
        Recommendation(NOW - 45, 5),  # older than the cooldown: forgotten
        Recommendation(NOW - 25, 3),
        Recommendation(NOW - 5, 2),
    ]
    decision = step(cpu(0.1, 0.1, 0.1, 0.1), 4, window=window, last_change=NOW - 100)
    assert decision.replicas == 3
    assert [r.replicas for r in decision.window] == [3, 2, 1]
    assert decision.window[-1].time == NOW


def test_one_sample_wanting_as_many_blocks_the_scale_down() -> None:
    window = [Recommendation(NOW - 20, 4), Recommendation(NOW - 10, 2)]
    decision = step(cpu(0.1, 0.1, 0.1, 0.1), 4, window=window, last_change=NOW - 100)
    assert not decision.changed


def test_first_look_counts_as_wanting_the_current_count() -> None:
    """After a (server) restart there is no evidence yet: wait one cooldown before going down."""
    first = step(cpu(0.0, 0.0), 2, window=[], last_change=0.0)
    assert not first.changed
    assert first.window == (Recommendation(NOW, 2), Recommendation(NOW, 1))
    window: Sequence[Recommendation] = first.window
    for t in range(5, 31, 5):
        decision = step(cpu(0.0, 0.0), 2, window=window, now=NOW + t)
        assert not decision.changed, t
        window = decision.window
    assert step(cpu(0.0, 0.0), 2, window=window, now=NOW + 35).replicas == 1


def test_no_flapping_on_alternating_samples() -> None:
    """Load that swings high and low every sample scales up once and then stays."""
    config = AutoscaleConfig(min=1, max=10, cpu=0.5, cooldown=30.0)
    replicas, last_change = 2, 0.0
    window: Sequence[Recommendation] = ()
    history = []
    for i in range(60):
        now = NOW + i * 5
        total = 2.0 if i % 2 == 0 else 0.2  # cores of work, spread over the replicas
        usage = cpu(*([total / replicas] * replicas))
        decision = step(usage, replicas, config, window=window, last_change=last_change, now=now)
        window = decision.window
        if decision.changed:
            replicas, last_change = decision.replicas, now
        history.append(replicas)
    assert history[0] == 4  # 2 cores at 50 % of one core each
    assert set(history) == {4}, history


def test_cooldown_zero_scales_down_on_the_next_sample() -> None:
    config = AutoscaleConfig(min=1, max=10, cpu=0.5, cooldown=0.0)
    first = step(cpu(0.0, 0.0), 2, config, window=[], last_change=NOW - 1)
    assert not first.changed  # the first look still holds the current count
    second = step(cpu(0.0, 0.0), 2, config, window=first.window, now=NOW + 1)
    assert second.replicas == 1


# --- memory and several metrics ------------------------------------------------------------------


def test_memory_metric() -> None:
    config = AutoscaleConfig(min=1, max=10, memory=0.8, cooldown=0.0)
    decision = step([Usage(memory=0.96), Usage(memory=0.96)], 2, config)
    assert decision.replicas == 3  # ceil(2 × 1.2)
    assert decision.proposal is not None and decision.proposal.metric == "memory"


def test_the_higher_metric_wins() -> None:
    config = AutoscaleConfig(min=1, max=10, cpu=0.5, memory=0.5, cooldown=0.0)
    usage = [Usage(cpu=0.1, memory=1.0), Usage(cpu=0.1, memory=1.0)]
    decision = step(usage, 2, config)
    assert decision.replicas == 4
    assert decision.proposal is not None and decision.proposal.metric == "memory"
    # A task without a CPU rate yet still counts for memory.
    partial = step([Usage(cpu=None, memory=0.5), Usage(cpu=0.5, memory=0.5)], 2, config)
    assert not partial.changed


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"min": 1, "max": 5, "cpu": "70%", "cooldown": "30s"},
            AutoscaleConfig(1, 5, cpu=0.7, cooldown=30.0),
        ),
        ({"max": 3, "cpu": 0.5}, AutoscaleConfig(1, 3, cpu=0.5, cooldown=300.0)),
        (
            {"min": "0", "max": "4", "cpu": "0.25", "memory": "80 %", "cooldown": "1m30s"},
            AutoscaleConfig(0, 4, cpu=0.25, memory=0.8, cooldown=90.0),
        ),
        ({"min": 2, "max": 2, "cpu": 1}, AutoscaleConfig(2, 2, cpu=1.0, cooldown=300.0)),
    ],
)
def test_valid_configs(raw: dict[str, Any], expected: AutoscaleConfig) -> None:
    assert read_config(spec(raw, mem_limit="64m")) == expected


def test_no_config() -> None:
    assert read_config(spec()) is None
    assert read_config(spec(None, **{"x-shoal": {"runtime": "runc"}})) is None


@pytest.mark.parametrize(
    ("raw", "extra", "message"),
    [
        ({"min": 3, "max": 2, "cpu": "50%"}, {}, "max (2) is below min (3)"),
        ({"min": -1, "max": 2, "cpu": "50%"}, {}, ".min: expected a whole number"),
        ({"max": True, "cpu": "50%"}, {}, ".max: expected a whole number"),
        ({"min": 1, "cpu": "50%"}, {}, ".max: required"),
        ({"min": 1, "max": 2}, {}, "needs a target"),
        ({"max": 2, "cpu": "0%"}, {}, ".cpu: expected a utilisation target"),
        ({"max": 2, "cpu": "150%"}, {}, ".cpu: expected a utilisation target"),
        ({"max": 2, "cpu": 70}, {}, ".cpu: expected a utilisation target"),
        ({"max": 2, "cpu": "lots"}, {}, ".cpu: expected a utilisation target"),
        ({"max": 2, "memory": "80%"}, {}, "no memory limit"),
        ({"max": 2, "cpu": "50%", "cooldown": "soon"}, {}, ".cooldown: invalid duration"),
        ({"max": 2, "cpu": "50%", "cooldown": "-5s"}, {}, "must not be negative"),
        ({"max": 2, "cpu": "50%", "target": 1}, {}, "unknown key 'target'"),
        ([1, 2], {}, "expected a mapping"),
        ({"max": 2, "cpu": "50%"}, {"deploy": {"mode": "global"}}, "this one is global"),
    ],
)
def test_invalid_configs(raw: Any, extra: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as caught:
        read_config(spec(raw, **extra), "web")
    assert message in caught.value.message
    assert caught.value.message.startswith("services.web.x-shoal.autoscale")


def test_check_services_names_the_wrong_one() -> None:
    good = spec({"max": 2, "cpu": "50%"})
    check_services({"a": good, "b": spec()})
    with pytest.raises(Invalid, match=r"^services\.b\.x-shoal\.autoscale: max \(1\)"):
        check_services({"a": good, "b": spec({"min": 2, "max": 1, "cpu": "50%"})})


def test_memory_limit_from_deploy_resources() -> None:
    limited = spec({"max": 2, "memory": "80%"}, deploy={"resources": {"limits": {"memory": "64M"}}})
    config = read_config(limited)
    assert config is not None and config.memory == 0.8


# --- `shoal scale` and redeploys -----------------------------------------------------------------


def test_manual_scale_moves_the_ceiling_or_the_floor() -> None:
    config = AutoscaleConfig(min=1, max=3, cpu=0.5)
    higher = after_manual_scale(config, None, 50.0, 5, NOW)
    assert higher == AutoscaleState(min=None, max=5, deployed_at=50.0, last_change=NOW)
    assert bounds(config, higher, 50.0) == (1, 5)
    lower = after_manual_scale(config, higher, 50.0, 0, NOW + 1)
    assert bounds(config, lower, 50.0) == (0, 5)
    inside = after_manual_scale(config, None, 50.0, 2, NOW)
    assert bounds(config, inside, 50.0) == (1, 3) and inside.last_change == NOW


def test_a_redeploy_resets_the_bounds_to_the_files() -> None:
    config = AutoscaleConfig(min=1, max=3, cpu=0.5)
    moved = after_manual_scale(config, None, 50.0, 5, NOW)
    assert bounds(config, moved, 60.0) == (1, 3)
    # Scaling after the redeploy starts from the file's bounds, not the stale override.
    again = after_manual_scale(config, moved, 60.0, 4, NOW)
    assert bounds(config, again, 60.0) == (1, 4)
