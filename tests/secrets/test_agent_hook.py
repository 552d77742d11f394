"""The agent's secrets hook: target paths, a real tmpfs per task with the declared owners and
modes, refusals (process runtime, bad ids, clashing targets) and the release."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any, cast

import pytest

from shoal.agent.secrets import TaskSecrets, target_of
from shoal.client.http import AsyncClient
from shoal.model.cluster import Task
from shoal.model.compose_mounts import FileReference
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid
from shoal.runtime.base import ContainerSpec

ROOT = os.geteuid() == 0


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


class FakeServer:
    """Answers the agent's one request the way the server does, and remembers it."""

    def __init__(self, values: dict[tuple[str, str], bytes]) -> None:
        self.values = values
        self.asked: list[tuple[str, str, dict[str, str]]] = []

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        self.asked.append((method, path, kw.get("params", {})))
        items = [
            {"kind": k, "source": s, "name": f"st_{s}", "version": 1, "data": b64(v)}
            for (k, s), v in self.values.items()
        ]
        return {"task": path.split("/")[3], "items": items}


def make_task(secrets: list[Any] | None = None, configs: list[Any] | None = None) -> Task:
    spec = ServiceSpec.model_validate(
        {"image": "busybox", "command": ["true"], "secrets": secrets, "configs": configs}
    )
    return Task(
        id="task1",
        stack="st",
        service="web",
        service_id="s1",
        spec_version=1,
        spec=spec,
        node_id="node-1",
    )


def container(rootfs: str | None = "/rootfs") -> ContainerSpec:
    return ContainerSpec(id="task1", name="st_web.1", command=["true"], rootfs=rootfs)


def hook(tmp_path: Path, server: FakeServer) -> TaskSecrets:
    return TaskSecrets(cast(AsyncClient, server), tmp_path)


def test_targets_follow_compose_defaults() -> None:
    ref = FileReference.model_validate
    assert target_of("secret", ref("db")) == "/run/secrets/db"
    assert target_of("secret", ref({"source": "db", "target": "pw"})) == "/run/secrets/pw"
    assert target_of("secret", ref({"source": "db", "target": "/etc/pw"})) == "/etc/pw"
    assert target_of("config", ref("nginx")) == "/nginx"
    assert target_of("config", ref({"source": "n", "target": "etc/n.conf"})) == "/etc/n.conf"


def test_no_secrets_no_request_no_mount(tmp_path: Path) -> None:
    server = FakeServer({})
    spec = asyncio.run(hook(tmp_path, server).attach(make_task(), container()))
    assert spec == container() and server.asked == []
    assert not (tmp_path / "secrets").exists()


def test_process_runtime_is_refused(tmp_path: Path) -> None:
    server = FakeServer({("secret", "db"): b"v"})
    with pytest.raises(Invalid, match="process runtime cannot mount"):
        asyncio.run(hook(tmp_path, server).attach(make_task(["db"]), container(None)))
    assert server.asked == []


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
def test_files_on_a_private_tmpfs_with_owner_and_mode(tmp_path: Path) -> None:
    server = FakeServer({("secret", "db"): b"pw-1", ("config", "conf"): b"listen 80\n"})
    secrets = hook(tmp_path, server)
    task = make_task(
        [{"source": "db", "uid": "1000", "gid": "50", "mode": 0o400}],
        [{"source": "conf", "target": "/etc/app.conf"}],
    )
    spec = asyncio.run(secrets.attach(task, container()))
    assert server.asked == [("GET", "/v1/tasks/task1/secrets", {"node": "node-1"})]
    directory = tmp_path / "secrets" / "task1"
    assert set(spec.files) == {"/run/secrets/db", "/etc/app.conf"}
    assert all(Path(p).parent == directory for p in spec.files.values())
    db, conf = Path(spec.files["/run/secrets/db"]), Path(spec.files["/etc/app.conf"])
    assert db.read_bytes() == b"pw-1" and conf.read_bytes() == b"listen 80\n"
    assert (db.stat().st_mode & 0o7777, db.stat().st_uid, db.stat().st_gid) == (0o400, 1000, 50)
    assert (conf.stat().st_mode & 0o7777, conf.stat().st_uid) == (0o444, 0)
    assert directory.stat().st_mode & 0o777 == 0o700
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    mount = next(line.split() for line in mounts if f" {directory} " in line)
    assert mount[2] == "tmpfs" and "nosuid" in mount[3] and "noexec" in mount[3]
    assert secrets.mounted() == {"task1"}

    asyncio.run(secrets.release("task1"))
    assert not directory.exists() and secrets.mounted() == set()
    assert f" {directory} " not in Path("/proc/self/mounts").read_text()


@pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ([{"source": "db", "uid": "nobody"}], "secrets.db.uid: 'nobody' is not a numeric id"),
        (
            [{"source": "db", "target": "x"}, {"source": "db2", "target": "/run/secrets/x"}],
            "two secrets or configs are mounted at /run/secrets/x",
        ),
    ],
)
def test_bad_files_are_refused_and_leave_nothing(
    tmp_path: Path, secrets: list[Any], message: str
) -> None:
    server = FakeServer({("secret", "db"): b"a", ("secret", "db2"): b"b"})
    with pytest.raises(Invalid, match=message):
        asyncio.run(hook(tmp_path, server).attach(make_task(secrets), container()))
    assert list((tmp_path / "secrets").iterdir()) == []
    assert f" {tmp_path}/" not in Path("/proc/self/mounts").read_text()
