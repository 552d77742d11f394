"""Garbage collection keeps the newest K terminal tasks per slot."""

from __future__ import annotations

import pytest

from shoal.controllers.actions import DeleteTask
from shoal.controllers.gc import collect_garbage
from shoal.model.cluster import Task, TaskState
from tests.controllers.builders import service, task

R, F, S, RM = TaskState.RUNNING, TaskState.FAILED, TaskState.SHUTDOWN, TaskState.REMOVE


def dead(tid: str, slot: int | None, created: float, node: str = "n1") -> Task:
    return task(tid, slot, state=F, desired=S, created=created, node=node)


@pytest.mark.parametrize(
    ("name", "tasks", "keep", "deleted"),
    [
        ("under the limit", [dead("a", 1, 1), dead("b", 1, 2)], 5, []),
        (
            "oldest beyond K go",
            [dead(f"t{i}", 1, i) for i in range(7)] + [task("live", 1)],
            5,
            ["t0", "t1"],
        ),
        ("per slot", [dead("a", 1, 1), dead("b", 2, 2), dead("c", 2, 3)], 1, ["b"]),
        (
            "per node for global tasks",
            [dead("a", None, 1, "n1"), dead("b", None, 2, "n2"), dead("c", None, 3, "n1")],
            1,
            ["a"],
        ),
        (
            "a settled or undecided task is never collected",
            [
                task("settled", 1, state=F, desired=F, created=0),
                task("undecided", 1, state=F, created=1),
                dead("b", 1, 5),
            ],
            1,
            [],
        ),
        ("running tasks are never collected", [task("a", 1), task("b", 1)], 0, []),
        (
            "orphans of a deleted service",
            [dead("a", 1, 1, "n1").model_copy(update={"service_id": "gone"})],
            5,
            ["a"],
        ),
        ("terminal tasks marked remove", [task("a", 1, state=S, desired=RM)], 5, ["a"]),
    ],
)
def test_gc(name: str, tasks: list[Task], keep: int, deleted: list[str]) -> None:
    actions = collect_garbage([service()], tasks, keep=keep)
    assert actions == [DeleteTask(t) for t in deleted]
    remaining = [t for t in tasks if t.id not in deleted]
    assert collect_garbage([service()], remaining, keep=keep) == []
