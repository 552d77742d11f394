"""Rolling updates end to end on real runc containers: a bad release rolls itself back and
`deploy --wait` says so with exit code 1; a paused update resumes; `shoal update`/`rollback`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shoal.images.content import ContentStore
from tests.e2e.cluster import Cluster, cluster, free_port, needs_cni, shoal, wait_until
from tests.e2e.test_network import IMAGE, task_list
from tests.images.busybox import make_busybox_image

pytestmark = needs_cni

GOOD = "mkdir -p /www && echo v1 > /www/index.html && exec httpd -f -p 80 -h /www"
BAD = "echo 'cannot start: missing config' >&2; exit 3"


def stack(port: int, command: str, failure_action: str = "rollback") -> str:
    return f"""
name: upd
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{command}"]
    ports: ["127.0.0.1:{port}:80"]
    deploy:
      replicas: 2
      update_config: {{parallelism: 1, monitor: 2s, failure_action: {failure_action}}}
      rollback_config: {{parallelism: 0, monitor: 1s}}
      restart_policy: {{condition: on-failure, delay: 1s}}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("upd"), "up", runtime="runc") as c:
        make_busybox_image(ContentStore(c.data / "agent" / "images"), IMAGE)
        yield c


def deploy(c: Cluster, tmp: Path, text: str, *extra: str) -> tuple[int, str, str]:
    (tmp / "upd.yaml").write_text(text)
    result = shoal(c, "deploy", "-f", "upd.yaml", "--wait", "--timeout", "90", *extra, cwd=tmp)
    return result.returncode, result.stdout, result.stderr


def test_a_bad_release_rolls_back_and_deploy_wait_says_so(node: Cluster, tmp_path: Path) -> None:
    port = free_port()
    code, _, err = deploy(node, tmp_path, stack(port, GOOD))
    assert code == 0, err
    code, out, err = deploy(node, tmp_path, stack(port, BAD), "--output", "json")
    assert code == 1, err
    assert "rolled back" in err and "exited with code 3" in err, err
    assert "cannot start: missing config" in err  # the failing task's last log line
    report = json.loads(out)
    [web] = report["services"]
    assert report["result"] == "failed" and report["exit_code"] == 1
    assert (web["action"], web["version_before"], web["state"]) == ("update", 1, "rolled_back")
    assert "update to version 2 failed" in web["rollback_reason"]
    with node.client() as api:
        svc = api.service("upd", "web")
        assert (svc.version, svc.spec.command) == (3, ["sh", "-c", GOOD])
        events = [e for e in api.events() if e.service == "web" and e.type == "service"]
    assert "rollback" in [e.action for e in events]
    assert "rollback-completed" in [e.action for e in events]
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=3).text.strip() == "v1"
    # The same bad file with failure_action pause: exit 1, paused, then resumed by `update`.
    code, _, err = deploy(node, tmp_path, stack(port, BAD, "pause"))
    assert code == 1 and "paused" in err, err
    resumed = shoal(node, "update", "upd/web", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    back = shoal(node, "rollback", "upd/web", "--wait", "--timeout", "60", cwd=tmp_path)
    assert back.returncode in (0, 1), back.stderr  # converges on the good spec again
    wait_until(lambda: sum(t.status.state == "running" for t in task_list(node, "upd")) == 2, 30)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=3).text.strip() == "v1"
    history = shoal(node, "service", "history", "upd/web", cwd=tmp_path)
    assert history.returncode == 0 and "command" in history.stdout


def test_bad_input_exits_2(node: Cluster, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("services:\n  web:\n    image: x\n    ports: [99999999]\n")
    result = shoal(node, "deploy", "-f", "bad.yaml", "--wait", cwd=tmp_path)
    assert result.returncode == 2 and "bad.yaml:4" in result.stderr, result.stderr


SERVE = "mkdir -p /www && echo $$VERSION > /www/index.html && exec httpd -f -p 80 -h /www"


def rolling(port: int, replicas: int, order: str, parallelism: int, version: str) -> str:
    return f"""
name: zero
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{SERVE}"]
    environment: {{VERSION: "{version}"}}
    ports: ["127.0.0.1:{port}:80"]
    healthcheck:
      test: ["CMD-SHELL", "wget -qO /dev/null http://127.0.0.1/ || exit 1"]
      interval: 1s
      start_period: 10s
      start_interval: 200ms
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: {parallelism}, order: {order}, monitor: 1s}}
"""


class Hammer:
    """Requests in a loop from a thread; counts what failed."""

    def __init__(self, url: str) -> None:
        self.url, self.done, self.bodies, self.failures = url, threading.Event(), [], []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=3) as client:
            while not self.done.is_set():
                try:
                    self.bodies.append(client.get(self.url).raise_for_status().text.strip())
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.01)

    def __enter__(self) -> Hammer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join(5)


@pytest.mark.parametrize(
    ("order", "replicas", "parallelism"), [("start-first", 4, 2), ("stop-first", 2, 1)]
)
def test_rolling_update_drops_no_request(
    node: Cluster, tmp_path: Path, order: str, replicas: int, parallelism: int
) -> None:
    port = free_port()
    code, _, err = deploy(node, tmp_path, rolling(port, replicas, order, parallelism, "1"))
    assert code == 0, err
    try:
        with node.client() as api:
            vip = next(iter(api.service("zero", "web").vips.values()))
        with Hammer(f"http://127.0.0.1:{port}/") as published, Hammer(f"http://{vip}/") as via_vip:
            time.sleep(0.5)
            code, _, err = deploy(node, tmp_path, rolling(port, replicas, order, parallelism, "2"))
            time.sleep(0.5)
        assert code == 0, err
        for hammer in (published, via_vip):
            assert not hammer.failures, hammer.failures[:3]
            assert len(hammer.bodies) > 20 and hammer.bodies[-1] == "2"
            assert "1" in hammer.bodies
    finally:
        with node.client() as api:
            api.remove_stack("zero")
            wait_until(lambda: "zero" not in {s["name"] for s in api.stacks()}, timeout=30)


def test_depends_on_waits_for_healthy_and_completed(node: Cluster, tmp_path: Path) -> None:
    (tmp_path / "dep.yaml").write_text(f"""
name: dep
services:
  db:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 300"]
    healthcheck: {{test: ["CMD", "test", "-f", "/tmp/ready"], interval: 300ms}}
  migrate:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 1; echo migrated"]
    depends_on: {{db: {{condition: service_healthy}}}}
    deploy: {{mode: replicated-job}}
  app:
    image: {IMAGE}
    command: [sleep, "300"]
    depends_on:
      db: {{condition: service_healthy}}
      migrate: {{condition: service_completed_successfully}}
    deploy: {{update_config: {{monitor: 1s}}}}
""")
    result = shoal(node, "deploy", "-f", "dep.yaml", "--wait", "--timeout", "60", cwd=tmp_path)
    try:
        assert result.returncode == 0, result.stderr
        with node.client() as api:
            by_service = {t.service: t for t in api.tasks("dep", all=True)}
        healthy_at = by_service["db"].status.health_log[0].end
        migrated_at = by_service["migrate"].status.timestamp
        assert by_service["migrate"].status.started_at >= healthy_at - 0.5
        assert by_service["app"].status.started_at >= migrated_at
    finally:
        with node.client() as api:
            api.remove_stack("dep")
            wait_until(lambda: "dep" not in {s["name"] for s in api.stacks()}, timeout=30)
