"""Health checks end to end: real runc containers, checks run by the agent — Compose CMD-SHELL,
an image's HEALTHCHECK, shoal's http and tcp probes — and what follows from them: `healthy` in
`shoal ps`, unhealthy tasks stopped, marked FAILED and replaced (one cluster for the module)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.images.content import ContentStore
from shoal.images.manifest import ContainerConfig, HealthConfig
from shoal.model.cluster import Task
from tests.e2e.cluster import Cluster, cluster, needs_cni, shoal, wait_until
from tests.images.busybox import make_busybox_image

pytestmark = needs_cni

IMAGE = "localhost/test/busybox:1"
CHECKED_IMAGE = "localhost/test/busybox-checked:1"  # with a HEALTHCHECK of its own
HTTPD = "mkdir -p /www && echo ok > /www/health && exec httpd -f -p {port} -h /www"
QUICK = "deploy: {update_config: {monitor: 1s}, restart_policy: {delay: 0s}}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("health")
    with cluster(root, "up", runtime="runc") as c:
        store = ContentStore(c.data / "agent" / "images")
        make_busybox_image(store, IMAGE)
        check = HealthConfig(Test=["CMD-SHELL", "test -e /proc/1"], Interval=1_000_000_000)
        make_busybox_image(store, CHECKED_IMAGE, ContainerConfig(Cmd=["sh"], Healthcheck=check))
        yield c


def remove(c: Cluster, name: str) -> None:
    with c.client() as api:
        api.remove_stack(name)
        wait_until(lambda: name not in {s["name"] for s in api.stacks()}, timeout=30)


def start(c: Cluster, tmp: Path, name: str, services: str, *, wait: bool = True) -> None:
    (tmp / f"{name}.yaml").write_text(f"name: {name}\nservices:\n{services}")
    args = ["--wait", "--timeout", "60"] if wait else []
    result = shoal(c, "deploy", "-f", f"{name}.yaml", *args, cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr


def tasks(c: Cluster, stack: str) -> list[Task]:
    with c.client() as api:
        return api.tasks(stack, all=True)


def current(c: Cluster, stack: str, service: str) -> Task:
    return next(t for t in tasks(c, stack) if t.service == service and t.status.state == "running")


def healthy(c: Cluster, stack: str, service: str) -> Task:
    def check() -> Task | None:
        task = current(c, stack, service)
        return task if task.status.health == "healthy" else None

    found: Task = wait_until(check, timeout=20)
    return found


def replaced(c: Cluster, stack: str, service: str) -> tuple[Task, Task]:
    """Wait for a task of `service` that failed unhealthy and a later one running."""

    def check() -> tuple[Task, Task] | None:
        mine = sorted(
            (t for t in tasks(c, stack) if t.service == service), key=lambda t: t.created_at
        )
        failed = [t for t in mine if t.status.state == "failed"]
        if not failed or "unhealthy" not in failed[0].status.error:
            return None
        later = [t for t in mine if t.created_at > failed[0].created_at]
        running = [t for t in later if t.status.state == "running"]
        return (failed[0], running[0]) if running else None

    found: tuple[Task, Task] = wait_until(check, timeout=30)
    return found


def ps_json(c: Cluster, stack: str, tmp: Path) -> list[dict[str, Any]]:
    result = shoal(c, "ps", stack, "--all", "--output", "json", cwd=tmp)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_cmd_shell_and_image_checks_become_healthy(node: Cluster, tmp_path: Path) -> None:
    start(
        node,
        tmp_path,
        "hok",
        f"""
  web:
    image: {IMAGE}
    command: [sleep, "300"]
    healthcheck: {{test: "test -d /tmp && echo fine", interval: 1s}}
    {QUICK}
  imaged:
    image: {CHECKED_IMAGE}
    command: [sleep, "300"]
    {QUICK}
  unchecked:
    image: {CHECKED_IMAGE}
    command: [sleep, "300"]
    healthcheck: {{disable: true}}
    {QUICK}
""",
    )
    try:
        web = healthy(node, "hok", "web")
        assert web.status.health_log[-1].exit_code == 0
        assert web.status.health_log[-1].output == "fine\n"
        assert web.status.failing_streak == 0
        healthy(node, "hok", "imaged")  # the image's own HEALTHCHECK ran
        assert current(node, "hok", "unchecked").status.health == ""
        table = shoal(node, "ps", "hok", cwd=tmp_path).stdout
        lines = {line.split()[1]: line for line in table.splitlines()[1:]}
        assert "running (healthy)" in lines["hok_web.1"], table
        assert "running (healthy)" in lines["hok_imaged.1"], table
        assert "(" not in lines["hok_unchecked.1"].split("running")[1], table
        row = next(r for r in ps_json(node, "hok", tmp_path) if r["name"] == "hok_web.1")
        assert row["health"] == "healthy" and row["health_log"][-1]["output"] == "fine\n"
    finally:
        remove(node, "hok")


def test_a_failing_check_gets_the_task_replaced(node: Cluster, tmp_path: Path) -> None:
    with node.client() as api:
        since = max((e.revision for e in api.events()), default=0)
    start(
        node,
        tmp_path,
        "hbad",
        f"""
  web:
    image: {IMAGE}
    command: [sleep, "300"]
    healthcheck: {{test: "echo not ready; exit 1", interval: 1s, retries: 2}}
    {QUICK}
""",
        wait=False,
    )
    try:
        failed, successor = replaced(node, "hbad", "web")
        assert failed.status.error == "unhealthy: not ready"
        assert failed.status.health == "unhealthy" and failed.status.failing_streak == 2
        assert [r.exit_code for r in failed.status.health_log] == [1, 1]
        assert successor.slot == failed.slot
        with node.client() as api:
            said = [e for e in api.events(since) if e.type == "task" and e.id == failed.id]
        assert any(e.action == "failed" and "unhealthy: not ready" in e.message for e in said)
        row = next(r for r in ps_json(node, "hbad", tmp_path) if r["id"] == failed.id)
        assert row["state"] == "failed" and row["health_log"][-1]["output"] == "not ready\n"
    finally:
        remove(node, "hbad")


def test_http_probe_healthy_then_unhealthy_when_the_page_goes(
    node: Cluster, tmp_path: Path
) -> None:
    start(
        node,
        tmp_path,
        "hhttp",
        f"""
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{HTTPD.format(port=8080)}"]
    x-shoal:
      healthcheck: {{http: {{port: 8080, path: /health}}, interval: 1s, retries: 1}}
    {QUICK}
""",
    )
    try:
        first = healthy(node, "hhttp", "web")
        address = first.networks[0].address
        assert first.status.health_log[-1].output == f"GET http://{address}:8080/health: 200 OK"
        with node.client() as api:
            assert api.exec(first.id, ["rm", "/www/health"])["exit_code"] == 0
        failed, _ = replaced(node, "hhttp", "web")
        assert failed.id == first.id
        assert failed.status.error == (
            f"unhealthy: GET http://{address}:8080/health: 404 Not Found (wanted 200-399)"
        )
        healthy(node, "hhttp", "web")  # the new task serves the page again
    finally:
        remove(node, "hhttp")


def test_tcp_probe_and_a_hung_check_killed_at_its_timeout(node: Cluster, tmp_path: Path) -> None:
    hang = "if [ -e /tmp/once ]; then exit 0; fi; touch /tmp/once; exec sleep 29.5"
    start(
        node,
        tmp_path,
        "htcp",
        f"""
  db:
    image: {IMAGE}
    command: ["sh", "-c", "{HTTPD.format(port=5432)}"]
    healthcheck: {{interval: 1s, x-shoal: {{tcp: {{port: 5432}}}}}}
    {QUICK}
  slow:
    image: {IMAGE}
    command: [sleep, "300"]
    healthcheck: {{test: "{hang}", interval: 1s, timeout: 1s, retries: 3}}
    {QUICK}
""",
    )
    try:
        db = healthy(node, "htcp", "db")
        assert db.status.health_log[-1].output == f"connected to {db.networks[0].address}:5432"
        slow = healthy(node, "htcp", "slow")
        first, second = slow.status.health_log
        assert (first.exit_code, first.output) == (-1, "timed out after 1s")
        assert 1.0 <= first.end - first.start < 3.0
        assert second.exit_code == 0
        with node.client() as api:
            ps = api.exec(slow.id, ["ps", "-o", "args"])["stdout"]
        assert "sleep 300" in ps and "sleep 29.5" not in ps, ps  # the hung probe was killed
    finally:
        remove(node, "htcp")
