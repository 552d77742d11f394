"""The working view: one action per task, merged in place; stop semantics."""

from __future__ import annotations

from shoal.controllers.actions import CreateTask, DeleteTask, UpdateTask
from shoal.controllers.plan import Plan
from shoal.model.cluster import TaskState
from tests.controllers.builders import NOW, summarize, task

RM, S, P = TaskState.REMOVE, TaskState.SHUTDOWN, TaskState.PENDING


def test_writes_to_one_task_merge_into_one_action() -> None:
    plan = Plan([task("a")], NOW)
    plan.update(plan.tasks["a"], attempt=3)
    plan.stop(plan.tasks["a"])
    [update] = plan.actions
    assert isinstance(update, UpdateTask)
    assert (update.task.attempt, update.task.desired_state, update.task.updated_at) == (3, S, NOW)


def test_an_update_to_a_created_task_stays_a_create() -> None:
    plan = Plan([], NOW)
    plan.create(task("n", state=P))
    plan.stop(plan.tasks["n"])
    [create] = plan.actions
    assert isinstance(create, CreateTask) and create.task.status.state == S


def test_delete_drops_pending_writes() -> None:
    plan = Plan([task("a")], NOW)
    plan.stop(plan.tasks["a"])
    plan.delete("a")
    assert plan.actions == [DeleteTask("a")]
    plan.create(task("n"))
    plan.delete("n")
    assert plan.actions == [DeleteTask("a")]


def test_no_op_writes_produce_no_action() -> None:
    plan = Plan([task("a", desired=S)], NOW)
    plan.update(plan.tasks["a"], attempt=0)
    plan.stop(plan.tasks["a"])
    assert plan.actions == []


def test_stop_never_downgrades_a_removal() -> None:
    plan = Plan([task("a", desired=RM), task("b", desired=S)], NOW)
    plan.stop(plan.tasks["a"])
    plan.stop(plan.tasks["b"], RM)
    assert summarize(plan.actions) == ["update b desired=remove state=running"]
