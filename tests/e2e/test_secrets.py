"""Secrets and configs end to end: real runc containers get them as read-only files on a tmpfs
with the declared mode and owner, a changed secret rolls the service, and the value is nowhere
else — not in the data directories (every file, binary too), the API responses, the events,
the logs, `inspect` or `shoal config` output, or the server's log. One cluster for the module;
`network_mode: none` keeps these tasks off the machine's iptables (other suites share it)."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.client import Client
from shoal.images.content import ContentStore
from tests.e2e.cluster import Cluster, cluster, needs_runc, shoal, wait_until
from tests.images.busybox import make_busybox_image

pytestmark = needs_runc

IMAGE = "localhost/test/busybox:1"
COMPOSE = f"""
name: sec
services:
  entry:
    image: {IMAGE}
    command: [sleep, "300"]
    network_mode: none
    secrets:
      - source: test_secret
        target: /volumes/test_secret.txt
      - source: db_pass
        uid: "1000"
        mode: 0400
    configs:
      - source: test_config
        target: /volumes/test_config.txt
    deploy: {{update_config: {{monitor: 1s}}}}
secrets:
  test_secret:
    file: ./test_secret.txt
  db_pass:
    file: ./db_pass.txt
configs:
  test_config:
    file: ./test_config.txt
"""


class Recorder:
    """Every CLI output and API response body of the test, to grep for the values later."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def client(self, c: Cluster) -> Client:
        api = c.client()

        def keep(response: httpx.Response) -> None:
            response.read()
            self.texts.append(response.text)

        api.http.event_hooks["response"].append(keep)
        return api

    def shoal(self, c: Cluster, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        done = shoal(c, *args, cwd=cwd)
        self.texts.append(done.stdout + done.stderr)
        return done


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("sec")
    try:
        with cluster(root, "up", runtime="runc") as c:
            make_busybox_image(ContentStore(c.data / "agent" / "images"), IMAGE)
            yield c
    finally:  # what an agent that died mid-test left mounted
        for mount in tmpfs_mounts(root):
            subprocess.run(["umount", "-l", mount], check=False)


def running_task(rec: Recorder, c: Cluster, stack: str, version: int = 1) -> Any:
    def found() -> Any:
        with rec.client(c) as api:
            return next(
                (
                    t
                    for t in api.tasks(stack)
                    if t.status.state == "running" and t.spec_version == version
                ),
                None,
            )

    return wait_until(found, timeout=60)


def run_in(rec: Recorder, c: Cluster, task_id: str, script: str) -> tuple[int, str]:
    with rec.client(c) as api:
        result = api.exec(task_id, ["sh", "-c", script])
    return result["exit_code"], result["stdout"] + result["stderr"]


def md5(value: bytes) -> str:
    return hashlib.md5(value).hexdigest()


def tmpfs_mounts(under: Path) -> list[str]:
    with open("/proc/self/mounts") as fh:
        fields = [line.split() for line in fh]
    return [f[1] for f in fields if f[0] == "tmpfs" and f[1].startswith(str(under) + "/")]


def files_holding(root: Path, needles: list[bytes], skip: list[Path]) -> list[str]:
    """Every regular file under `root` (not under `skip`) that contains one of `needles`."""
    hits = []
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in files:
            path = here / name
            if not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {n!r}" for n in needles if n in data]
    return hits


def test_secrets_and_configs_delivered_rolled_and_nowhere_else(
    node: Cluster, tmp_path: Path
) -> None:
    rec = Recorder()
    first = f"shoal-secret-{secrets.token_hex(12)}".encode()
    second = f"shoal-rotated-{secrets.token_hex(12)}".encode()
    other = f"shoal-test-secret-{secrets.token_hex(12)}".encode()
    config = b"MYCONFIG"
    (tmp_path / "db_pass.txt").write_bytes(first)
    (tmp_path / "test_secret.txt").write_bytes(other)
    (tmp_path / "test_config.txt").write_bytes(config)
    (tmp_path / "compose.yaml").write_text(COMPOSE)

    deployed = rec.shoal(node, "deploy", "--wait", "--timeout", "60", cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    task = running_task(rec, node, "sec")

    # the conformance scenarios simple_secretfile and simple_configfile, and the declared modes
    code, out = run_in(
        rec,
        node,
        task.id,
        "stat -c %a:%u:%g /run/secrets/db_pass /volumes/test_secret.txt /volumes/test_config.txt"
        " && md5sum /run/secrets/db_pass /volumes/test_secret.txt && cat /volumes/test_config.txt",
    )
    assert code == 0, out
    lines = out.split()
    assert lines[:3] == ["400:1000:0", "444:0:0", "444:0:0"]
    assert lines[3] == md5(first) and lines[5] == md5(other)
    assert out.endswith("MYCONFIG")
    code, out = run_in(rec, node, task.id, "echo x > /run/secrets/db_pass")
    assert code != 0 and "Read-only file system" in out

    secrets_root = node.data / "agent" / "secrets"
    mount = secrets_root / task.id
    assert tmpfs_mounts(node.data) == [str(mount)]
    assert (mount.stat().st_mode & 0o777) == 0o700

    # change the secret: a new version, the service rolls, the new task gets the new value
    (tmp_path / "db_pass.txt").write_bytes(second)
    redeployed = rec.shoal(node, "deploy", "--wait", "--timeout", "60", cwd=tmp_path)
    assert redeployed.returncode == 0, redeployed.stdout + redeployed.stderr
    assert 'secrets.db_pass: "v1" → "v2"' in redeployed.stdout
    new_task = running_task(rec, node, "sec", version=2)
    assert new_task.id != task.id
    code, out = run_in(rec, node, new_task.id, "md5sum /run/secrets/db_pass")
    assert code == 0 and out.split()[0] == md5(second)
    # the old task's container exited: its tmpfs is gone
    wait_until(lambda: tmpfs_mounts(node.data) == [str(secrets_root / new_task.id)], timeout=20)
    assert not (secrets_root / task.id).exists()

    # every way to look at the cluster (in parallel: each is a CLI process), then a grep
    views = [
        ("secret", "inspect", "sec_db_pass"),
        ("events",),
        ("logs", "sec/entry"),
        ("secret", "ls", "-o", "json"),
        ("config", "ls"),
        ("config", "inspect", "sec_test_config"),
        ("config",),
        ("services", "-o", "json"),
        ("ps", "--all", "-o", "json"),
        ("service", "history", "sec/entry"),
        ("deploy", "--dry-run"),
    ]
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda args: rec.shoal(node, *args, cwd=tmp_path), views))
    assert [d.returncode for d in done] == [0] * len(views), [d.stderr for d in done]
    assert '"digest"' in done[0].stdout and '"version": 2' in done[0].stdout
    assert "file: " + str(tmp_path / "db_pass.txt") in done[6].stdout
    needles = [first, second, other]
    texts = "\n".join(rec.texts)
    for needle in needles:
        assert needle.decode() not in texts
    skip = [p for p in secrets_root.iterdir()] if secrets_root.exists() else []
    assert files_holding(node.data, needles, skip) == []
    assert files_holding(node.root, needles, [node.data]) == []  # the server's log

    rec.shoal(node, "rm", "sec", "--wait", cwd=tmp_path)
    wait_until(lambda: tmpfs_mounts(node.data) == [], timeout=30)
    gone = rec.shoal(node, "secret", "inspect", "sec_db_pass", cwd=tmp_path)
    assert gone.returncode == 1 and "no secret 'sec_db_pass'" in gone.stderr


def test_bad_secret_input_is_refused_naming_it(node: Cluster, tmp_path: Path) -> None:
    rec = Recorder()
    (tmp_path / "compose.yaml").write_text(COMPOSE.replace("name: sec", "name: bad"))
    (tmp_path / "test_secret.txt").write_text("x")
    (tmp_path / "test_config.txt").write_text("y")
    missing = rec.shoal(node, "deploy", cwd=tmp_path)
    assert missing.returncode == 2
    assert f"secrets.db_pass.file: {tmp_path / 'db_pass.txt'} does not exist" in missing.stderr

    (tmp_path / "compose.yaml").write_text(
        f"""
name: bad
services:
  app:
    image: {IMAGE}
    command: [sleep, "300"]
    network_mode: none
    secrets: [api_key]
secrets:
  api_key:
    external: true
"""
    )
    external = rec.shoal(node, "deploy", cwd=tmp_path)
    assert external.returncode == 2
    assert "secrets.api_key: external secret api_key does not exist" in external.stderr
    assert "shoal secret create api_key FILE" in external.stderr

    # once created by hand it works, and `shoal secret rm` refuses while it is used
    (tmp_path / "key.txt").write_text("k")
    created = rec.shoal(node, "secret", "create", "api_key", "key.txt", cwd=tmp_path)
    assert created.returncode == 0 and "version 1" in created.stdout
    deployed = rec.shoal(node, "deploy", cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    refused = rec.shoal(node, "secret", "rm", "api_key", cwd=tmp_path)
    assert refused.returncode == 1 and "in use by bad/app" in refused.stderr
    rec.shoal(node, "rm", "bad", "--wait", cwd=tmp_path)
    assert rec.shoal(node, "secret", "rm", "api_key", cwd=tmp_path).returncode == 0


def test_operator_key_file_rotation_and_a_wrong_key(tmp_path: Path) -> None:
    """`shoal server --secrets-key-file`: rotation replaces the operator's file, and a restart
    with another key refuses to start instead of mixing keys."""
    from shoal.secrets.crypto import key_id

    rec = Recorder()
    key = tmp_path / "ops.key"
    key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)
    c = Cluster(tmp_path)

    def server(key_file: Path) -> subprocess.Popen[bytes]:
        return c._spawn("server", "server", "--listen", c.addr, "--secrets-key-file", str(key_file))

    try:
        server(key)
        c.wait_ready()
        (tmp_path / "v.txt").write_text("value-of-an-operator-secret")
        assert rec.shoal(c, "secret", "create", "op", "v.txt", cwd=tmp_path).returncode == 0
        before = key_id(bytes.fromhex(key.read_text()))
        rotated = rec.shoal(c, "secret", "rotate-key", cwd=tmp_path)
        assert rotated.returncode == 0 and "1 version(s) re-encrypted" in rotated.stdout
        after = key_id(key.read_bytes())
        assert after != before and f"now {after}" in rotated.stdout
        assert (key.stat().st_mode & 0o777) == 0o600 and not (c.data / "secrets.key").exists()
        c.stop("server")

        server(key)  # the rotated key opens the store
        c.wait_ready()
        assert rec.shoal(c, "secret", "inspect", "op", cwd=tmp_path).returncode == 0
        c.stop("server")
        other = tmp_path / "other.key"
        other.write_bytes(os.urandom(32))
        other.chmod(0o600)
        assert server(other).wait(20) == 1
        assert f"sealed with key {after}" in (tmp_path / "server.log").read_text()
        c.procs.pop("server")
    finally:
        for name in list(c.procs):
            c.stop(name)
