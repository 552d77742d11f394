"""Restart policy: effective policy, conditions, max attempts, window, back-off."""

from __future__ import annotations

from typing import Any

import pytest

from shoal.controllers.restarts import EffectivePolicy, decide_restart, effective_policy
from shoal.model.cluster import ServiceMode, Task, TaskState
from shoal.model.compose_service import ServiceSpec
from tests.controllers.builders import (
    NOW,
    Ids,
    active,
    apply,
    node,
    reconcile,
    service,
    set_state,
    simulate_agents,
    store_of,
    summarize,
    task,
)

R, F, C, S, REJ = (
    TaskState.RUNNING,
    TaskState.FAILED,
    TaskState.COMPLETE,
    TaskState.SHUTDOWN,
    TaskState.REJECTED,
)
REPL, JOB = ServiceMode.REPLICATED, ServiceMode.REPLICATED_JOB


@pytest.mark.parametrize(
    ("spec", "mode", "expected"),
    [
        ({}, REPL, EffectivePolicy("any", 5.0, 0, None)),
        ({}, JOB, EffectivePolicy("on-failure", 5.0, 0, None)),
        ({"restart": "no"}, REPL, EffectivePolicy("none", 5.0, 0, None)),
        ({"restart": "always"}, REPL, EffectivePolicy("any", 5.0, 0, None)),
        ({"restart": "unless-stopped"}, REPL, EffectivePolicy("any", 5.0, 0, None)),
        ({"restart": "on-failure"}, REPL, EffectivePolicy("on-failure", 5.0, 0, None)),
        ({"restart": "on-failure:3"}, REPL, EffectivePolicy("on-failure", 5.0, 3, None)),
        (
            {"restart": "on-failure:3", "deploy": {"restart_policy": {"condition": "any"}}},
            REPL,
            EffectivePolicy("any", 5.0, 3, None),
        ),
        (
            {
                "restart": "no",
                "deploy": {
                    "restart_policy": {
                        "condition": "on-failure",
                        "delay": "2s",
                        "max_attempts": 4,
                        "window": "1m",
                    }
                },
            },
            REPL,
            EffectivePolicy("on-failure", 2.0, 4, 60.0),
        ),
    ],
)
def test_effective_policy(
    spec: dict[str, Any], mode: ServiceMode, expected: EffectivePolicy
) -> None:
    parsed = ServiceSpec.model_validate({"image": "x", **spec})
    assert effective_policy(parsed, mode) == expected


ANY = EffectivePolicy("any", 5.0, 0, None)
ON_FAILURE = EffectivePolicy("on-failure", 5.0, 0, None)
NONE = EffectivePolicy("none", 5.0, 0, None)
MAX2 = EffectivePolicy("any", 5.0, 2, None)
MAX2_WINDOW = EffectivePolicy("any", 5.0, 2, 60.0)


@pytest.mark.parametrize(
    ("name", "policy", "failed", "history", "job", "restart", "delay", "reason"),
    [
        ("any restarts a failure", ANY, task("a", state=F, exit_code=1), [], False, True, 5.0, ""),
        (
            "any restarts a clean exit",
            ANY,
            task("a", state=C, exit_code=0),
            [],
            False,
            True,
            5.0,
            "",
        ),
        ("any restarts a rejection", ANY, task("a", state=REJ), [], False, True, 5.0, ""),
        ("on-failure restarts a failure", ON_FAILURE, task("a", state=F), [], False, True, 5.0, ""),
        (
            "on-failure leaves a clean exit",
            ON_FAILURE,
            task("a", state=C, exit_code=0),
            [],
            False,
            False,
            0.0,
            "not restarted",
        ),
        (
            "none leaves a failure",
            NONE,
            task("a", state=F),
            [],
            False,
            False,
            0.0,
            "policy is none",
        ),
        ("job: done", ANY, task("a", state=C), [], True, False, 0.0, "job task done"),
        (
            "an agent-side shutdown is a failure",
            ON_FAILURE,
            task("a", state=S),
            [],
            False,
            True,
            5.0,
            "",
        ),
        ("under max attempts", MAX2, task("a", state=F, attempt=1), [], False, True, 5.0, ""),
        (
            "max attempts reached",
            MAX2,
            task("a", state=F, attempt=2),
            [],
            False,
            False,
            0.0,
            "max attempts (2) reached",
        ),
        (
            "window: old restarts do not count",
            MAX2_WINDOW,
            task("a", state=F, attempt=2, created=NOW - 100),
            [task("b", attempt=1, created=NOW - 200), task("a", attempt=2, created=NOW - 100)],
            False,
            True,
            5.0,
            "",
        ),
        (
            "window: recent restarts count",
            MAX2_WINDOW,
            task("a", state=F, attempt=2, created=NOW - 10),
            [task("b", attempt=1, created=NOW - 30), task("a", attempt=2, created=NOW - 10)],
            False,
            False,
            0.0,
            "reached within 1m0s",
        ),
    ],
)
def test_decide_restart(
    name: str,
    policy: EffectivePolicy,
    failed: Task,
    history: list[Task],
    job: bool,
    restart: bool,
    delay: float,
    reason: str,
) -> None:
    decision = decide_restart(policy, failed, history or [failed], NOW, job=job)
    assert (decision.restart, decision.delay) == (restart, delay)
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("name", "given", "ran", "expected"),
    [
        ("first failure: the base delay", 0.0, 0.0, 5.0),
        ("quick again: doubled", 5.0, 1.0, 10.0),
        ("quick again: doubled again", 40.0, 1.0, 80.0),
        ("capped", 200.0, 1.0, 300.0),
        ("ran long enough: reset", 80.0, 10.0, 5.0),
    ],
)
def test_backoff(name: str, given: float, ran: float, expected: float) -> None:
    failed = task(
        "a",
        state=F,
        created=NOW - 50,
        not_before=NOW - 50 + given,
        started=NOW - ran - 1,
        ended=NOW - 1,
    )
    decision = decide_restart(ANY, failed, [failed], NOW)
    assert decision.delay == expected


def test_backoff_reset_uses_the_window_when_set() -> None:
    policy = EffectivePolicy("any", 5.0, 0, 30.0)
    failed = task("a", state=F, created=NOW - 50, not_before=NOW - 30, started=NOW - 20, ended=NOW)
    assert decide_restart(policy, failed, [failed], NOW).delay == 40.0  # ran 20s < window 30s
    assert decide_restart(policy, failed, [failed], NOW, reset_after=10).delay == 40.0


def _crash_loop(svc_deploy: dict[str, Any], rounds: int, run_for: float) -> list[float]:
    """Run a crash-looping slot; returns the delay given to each restart."""
    svc = service(svc_deploy)
    nodes = [node("n1")]
    store: dict[str, Task] = {}
    ids = Ids()
    now = NOW
    delays: list[float] = []
    for _ in range(rounds):
        apply(store, reconcile(svc, store, nodes, now, ids))
        running = active(store)
        if not running:
            break
        [t] = running
        if t.attempt > 0 and t.status.state != R:
            delays.append(t.not_before - t.created_at)
        now = max(now, t.not_before)
        simulate_agents(store, nodes, now)
        now += run_for
        set_state(store, t.id, F, now, exit_code=1)
    return delays


def test_backoff_grows_for_quick_failures_and_stays_reset_for_long_runs() -> None:
    assert _crash_loop({}, 8, run_for=1) == [5, 10, 20, 40, 80, 160, 300]
    assert _crash_loop({}, 5, run_for=60) == [5, 5, 5, 5]


def test_max_attempts_stops_the_loop_with_an_event() -> None:
    svc = service({"restart_policy": {"max_attempts": 2, "delay": "1s"}})
    assert _crash_loop({"restart_policy": {"max_attempts": 2, "delay": "1s"}}, 10, 1) == [1, 2]
    store = store_of(task("a", 1, state=F, attempt=2, exit_code=1))
    actions = reconcile(svc, store, [node("n1")])
    assert summarize(actions) == ["update a desired=failed state=failed", "emit failed a"]
    events = apply(store, actions)
    assert "max attempts (2) reached, slot stays failed" in events[0].message
    assert reconcile(svc, store, [node("n1")]) == []
