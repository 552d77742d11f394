"""A stack of real runc containers from an image built by `shoal deploy` (no registry)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster, free_port, needs_runc, wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = needs_runc


@pytest.fixture
def runc_node(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path, "up", runtime="runc") as c:
        yield c


def test_build_deploy_serve_limit_and_remove(runc_node: Cluster, tmp_path: Path) -> None:
    context = tmp_path / "img"
    context.mkdir()
    shutil.copy(REPO / "examples" / "busybox" / "Containerfile", context / "Containerfile")
    shutil.copy(shutil.which("busybox") or "/bin/busybox", context / "busybox")
    port = free_port()
    (tmp_path / "compose.yaml").write_text(
        f"""
name: rs
services:
  web:
    image: localhost/test/busybox:1
    build: ./img
    network_mode: host
    command: >-
      sh -c 'echo hello-from-runc > /www/index.html &&
      exec httpd -f -p 127.0.0.1:{port} -h /www'
    deploy:
      update_config: {{monitor: 1s}}
  hog:
    image: localhost/test/busybox:1
    command: sh -c 'echo $$(cat /proc/self/cgroup | head -1); exec sleep 300'
    read_only: true
    tmpfs: [/scratch]
    deploy:
      resources: {{limits: {{memory: 32M, pids: 50}}}}
      update_config: {{monitor: 1s}}
"""
    )
    env = {**os.environ, "SHOAL_ADDR": runc_node.addr, "SHOAL_DATA_DIR": str(runc_node.data)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "deploy",
            "-f",
            str(tmp_path / "compose.yaml"),
            "--wait",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    response = wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=2))
    assert response.status_code == 200 and "hello-from-runc" in response.text
    with runc_node.client() as api:
        hog = next(t for t in api.tasks("rs") if t.service == "hog")
    memory_limit = Path(f"/sys/fs/cgroup/memory/shoal/{hog.id}/memory.limit_in_bytes")
    if memory_limit.exists():  # cgroup v1 (this machine); v2 keeps it in memory.max
        assert int(memory_limit.read_text()) == 32 * 1024 * 1024
    logs = subprocess.run(
        [sys.executable, "-m", "shoal", "logs", "rs/hog"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert logs.returncode == 0 and f"/shoal/{hog.id}" in logs.stdout, logs.stdout + logs.stderr
    with runc_node.client() as api:
        api.remove_stack("rs")
        wait_until(lambda: not api.stacks(), timeout=30)
    listing = subprocess.run(["runc", "list", "-q"], capture_output=True, text=True)
    assert hog.id not in listing.stdout
    assert not any((runc_node.data / "agent" / "rootfs").glob("*/rootfs"))
