"""Volumes end to end with real runc containers (busybox, `network_mode: none`): named volumes
that outlive containers, updates, agent restarts and `shoal rm`; binds (the conformance
scenario simple_volume), copy-up and nocopy, anonymous volumes, tmpfs and bind-driver volumes,
removal rules and the bad inputs. One `shoal up` for the module."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.images.content import ContentStore
from tests.e2e.cluster import Cluster, cluster, needs_runc, shoal, wait_until
from tests.images.busybox import make_busybox_image

pytestmark = needs_runc

IMAGE = "localhost/test/busybox:1"
CONFORMANCE = Path(__file__).resolve().parents[3] / "shared/compose-corpus/conformance/tests"
SERVICE = """
    image: localhost/test/busybox:1
    network_mode: none
    command: [sleep, "300"]
    deploy:
      update_config: {monitor: 0s}
      restart_policy: {condition: any, delay: 0s}
"""


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.strip()]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("vol")
    try:
        with cluster(root, "up", runtime="runc") as c:
            make_busybox_image(ContentStore(c.data / "agent" / "images"), IMAGE)
            yield c
    finally:
        # Volume mounts a failed test left (tmpfs volumes stay mounted until removed).
        for point in sorted(mount_points(), key=len, reverse=True):
            if point.startswith(str(root.resolve()) + "/"):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def deploy(
    c: Cluster, tmp: Path, name: str, compose: str, wait: bool = True
) -> subprocess.CompletedProcess[str]:
    (tmp / f"{name}.yaml").write_text(compose.format(image=IMAGE, service=SERVICE))
    waiting = ["--wait", "--timeout", "60"] if wait else []
    return shoal(c, "deploy", "-f", f"{name}.yaml", *waiting, cwd=tmp)


def deployed(c: Cluster, tmp: Path, name: str, compose: str) -> None:
    result = deploy(c, tmp, name, compose)
    assert result.returncode == 0, result.stdout + result.stderr


def running(c: Cluster, stack: str, service: str) -> Any:
    with c.client() as api:
        return next(
            t
            for t in api.tasks(stack)
            if t.service == service and t.status.state == "running" and t.desired_state == "running"
        )


def sh(c: Cluster, stack: str, service: str, script: str) -> str:
    task = running(c, stack, service)
    with c.client() as api:
        result = api.exec(task.id, ["sh", "-c", script])
    assert result["exit_code"] == 0, result
    return str(result["stdout"])


def volumes(c: Cluster) -> dict[str, Any]:
    with c.client() as api:
        return {v["name"]: v for v in api.request("GET", "/v1/volumes")}


def gone(c: Cluster, stack: str) -> bool:
    with c.client() as api:
        return stack not in {s["name"] for s in api.stacks()}


KEEP = """
name: keep
services:
  db:{service}
    environment: {{ROUND: "{round}"}}
    volumes: [data:/data]
volumes:
  data:
"""


def test_named_volume_data_outlives_kill_update_restart_and_rm(
    node: Cluster, tmp_path: Path
) -> None:
    deployed(node, tmp_path, "keep", KEEP.replace("{round}", "1"))
    sh(node, "keep", "db", "echo precious > /data/marker")
    home = node.data / "agent" / "volumes" / "keep_data"
    assert (home / "marker").read_text() == "precious\n"
    # kill -9 of the container: the restart policy brings a new task with the same data.
    first = running(node, "keep", "db")
    os.kill(first.status.pid, signal.SIGKILL)
    wait_until(lambda: running(node, "keep", "db").id != first.id, timeout=30)
    assert sh(node, "keep", "db", "cat /data/marker") == "precious\n"
    # A changed service (rolling update): a new task, the same data.
    before = running(node, "keep", "db").id
    deployed(node, tmp_path, "keep", KEEP.replace("{round}", "2"))
    assert running(node, "keep", "db").id != before
    assert sh(node, "keep", "db", "cat /data/marker") == "precious\n"
    # Agent restart (kill -9 of `shoal up`): the re-adopted task and a new one see it.
    node.kill9("up")
    node.start_up()
    assert sh(node, "keep", "db", "cat /data/marker") == "precious\n"
    deployed(node, tmp_path, "keep", KEEP.replace("{round}", "3"))
    assert sh(node, "keep", "db", "cat /data/marker") == "precious\n"
    # `shoal rm` keeps it; a redeploy finds it.
    assert shoal(node, "rm", "--wait", "keep", cwd=tmp_path).returncode == 0
    listed = shoal(node, "volume", "ls", cwd=tmp_path)
    assert listed.returncode == 0 and "keep_data" in listed.stdout and "unused" in listed.stdout
    deployed(node, tmp_path, "keep", KEEP.replace("{round}", "3"))
    assert sh(node, "keep", "db", "cat /data/marker") == "precious\n"
    # In use: refused, naming the task.
    refused = shoal(node, "volume", "rm", "keep_data", cwd=tmp_path)
    assert refused.returncode == 1
    assert "volume keep_data is in use by 1 task(s): keep_db.1" in refused.stderr
    inspected = json.loads(shoal(node, "volume", "inspect", "keep_data", cwd=tmp_path).stdout)
    assert inspected["tasks"] == [running(node, "keep", "db").id]
    assert inspected["node_id"] == running(node, "keep", "db").node_id
    # Once the stack is gone, prune deletes what no stack declares: data and record.
    assert shoal(node, "rm", "--wait", "keep", cwd=tmp_path).returncode == 0
    pruned = shoal(node, "volume", "prune", "-f", cwd=tmp_path)
    assert pruned.returncode == 0 and pruned.stdout.split() == ["keep_data"], pruned.stderr
    assert "keep_data" not in volumes(node)
    assert not home.exists()


MIXED = """
name: mixed
services:
  conformance:{service}
    volumes:
      - ./test_volume.txt:/volumes/test_volume.txt
  seeded:{service}
    volumes: [seed:/etc]
  bare:{service}
    volumes:
      - type: volume
        source: bare
        target: /etc
        volume: {{nocopy: true}}
  scratch:{service}
    volumes: [/scratch]
  fast:{service}
    volumes: [fast:/fast]
  hosted:{service}
    volumes:
      - host:/host
      - type: volume
        source: host
        target: /sub
        volume: {{subpath: sub}}
volumes:
  seed:
  bare:
  fast:
    driver_opts: {{type: tmpfs, device: tmpfs, o: size=8m}}
  host:
    driver_opts: {{type: none, o: bind, device: {host}}}
"""


def test_binds_copy_up_anonymous_and_tmpfs_volumes(node: Cluster, tmp_path: Path) -> None:
    shutil.copy(CONFORMANCE / "simple_volume" / "test_volume.txt", tmp_path / "test_volume.txt")
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    (host / "sub" / "kept").write_text("host data\n")
    deployed(node, tmp_path, "mixed", MIXED.replace("{host}", str(host)))
    # simple_volume: a file bound from the project directory.
    assert sh(node, "mixed", "conformance", "cat /volumes/test_volume.txt") == "MYVOLUME"
    # Copy-up: the image's /etc in the new volume (on the node too); nocopy: left empty.
    assert sh(node, "mixed", "seeded", "cat /etc/group").startswith("root:x:0:")
    seed = node.data / "agent" / "volumes" / "mixed_seed"
    assert sorted(p.name for p in seed.iterdir()) == ["group", "passwd"]
    assert sh(node, "mixed", "bare", "ls -A /etc") == ""
    # tmpfs driver_opts: a tmpfs of that size, kept on the node while the volume exists.
    mounts = sh(node, "mixed", "fast", "grep ' /fast ' /proc/mounts")
    assert mounts.startswith("tmpfs /fast tmpfs ") and "size=8192k" in mounts
    fast = (node.data / "agent" / "volumes" / "mixed_fast").resolve()
    assert str(fast) in mount_points()
    # A bind of an existing path, whole or a subpath of it; removing it leaves the path alone.
    assert sh(node, "mixed", "hosted", "cat /host/sub/kept /sub/kept") == "host data\n" * 2
    # Anonymous: a directory of the task's, gone with it.
    sh(node, "mixed", "scratch", "echo x > /scratch/file")
    task = running(node, "mixed", "scratch")
    anonymous = node.data / "agent" / "anonymous" / task.id
    assert (anonymous / "0" / "file").read_text() == "x\n"
    removed = shoal(node, "rm", "--wait", "--volumes", "mixed", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    wait_until(lambda: not anonymous.exists(), timeout=15)
    assert not {"mixed_seed", "mixed_bare", "mixed_fast"} & set(volumes(node))
    assert str(fast) not in mount_points() and not fast.exists()
    assert (host / "sub" / "kept").read_text() == "host data\n"


def test_missing_bind_source_is_rejected_with_the_reason(node: Cluster, tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    result = deploy(
        node,
        tmp_path,
        "nobind",
        f"""
name: nobind
services:
  app:
    image: {{image}}
    network_mode: none
    command: [sleep, "300"]
    deploy:
      restart_policy: {{{{condition: on-failure, max_attempts: 1, delay: 0s}}}}
    volumes:
      - type: bind
        source: {missing}
        target: /x
        bind: {{{{create_host_path: false}}}}
""",
    )
    try:
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"bind mount source {missing} does not exist" in result.stderr
        with node.client() as api:
            [task, *_] = api.tasks("nobind", all=True)
        assert task.status.state == "rejected"
        assert "hint: create it or set create_host_path" in task.status.error
        assert not missing.exists()
    finally:
        shoal(node, "rm", "--wait", "nobind", cwd=tmp_path)


def test_bad_input_exits_2_with_the_reason(node: Cluster, tmp_path: Path) -> None:
    owner = "name: owner\nservices:\n  app:{service}\nvolumes:\n  mine: {{name: precious}}\n"
    assert deploy(node, tmp_path, "owner", owner, wait=False).returncode == 0
    try:
        clash = deploy(
            node,
            tmp_path,
            "thief",
            "name: thief\nservices:\n  app:{service}\nvolumes:\n  its: {{name: precious}}\n",
        )
        assert clash.returncode == 2
        assert "volume precious (volumes.its) belongs to stack owner" in clash.stderr
        assert "external: true" in clash.stderr
        assert gone(node, "thief")
        # `external: true` is how another stack shares it.
        shared = (
            "name: thief\nservices:\n  app:{service}\n"
            "volumes:\n  its: {{name: precious, external: true}}\n"
        )
        assert deploy(node, tmp_path, "thief", shared, wait=False).returncode == 0
        assert volumes(node)["precious"]["declared_by"] == ["owner", "thief"]
    finally:
        shoal(node, "rm", "--wait", "thief", cwd=tmp_path)
        shoal(node, "rm", "--wait", "--volumes", "owner", cwd=tmp_path)
    app = "name: sizes\nservices:\n  app:\n    image: {image}\n"
    for where, extra in (
        ("sizes.yaml:5:13: services.app.tmpfs[0]", "    tmpfs: [/run:size=12q]\n"),
        (
            "sizes.yaml:8:32: volumes.fast.driver_opts",
            "    volumes: [fast:/f]\nvolumes:\n  fast:\n"
            "    driver_opts: {{type: tmpfs, o: size=12q}}\n",
        ),
        (
            "sizes.yaml:8:17: services.app.volumes[0].tmpfs.size",
            "    volumes:\n      - type: tmpfs\n        target: /t\n        tmpfs: {{size: 12q}}\n",
        ),
    ):
        bad = deploy(node, tmp_path, "sizes", app + extra)
        assert bad.returncode == 2, bad.stderr
        assert where in bad.stderr and "12q" in bad.stderr, bad.stderr
    assert gone(node, "sizes")
