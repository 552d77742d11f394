"""`shoal exec` and `shoal stats` against real runc containers of a one-node cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.images.content import ContentStore
from tests.e2e.cluster import Cluster, cluster, needs_runc, shoal
from tests.images.busybox import make_busybox_image

COMPOSE = """
name: ex
services:
  box:
    image: localhost/test/busybox:1
    command: [sleep, "300"]
    deploy:
      resources: {limits: {memory: 64M}}
      update_config: {monitor: 1s}
"""


@pytest.fixture
def runc_node(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path, "up", runtime="runc") as c:
        yield c


@needs_runc
def test_exec_and_stats(runc_node: Cluster, tmp_path: Path) -> None:
    make_busybox_image(
        ContentStore(runc_node.data / "agent" / "images"), "localhost/test/busybox:1"
    )
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    deployed = shoal(
        runc_node, "deploy", "-f", "compose.yaml", "--wait", "--timeout", "60", cwd=tmp_path
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    ran = shoal(runc_node, "exec", "ex/box", "--", "sh", "-c", "echo hi; echo err >&2; exit 3")
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout == "hi\n"
    assert ran.stderr == "err\n"

    absent = shoal(runc_node, "exec", "ex/box", "--", "nosuchcmd")
    assert absent.returncode == 127 and "nosuchcmd" in absent.stderr

    with runc_node.client() as api:
        (task,) = api.tasks("ex", "box")
    by_id = shoal(runc_node, "exec", task.id[:10], "cat", "/proc/1/cmdline")
    assert by_id.returncode == 0, by_id.stderr
    assert "sleep" in by_id.stdout

    stats = shoal(runc_node, "stats", "ex", "-o", "json")
    assert stats.returncode == 0, stats.stderr
    (row,) = json.loads(stats.stdout)
    assert row["task_id"] == task.id and row["name"] == "ex_box.1"
    assert row["memory_limit"] == 64 * 1024 * 1024
    assert 0 < row["memory_usage"] < row["memory_limit"]
    assert row["pids_current"] >= 1 and row["cpu_percent"] is not None
    assert row["error"] is None

    table = shoal(runc_node, "stats")
    assert table.returncode == 0, table.stderr
    assert "ex_box.1" in table.stdout and "64MiB" in table.stdout

    missing = shoal(runc_node, "exec", "nosuchtask", "--", "true")
    assert missing.returncode == 1
    assert "no task 'nosuchtask'" in missing.stderr and "Traceback" not in missing.stderr
    missing = shoal(runc_node, "exec", "ex/nope", "--", "true")
    assert missing.returncode == 1 and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr
    interactive = shoal(runc_node, "exec", "-it", "ex/box", "--", "sh")  # stdin is no TTY
    assert interactive.returncode == 1 and "the input device is not a TTY" in interactive.stderr
    nothing = shoal(runc_node, "stats", "nostack")
    assert nothing.returncode == 1 and "no stack 'nostack'" in nothing.stderr


HOST_STACK = """
name: hp
services:
  sleeper:
    image: none
    command: [sleep, "300"]
  once:
    image: none
    command: ["true"]
    deploy: {mode: replicated-job}
"""


def test_process_runtime_has_stats_but_no_exec(one_node: Cluster, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(HOST_STACK)
    deployed = shoal(
        one_node, "deploy", "-f", "compose.yaml", "--wait", "--timeout", "60", cwd=tmp_path
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    ran = shoal(one_node, "exec", "hp/sleeper", "--", "true")
    assert ran.returncode == 1
    assert "the process runtime cannot exec into a task: it runs host processes" in ran.stderr

    with one_node.client() as api:
        (job,) = api.tasks("hp", "once", all=True)
    done = shoal(one_node, "exec", job.id, "--", "true")
    assert done.returncode == 1 and "is complete, not running" in done.stderr
    idle = shoal(one_node, "exec", "hp/once", "--", "true")
    assert idle.returncode == 1 and "has no running task" in idle.stderr

    stats = shoal(one_node, "stats", "hp", "-o", "json")
    assert stats.returncode == 0, stats.stderr
    (row,) = json.loads(stats.stdout)
    assert row["name"] == "hp_sleeper.1" and row["memory_usage"] > 0
    assert row["memory_limit"] is None and row["error"] is None
