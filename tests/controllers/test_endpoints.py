"""The endpoints controller: which tasks a service's discovery record lists as ready."""

from __future__ import annotations

from typing import Any

from shoal.controllers.endpoints import changed, endpoints_for, is_ready
from shoal.model.cluster import Service, Task, TaskState, TaskStatus
from shoal.model.compose_service import ServiceSpec
from shoal.model.network import Attachment, EndpointMode, PublishedPort


def spec(**kw: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"image": "busybox", **kw})


def mk_task(tid: str, state: TaskState, slot: int, **kw: Any) -> Task:
    return Task(
        id=tid,
        stack="st",
        service="web",
        service_id="s1",
        slot=slot,
        spec_version=1,
        spec=spec(hostname="h"),
        node_id="n1",
        networks=[Attachment(network="st_default", address=f"10.213.0.{slot + 1}")],
        status=TaskStatus(state=state, **kw),
    )


SERVICE = Service(
    id="s1",
    stack="st",
    name="web",
    spec=spec(expose=["9000/udp", "7000"], deploy={"endpoint_mode": "dnsrr"}),
    vips={},
    ports=[PublishedPort(target=80, published=8080)],
)


def test_ready_means_running_desired_and_not_unhealthy() -> None:
    assert is_ready(mk_task("a", TaskState.RUNNING, 1))
    assert is_ready(mk_task("a", TaskState.RUNNING, 1, health="healthy"))
    assert not is_ready(mk_task("a", TaskState.RUNNING, 1, health="starting"))
    assert not is_ready(mk_task("a", TaskState.STARTING, 1))
    stopping = mk_task("a", TaskState.RUNNING, 1).model_copy(
        update={"desired_state": TaskState.SHUTDOWN}
    )
    assert not is_ready(stopping)


def test_record_lists_live_tasks_in_slot_order_without_finished_ones() -> None:
    tasks = [
        mk_task("c", TaskState.STARTING, 3),
        mk_task("a", TaskState.RUNNING, 1),
        mk_task("b", TaskState.FAILED, 2),
    ]
    record = endpoints_for(SERVICE, tasks, now=5.0)
    assert [t.id for t in record.tasks] == ["a", "c"]
    assert [t.id for t in record.ready] == ["a"]
    assert record.tasks[0].addresses == {"st_default": "10.213.0.2"}
    assert record.tasks[0].hostname == "h"
    assert record.mode is EndpointMode.DNSRR
    assert record.target_ports == [80, 7000, 9000]


def test_changed_ignores_the_timestamp() -> None:
    tasks = [mk_task("a", TaskState.RUNNING, 1)]
    first = endpoints_for(SERVICE, tasks, now=1.0)
    assert not changed(first, endpoints_for(SERVICE, tasks, now=2.0))
    assert changed(first, endpoints_for(SERVICE, [], now=2.0))
    assert changed(None, first)
