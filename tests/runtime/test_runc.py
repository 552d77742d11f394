"""The runc runtime passes the conformance suite over a busybox rootfs, and handles the hard
cases: OOM, SIGTERM ignored by PID 1, 100 MB of logs, read-only roots, limits, exec, stats.

Needs root, runc, conmon, tini-static and busybox-static; skipped otherwise. After every test
nothing is left: no runc containers, no cgroups under the test parent, no mounts, no netns.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.model.errors import Conflict, Invalid
from shoal.runtime import cgroups
from shoal.runtime.base import ContainerSpec, Runtime
from shoal.runtime.runc import RuncRuntime
from shoal.runtime.testsuite import RuntimeConformance, clean_up, collect, wait_for_line

CGROUP_PARENT = "shoaltest"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
_runtime = RuncRuntime("/nonexistent")
_missing = [
    what
    for what, ok in [
        ("root", os.geteuid() == 0),
        ("runc", _runtime.runc),
        ("conmon (apt-get install conmon)", _runtime.conmon),
        ("tini-static", _runtime.init),
        ("busybox-static", os.path.exists(BUSYBOX)),
    ]
    if not ok
]
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(bool(_missing), reason=f"runc runtime needs {', '.join(_missing)}"),
]


def build_rootfs(target: Path) -> None:
    """A busybox image: /bin/busybox plus its applet links, /etc/passwd and /etc/group."""
    (target / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, target / "bin" / "busybox")
    subprocess.run(["chroot", str(target), "/bin/busybox", "--install", "-s", "/bin"], check=True)
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        (target / d).mkdir(exist_ok=True)
    (target / "tmp").chmod(0o1777)
    (target / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (target / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="shoal-busybox-") as tmp:
        build_rootfs(Path(tmp) / "rootfs")
        yield Path(tmp) / "rootfs"


def assert_no_leaks(root: Path) -> None:
    runc_root = root / ".runc"
    if runc_root.exists():
        listed = subprocess.run(
            ["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True
        )
        assert listed.stdout.split() == [], "runc containers left"
    assert cgroups.leftovers(CGROUP_PARENT) == [], "cgroup directories left"
    with open("/proc/self/mountinfo") as f:
        assert str(root) not in f.read(), "mounts left under the test root"


class TestRuncRuntime(RuntimeConformance):
    rootfs: Path

    @pytest.fixture(autouse=True)
    def _rootfs(self, rootfs: Path) -> None:
        self.rootfs = rootfs

    def open_runtime(self, root: Path) -> Runtime:
        return RuncRuntime(root, cgroup_parent=CGROUP_PARENT)

    def spec(self, id: str, command: list[str], **fields: Any) -> ContainerSpec:
        return super().spec(id, command, rootfs=str(self.rootfs), **fields)

    async def run_case(self, fn: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="shoal-runc-") as tmp:
            root = Path(tmp)
            try:
                async with asyncio.timeout(self.case_timeout):
                    await fn(self, self.open_runtime(root), root)
            finally:
                await clean_up(self.open_runtime(root))
                assert_no_leaks(root)


Scenario = Callable[[RuncRuntime, Path], Awaitable[None]]


def run(scenario: Scenario, timeout: float = 60) -> None:
    """Run `scenario(runtime, root)` in a fresh root; then remove everything and check."""

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="shoal-runc-") as tmp:
            root = Path(tmp)
            try:
                async with asyncio.timeout(timeout):
                    await scenario(RuncRuntime(root, cgroup_parent=CGROUP_PARENT), root)
            finally:
                await clean_up(RuncRuntime(root, cgroup_parent=CGROUP_PARENT))
                assert_no_leaks(root)

    asyncio.run(main())


def sh(rootfs: Path, id: str, script: str, **fields: Any) -> ContainerSpec:
    return ContainerSpec(id=id, name=id, command=["sh", "-c", script], rootfs=str(rootfs), **fields)


async def texts(rt: RuncRuntime, id: str) -> list[str]:
    return [x.text for x in await collect(rt.logs(id))]


def test_exits_at_once(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        await rt.create(ContainerSpec(id="c1", name="c1", command=["true"], rootfs=str(rootfs)))
        started = await rt.start("c1")
        assert started.status in ("running", "exited")
        ended = await rt.wait("c1")
        assert (ended.status, ended.exit_code, ended.oom_killed) == ("exited", 0, False)

    run(scenario)


def test_pid_1_without_init_ignores_term_and_is_killed_after_grace(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        spec = sh(rootfs, "c1", "echo ready; while true; do sleep 1; done", init=False)
        await rt.create(spec)
        await rt.start("c1")
        await wait_for_line(rt, "c1", "ready")
        t0 = time.monotonic()
        stopped = await rt.stop("c1", grace=0.5)
        assert (stopped.status, stopped.exit_code) == ("exited", 137)
        assert 0.45 <= time.monotonic() - t0 < 5

    run(scenario)


def test_oom_kill_is_reported(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        script = "dd if=/dev/zero of=/dev/null bs=64M count=1"
        await rt.create(sh(rootfs, "c1", script, resources={"memory": 16 << 20}))
        await rt.start("c1")
        ended = await rt.wait("c1")
        assert (ended.exit_code, ended.oom_killed) == (137, True)

    run(scenario)


def test_100_mb_of_logs_rotate_and_follow_keeps_up(rootfs: Path) -> None:
    line = "x" * 99
    script = f"yes {line} | head -c 100000000; echo done"

    async def scenario(rt: RuncRuntime, root: Path) -> None:
        await rt.create(sh(rootfs, "c1", script, log_max_bytes=1 << 20))
        follow = rt.logs("c1", follow=True, tail=0)
        await rt.start("c1")
        seen = 0
        async for got in follow:
            seen += 1
            if got.text == "done":
                break
        assert seen > 1000
        assert (await rt.wait("c1")).exit_code == 0
        used = sum(p.stat().st_size for p in (root / "c1").rglob("*") if p.is_file())
        assert used < 4 << 20, used
        assert (await texts(rt, "c1"))[-1] == "done"

    run(scenario, timeout=120)


def test_read_only_root_and_tmpfs(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        script = "touch /ro-test 2>/dev/null && echo wrote; echo hi > /scratch/f; cat /scratch/f"
        await rt.create(sh(rootfs, "c1", script, read_only=True, tmpfs={"/scratch": "size=1m"}))
        await rt.start("c1")
        assert (await rt.wait("c1")).exit_code == 0
        assert await texts(rt, "c1") == ["hi"]
        assert not (rootfs / "ro-test").exists()

    run(scenario)


def test_cap_drop_all_blocks_chown(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        script = "touch /s/f; chown 1:1 /s/f && echo chowned || echo denied"
        tmpfs = {"/s": ""}
        await rt.create(sh(rootfs, "c1", script, cap_drop=["ALL"], tmpfs=tmpfs))
        await rt.create(sh(rootfs, "c2", script, tmpfs=tmpfs))
        for id in ("c1", "c2"):
            await rt.start(id)
            await rt.wait(id)
        assert (await texts(rt, "c1"))[-1] == "denied"
        assert await texts(rt, "c2") == ["chowned"]

    run(scenario)


def test_limits_land_in_the_cgroup_and_stats(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        resources = {"cpus": 0.5, "memory": 64 << 20, "memory_reservation": 32 << 20, "pids": 50}
        await rt.create(sh(rootfs, "c1", "sleep 60", resources=resources))
        await rt.start("c1")
        dirs = cgroups.directories(f"/{CGROUP_PARENT}/c1")

        def read(controller: str, name: str) -> str:
            [d] = [d for h, d in dirs.items() if controller in h.split(",")]
            return (d / name).read_text().strip()

        if cgroups.is_v2():
            assert read("", "cpu.max") == "50000 100000"
        else:
            assert read("cpu", "cpu.cfs_quota_us") == "50000"
            assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
            assert read("memory", "memory.soft_limit_in_bytes") == str(32 << 20)
            assert read("pids", "pids.max") == "50"
        stats = await rt.stats("c1")
        assert stats.memory_limit == 64 << 20 and stats.pids_limit == 50
        assert stats.memory_usage and stats.pids_current and stats.pids_current >= 2
        assert stats.cpu_usage_ns is not None
        await rt.stop("c1", grace=0)
        with pytest.raises(Conflict):
            await rt.stats("c1")

    run(scenario)


def test_exec_in_a_running_container(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        await rt.create(sh(rootfs, "c1", "sleep 60", env={"GREETING": "hi"}, hostname="box"))
        with pytest.raises(Conflict):
            await rt.exec_in("c1", ["true"])
        await rt.start("c1")
        result = await rt.exec_in("c1", ["sh", "-c", "echo $GREETING $(hostname); exit 4"])
        assert (result.exit_code, result.stdout) == (4, "hi box\n")
        # A timed exec (health checks): quick ones answer, a hung one is killed with its children.
        quick = await rt.exec_in("c1", ["sh", "-c", "echo ok"], timeout=5)
        assert (quick.exit_code, quick.stdout) == (0, "ok\n")
        with pytest.raises(TimeoutError):
            await rt.exec_in("c1", ["sh", "-c", "sleep 41 & exec sleep 42"], timeout=0.5)
        ps = await rt.exec_in("c1", ["ps", "-o", "args"])
        assert "sleep 41" not in ps.stdout and "sleep 42" not in ps.stdout, ps.stdout
        assert (root / "c1").is_dir() and not list((root / "c1").glob("exec-*.pid"))

    run(scenario)


def test_user_and_rootfs_validation(rootfs: Path) -> None:
    async def scenario(rt: RuncRuntime, root: Path) -> None:
        await rt.create(sh(rootfs, "c1", "id -u; id -g", user="nobody"))
        await rt.create(sh(rootfs, "c2", "id -u; id -g", user="4321:99"))
        for id in ("c1", "c2"):
            await rt.start(id)
            await rt.wait(id)
        assert await texts(rt, "c1") == ["65534", "65534"]
        assert await texts(rt, "c2") == ["4321", "99"]
        with pytest.raises(Invalid, match="no-such-user"):
            await rt.create(sh(rootfs, "c3", "true", user="no-such-user"))
        with pytest.raises(Invalid, match="rootfs"):
            await rt.create(ContainerSpec(id="c4", name="c4", command=["true"]))
        assert [s.id for s in await rt.list()] == ["c1", "c2"]

    run(scenario)


def test_joins_a_given_netns(rootfs: Path) -> None:
    name = f"shoaltest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        path = f"/var/run/netns/{name}"

        async def scenario(rt: RuncRuntime, root: Path) -> None:
            await rt.create(sh(rootfs, "c1", "readlink /proc/self/ns/net", netns=path))
            await rt.start("c1")
            await rt.wait("c1")
            assert await texts(rt, "c1") == [f"net:[{os.stat(path).st_ino}]"]

        run(scenario)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
