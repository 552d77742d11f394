"""Crashes lose nothing: kill -9 of the server mid-deploy, kill -9 of the agent with tasks."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.cluster import Cluster, wait_until
from tests.e2e.test_one_node import project

TWENTY = "name: big\nservices:\n" + "".join(
    f"  s{i}:\n    image: none\n    command: [sleep, '300']\n    deploy: {{replicas: 5}}\n"
    for i in range(4)
)


def converged_exactly(c: Cluster, stack: str, replicas: dict[str, int]) -> bool:
    with c.client() as api:
        tasks = api.tasks(stack)
    active = [t for t in tasks if t.desired_state == "running" and not t.status.state.terminal]
    per_service = Counter(t.service for t in active)
    slots = Counter((t.service, t.slot) for t in active)
    duplicates = [k for k, n in slots.items() if n > 1]
    assert not duplicates, f"duplicate active slots: {duplicates}"
    running = Counter(t.service for t in active if t.status.state == "running")
    return dict(per_service) == replicas and dict(running) == replicas


def test_server_kill9_during_deploy(split: Cluster, tmp_path: Path) -> None:
    doc = project(tmp_path, TWENTY)
    expected = {f"s{i}": 5 for i in range(4)}
    rng = random.Random(7)
    for round_ in range(3):
        with split.client() as api:
            api.deploy("big", doc)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere between "nothing placed" and "all running"
        split.kill9("server")
        split.start_server()
        wait_until(lambda: converged_exactly(split, "big", expected), timeout=40)
        if round_ == 1:  # scale in the middle of the rounds, so later kills hit a change too
            doc["services"]["s0"]["deploy"]["replicas"] = 2
            expected["s0"] = 2


def test_agent_kill9_readopts_and_notices_exits(split: Cluster, tmp_path: Path) -> None:
    text = (
        "name: ka\nservices:\n"
        "  web:\n    image: none\n    command: [sleep, '300']\n    deploy: {replicas: 3}\n"
        "  short:\n    image: none\n    command: [sh, -c, 'sleep 2; exit 1']\n"
        "    deploy:\n      restart_policy: {condition: on-failure, delay: 0s}\n"
    )
    with split.client() as api:
        api.deploy("ka", project(tmp_path, text))
    wait_until(lambda: converged_exactly(split, "ka", {"web": 3, "short": 1}), timeout=30)

    def snapshot() -> dict[str, Any]:
        with split.client() as api:
            return {t.id: t for t in api.tasks("ka", all=True)}

    before = snapshot()
    web_before = {t.id: t.status.pid for t in before.values() if t.service == "web"}
    short_first = next(t for t in before.values() if t.service == "short")
    split.kill9("agent")
    time.sleep(3.0)  # `short` exits while nobody watches
    split.start_agent()

    def short_restarted() -> bool:
        tasks = snapshot()
        first = tasks.get(short_first.id)
        newer = [t for t in tasks.values() if t.service == "short" and t.attempt >= 1]
        return bool(first and first.status.exit_code == 1 and newer)

    wait_until(short_restarted, timeout=20)
    after = snapshot()
    web_after = {
        t.id: t.status.pid
        for t in after.values()
        if t.service == "web" and t.status.state == "running"
    }
    assert web_after == web_before  # same tasks, same processes: nothing restarted
    assert after[short_first.id].status.state == "failed"


def test_sigterm_leaves_workloads_for_the_next_start(one_node: Cluster, tmp_path: Path) -> None:
    text = "name: keep\nservices:\n  web:\n    image: none\n    command: [sleep, '300']\n"
    with one_node.client() as api:
        api.deploy("keep", project(tmp_path, text))
    wait_until(lambda: converged_exactly(one_node, "keep", {"web": 1}))
    with one_node.client() as api:
        (task,) = api.tasks("keep")
    one_node.stop("up")  # SIGTERM: a clean stop of shoal, not of the workloads
    assert task.status.pid is not None
    assert Path(f"/proc/{task.status.pid}").exists()
    one_node.start_up()
    wait_until(lambda: converged_exactly(one_node, "keep", {"web": 1}))
    with one_node.client() as api:
        (again,) = api.tasks("keep")
    assert (again.id, again.status.pid) == (task.id, task.status.pid)
