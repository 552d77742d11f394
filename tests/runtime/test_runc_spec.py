"""The OCI config builder, the seccomp conversion, conmon's log format and the cgroup readers:
pure functions, table-tested without root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal.model.errors import Invalid
from shoal.runtime import cgroups
from shoal.runtime.base import ContainerSpec
from shoal.runtime.kubelog import KubeLogReader
from shoal.runtime.ocispec import (
    DOCKER_DEFAULT_CAPS,
    Host,
    User,
    build_config,
    capabilities,
    caps_from_mask,
    check_command,
    resolve_in_rootfs,
    resolve_user,
)
from shoal.runtime.seccomp import to_oci

ALL_CAPS = caps_from_mask((1 << 41) - 1)


def spec(**fields: Any) -> ContainerSpec:
    fields.setdefault("command", ["sh", "-c", "true"])
    fields.setdefault("rootfs", "/r")
    return ContainerSpec(id="c1", name="c1", **fields)


@pytest.mark.parametrize(
    ("add", "drop", "expect_in", "expect_out"),
    [
        ([], [], ["CAP_CHOWN", "CAP_KILL"], ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]),
        (["NET_ADMIN"], ["chown"], ["CAP_NET_ADMIN"], ["CAP_CHOWN"]),
        ([], ["ALL"], [], list(DOCKER_DEFAULT_CAPS)),
        (["CAP_KILL"], ["ALL"], ["CAP_KILL"], ["CAP_CHOWN"]),
        (["ALL"], ["SYS_ADMIN"], ["CAP_NET_ADMIN"], ["CAP_SYS_ADMIN"]),
    ],
)
def test_capabilities(
    add: list[str], drop: list[str], expect_in: list[str], expect_out: list[str]
) -> None:
    caps = capabilities(spec(cap_add=add, cap_drop=drop), ALL_CAPS)
    assert set(expect_in) <= set(caps) and not set(expect_out) & set(caps)


def test_unknown_capability_and_privileged() -> None:
    with pytest.raises(Invalid, match="CAP_NOPE"):
        capabilities(spec(cap_add=["NOPE"]), ALL_CAPS)
    assert capabilities(spec(privileged=True), ALL_CAPS[:3]) == sorted(ALL_CAPS[:3])


PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nwheel:x:10:app\n"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, User(home="/root")),
        ("app", User(1000, 1000, (10,), "/home/app")),
        ("1000", User(1000, 1000, (10,), "/home/app")),
        ("4321", User(4321, 0)),
        ("app:wheel", User(1000, 10, (), "/home/app")),
        ("4321:99", User(4321, 99)),
    ],
)
def test_resolve_user(user: str | None, expected: User) -> None:
    assert resolve_user(user, PASSWD, GROUP) == expected


@pytest.mark.parametrize("user", ["ghost", "app:nogroup"])
def test_resolve_user_unknown(user: str) -> None:
    with pytest.raises(Invalid):
        resolve_user(user, PASSWD, GROUP)


def test_build_config() -> None:
    s = spec(
        env={"A": "1"},
        working_dir="/srv",
        hostname="web",
        read_only=True,
        tmpfs={"/run": "size=1m", "/dev/shm": "size=8m"},
        mounts=[{"source": "/data", "target": "/data", "read_only": True}],
        files={"/etc/hosts": "/state/hosts"},
        sysctls={"net.core.somaxconn": "1024"},
        ulimits={"nofile": (1024, 999999)},
        resources={"cpus": 1.5, "memory": 1 << 30, "memory_reservation": 1 << 29, "pids": 100},
        netns="/var/run/netns/x",
    )
    host = Host(init_path="/usr/bin/tini", host_caps=ALL_CAPS, max_rlimits={"nofile": 4096})
    c = build_config(s, User(5, 6), host)
    p = c["process"]
    assert p["args"] == ["/dev/init", "--", "sh", "-c", "true"]
    assert "A=1" in p["env"] and any(e.startswith("PATH=") for e in p["env"])
    assert (p["cwd"], p["user"], p["noNewPrivileges"]) == ("/srv", {"uid": 5, "gid": 6}, True)
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}]
    assert c["root"] == {"path": "/r", "readonly": True} and c["hostname"] == "web"
    by_target = {m["destination"]: m for m in c["mounts"]}
    assert by_target["/dev/shm"]["options"][-1] == "size=8m", "a user tmpfs replaces the default"
    assert "noexec" in by_target["/run"]["options"]
    assert by_target["/data"]["options"] == ["rbind", "ro"]
    assert by_target["/etc/hosts"]["source"] == "/state/hosts"
    assert by_target["/dev/init"]["source"] == "/usr/bin/tini"
    linux = c["linux"]
    assert {"type": "network", "path": "/var/run/netns/x"} in linux["namespaces"]
    assert linux["cgroupsPath"] == "/shoal/c1" and "/proc/kcore" in linux["maskedPaths"]
    r = linux["resources"]
    assert r["cpu"] == {"quota": 150000, "period": 100000} and r["pids"] == {"limit": 100}
    assert r["memory"] == {"limit": 1 << 30, "reservation": 1 << 29}
    assert linux["sysctl"] == {"net.core.somaxconn": "1024"} and "seccomp" not in linux


def test_build_config_rejects() -> None:
    with pytest.raises(Invalid, match="rootfs"):
        build_config(spec(rootfs=None), User(), Host(init_path="/tini"))
    with pytest.raises(Invalid, match="ulimit"):
        build_config(spec(ulimits={"bogus": (1, 1)}), User(), Host(init_path="/tini"))
    config = build_config(spec(init=False, privileged=True), User(), Host())
    assert config["process"]["args"][0] == "sh" and "maskedPaths" not in config["linux"]


PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []},
    ],
    "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {
            "names": ["bpf"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["new"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.1"}},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        },
    ],
}


def test_seccomp_to_oci() -> None:
    out = to_oci(PROFILE, ["CAP_CHOWN"], machine="x86_64", kernel="6.1.0-13-amd64")
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert out["defaultErrnoRet"] == 38
    rules = [(r["names"][0], r["action"]) for r in out["syscalls"]]
    assert rules == [
        ("read", "SCMP_ACT_ALLOW"),
        ("arch_prctl", "SCMP_ACT_ALLOW"),
        ("bpf", "SCMP_ACT_ERRNO"),
        ("personality", "SCMP_ACT_ALLOW"),
    ]
    assert out["syscalls"][-1]["args"][0]["value"] == 8
    admin = to_oci(PROFILE, ["CAP_SYS_ADMIN"], machine="aarch64", kernel="10.0")
    assert [r["names"][0] for r in admin["syscalls"]] == ["read", "bpf", "new", "personality"]


def test_resolve_in_rootfs_and_check_command(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "busybox").write_text("")
    (tmp_path / "bin" / "busybox").chmod(0o755)
    (tmp_path / "bin" / "sh").symlink_to("/bin/busybox")
    (tmp_path / "bin" / "up").symlink_to("../../../bin/busybox")
    (tmp_path / "bin" / "data").write_text("")
    assert resolve_in_rootfs(tmp_path, "/bin/sh") == tmp_path / "bin" / "busybox"
    assert resolve_in_rootfs(tmp_path, "/bin/up") == tmp_path / "bin" / "busybox"
    assert resolve_in_rootfs(tmp_path, "/etc/passwd") is None
    root = str(tmp_path)
    assert check_command(spec(rootfs=root, command=["sh"])) is None
    assert check_command(spec(rootfs=root, command=["nope"]))[0] == 127  # type: ignore[index]
    assert check_command(spec(rootfs=root, command=["/bin/data"]))[0] == 126  # type: ignore[index]
    mounted = [{"source": "/x", "target": "/opt"}]
    assert check_command(spec(rootfs=root, command=["/opt/x"], mounts=mounted)) is None


def test_conmon_log_format(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_text(
        "2026-11-25T19:30:50.500000000+00:00 stdout F hello world\n"
        "2026-11-25T19:30:51.25+01:00 stderr P par\n"
        "garbage\n"
        "2026-11-25T19:30:51.5+01:00 stderr F tial\n"
        "2026-11-25T19:30:52.000000001Z stdout F \n"
        "2026-11-25T19:30:52.1Z stdout F no newl"
    )
    with KubeLogReader(log) as reader:
        lines = reader.read_existing()
        assert [(x.stream, x.text) for x in lines] == [
            ("stdout", "hello world"),
            ("stderr", "partial"),
            ("stdout", ""),
        ]
        assert lines[0].time == 1795635050.5 and lines[1].time == 1795635051.25 - 3600
        with log.open("a") as f:
            f.write("ine\n")
        assert [x.text for x in reader.poll()] == ["no newline"]
        log.rename(tmp_path / "old")  # conmon's rotation: a new file renamed over the old
        (tmp_path / "new").write_text("2026-11-25T19:30:53.0Z stdout F after\n")
        (tmp_path / "new").rename(log)
        assert [x.text for x in reader.poll()] == ["after"]


def test_cgroup_stats_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    for h, files in {
        "memory": {"memory.usage_in_bytes": "100", "memory.limit_in_bytes": str(1 << 63)},
        "cpu,cpuacct": {"cpuacct.usage": "5000"},
        "pids": {"pids.current": "3", "pids.max": "max"},
    }.items():
        d = v1 / h / "shoal" / "c1"
        d.mkdir(parents=True)
        for name, text in files.items():
            (d / name).write_text(text + "\n")
    (v1 / "memory" / "shoal" / "c1" / "memory.oom_control").write_text("oom_kill 2\n")
    got = cgroups.stats("/shoal/c1", v1)
    assert got == cgroups.CgroupStats(
        cpu_usage_ns=5000, memory_usage=100, pids_current=3, oom_kills=2
    )
    v2 = tmp_path / "v2"
    d = v2 / "shoal" / "c1"
    d.mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory pids\n")
    for name, text in {
        "cpu.stat": "usage_usec 7\nuser_usec 5",
        "memory.current": "9",
        "memory.max": "1024",
        "memory.events": "oom 1\noom_kill 1",
        "pids.current": "1",
        "pids.max": "10",
    }.items():
        (d / name).write_text(text + "\n")
    assert cgroups.stats("/shoal/c1", v2) == cgroups.CgroupStats(
        cpu_usage_ns=7000,
        memory_usage=9,
        memory_limit=1024,
        pids_current=1,
        pids_limit=10,
        oom_kills=1,
    )
    assert cgroups.stats("/shoal/gone", v2) is None
