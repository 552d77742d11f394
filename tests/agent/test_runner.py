"""The task runner's decision table: (task, container, now) → the exact steps, row by row."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shoal.agent.runner import Remove, Report, Start, Step, Stop, decide
from shoal.model.cluster import Task, TaskState, TaskStatus
from shoal.model.compose_service import ServiceSpec
from shoal.runtime.base import ContainerState, ContainerStatus

NOW = 5_000.0
S = TaskState

LOST = Report(S.FAILED, "container lost", error="the container disappeared")
NOT_STARTED = Report(S.SHUTDOWN, "stopped before it started")
TERMINAL = (S.COMPLETE, S.FAILED, S.SHUTDOWN, S.REJECTED, S.ORPHANED)


def task(state: TaskState, desired: TaskState = S.RUNNING, not_before: float = 0.0) -> Task:
    return Task(
        id="t1",
        stack="st",
        service="web",
        service_id="svc",
        slot=1,
        spec_version=1,
        spec=ServiceSpec.model_validate({"image": "x"}),
        node_id="n1",
        desired_state=desired,
        status=TaskStatus(state=state, timestamp=NOW - 10),
        not_before=not_before,
    )


def container(
    status: ContainerStatus,
    exit_code: int | None = None,
    *,
    oom: bool = False,
    error: str | None = None,
) -> ContainerState:
    return ContainerState(id="t1", status=status, exit_code=exit_code, oom_killed=oom, error=error)


@dataclass(frozen=True)
class Row:
    name: str
    task: Task | None
    container: ContainerState | None
    steps: list[Step]


ROWS: list[Row] = [
    # --- no task record: the container is the agent's to clean up ------------------------------
    Row("no task, no container", None, None, []),
    *(
        Row(
            f"no task, container {st}",
            None,
            container(st, 0 if st == "exited" else None),
            [Remove()],
        )
        for st in ("created", "running", "exited", "unknown")
    ),
    # --- task, no container ------------------------------------------------------------------
    *(
        Row(f"{st} wants running: start", task(st), None, [Start()])
        for st in (S.NEW, S.PENDING, S.ASSIGNED)
    ),
    Row("assigned, not_before in the future", task(S.ASSIGNED, not_before=NOW + 1), None, []),
    Row("assigned, not_before reached", task(S.ASSIGNED, not_before=NOW), None, [Start()]),
    Row("assigned, not_before passed", task(S.ASSIGNED, not_before=NOW - 1), None, [Start()]),
    *(
        Row(f"{st} but container gone", task(st), None, [LOST])
        for st in (S.PREPARING, S.STARTING, S.RUNNING)
    ),
    *(
        Row(f"{st} desired {d}, no container", task(st, d), None, [])
        for st in TERMINAL
        for d in (S.RUNNING, S.SHUTDOWN, S.REMOVE)
    ),
    *(
        Row(f"{st} desired {d}, no container", task(st, d), None, [NOT_STARTED])
        for st in (S.NEW, S.ASSIGNED, S.STARTING, S.RUNNING)
        for d in (S.SHUTDOWN, S.REMOVE)
    ),
    Row(
        "desired shutdown, not_before in the future",
        task(S.ASSIGNED, S.SHUTDOWN, not_before=NOW + 60),
        None,
        [NOT_STARTED],
    ),
    # --- container created (agent died between create and start) ------------------------------
    *(
        Row(f"{st}, created: start", task(st), container("created"), [Start()])
        for st in (S.NEW, S.PENDING, S.ASSIGNED)
    ),
    *(
        Row(f"{st}, created: monitor is on it", task(st), container("created"), [])
        for st in (S.PREPARING, S.STARTING, S.RUNNING)
    ),
    *(
        Row(f"{st} desired {d}, created: remove", task(st, d), container("created"), [Remove()])
        for st in (S.ASSIGNED, S.STARTING)
        for d in (S.SHUTDOWN, S.REMOVE)
    ),
    *(Row(f"{st}, created: remove", task(st), container("created"), [Remove()]) for st in TERMINAL),
    # --- container running -------------------------------------------------------------------
    Row("running, running: nothing", task(S.RUNNING), container("running"), []),
    *(
        Row(
            f"{st}, running: report running",
            task(st),
            container("running"),
            [Report(S.RUNNING, "running")],
        )
        for st in (S.NEW, S.PENDING, S.ASSIGNED, S.PREPARING, S.STARTING)
    ),
    *(
        Row(f"{st} desired {d}, running: stop", task(st, d), container("running"), [Stop()])
        for st in (S.STARTING, S.RUNNING)
        for d in (S.SHUTDOWN, S.REMOVE)
    ),
    *(
        Row(f"{st} (server gave up), running: stop", task(st), container("running"), [Stop()])
        for st in TERMINAL
    ),
    Row(
        "shutdown desired shutdown, still running: stop",
        task(S.SHUTDOWN, S.SHUTDOWN),
        container("running"),
        [Stop()],
    ),
    # --- container exited --------------------------------------------------------------------
    Row(
        "exit 0: complete",
        task(S.RUNNING),
        container("exited", 0),
        [Report(S.COMPLETE, "finished", exit_code=0)],
    ),
    Row(
        "exit 3: failed",
        task(S.RUNNING),
        container("exited", 3),
        [Report(S.FAILED, "task failed", error="exited with code 3", exit_code=3)],
    ),
    Row(
        "exit 1 right after start: failed",
        task(S.STARTING),
        container("exited", 1),
        [Report(S.FAILED, "task failed", error="exited with code 1", exit_code=1)],
    ),
    Row(
        "assigned but exited (restart of the agent): failed",
        task(S.ASSIGNED),
        container("exited", 2),
        [Report(S.FAILED, "task failed", error="exited with code 2", exit_code=2)],
    ),
    Row(
        "oom kill: failed, out of memory",
        task(S.RUNNING),
        container("exited", 137, oom=True),
        [
            Report(
                S.FAILED,
                "task failed",
                error="killed: out of memory (exit code 137)",
                exit_code=137,
            )
        ],
    ),
    Row(
        "oom wins over the runtime's error",
        task(S.RUNNING),
        container("exited", 137, oom=True, error="killed"),
        [
            Report(
                S.FAILED,
                "task failed",
                error="killed: out of memory (exit code 137)",
                exit_code=137,
            )
        ],
    ),
    Row(
        "missing binary: the runtime's error",
        task(S.STARTING),
        container("exited", 127, error="cannot start: nope: No such file or directory"),
        [
            Report(
                S.FAILED,
                "task failed",
                error="cannot start: nope: No such file or directory",
                exit_code=127,
            )
        ],
    ),
    *(
        Row(
            f"desired {d}, exited {code}: shutdown",
            task(S.RUNNING, d),
            container("exited", code),
            [Report(S.SHUTDOWN, "stopped", exit_code=code)],
        )
        for d in (S.SHUTDOWN, S.REMOVE)
        for code in (0, 143)
    ),
    *(
        Row(f"{st}, exited: already reported", task(st), container("exited", 3), [])
        for st in TERMINAL
    ),
    *(
        Row(
            f"{st} desired shutdown, exited: already reported",
            task(st, S.SHUTDOWN),
            container("exited", 0),
            [],
        )
        for st in TERMINAL
    ),
    # --- container unknown (runtime lost track of it) ------------------------------------------
    Row(
        "unknown with the runtime's error: failed",
        task(S.RUNNING),
        container("unknown", error="monitor vanished"),
        [Report(S.FAILED, "task failed", error="monitor vanished", exit_code=None)],
    ),
    Row(
        "unknown, desired shutdown: shutdown",
        task(S.RUNNING, S.SHUTDOWN),
        container("unknown"),
        [Report(S.SHUTDOWN, "stopped", exit_code=None)],
    ),
    *(Row(f"{st}, unknown: nothing", task(st), container("unknown"), []) for st in TERMINAL),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_decide(row: Row) -> None:
    assert decide(row.task, row.container, NOW) == row.steps


def test_row_names_are_unique() -> None:
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names))


def test_unknown_container_without_error_has_a_readable_reason() -> None:
    [step] = decide(task(S.RUNNING), container("unknown"), NOW)
    assert isinstance(step, Report)
    assert step.state == S.FAILED
    assert "None" not in step.error
