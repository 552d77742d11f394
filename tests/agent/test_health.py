"""Health checks: where a check comes from (service vs image, x-shoal probes and their errors),
the timing/status state machine as table tests over a simulated clock, the monitor's reports,
and the probes themselves against real loopback sockets and the process runtime."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from shoal.agent import health, health_probes
from shoal.agent.health import HEALTHY, STARTING, UNHEALTHY, Check, HealthState
from shoal.compose.loader import LoadOptions, load_project
from shoal.images.manifest import ContainerConfig, HealthConfig
from shoal.model.cluster import HealthResult, TaskStatus
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid, Unavailable
from shoal.runtime.base import ContainerSpec
from shoal.runtime.process import ProcessRuntime
from shoal.runtime.testsuite import clean_up
from tests.agent.test_agent_fake import World, idle, scenario, step
from tests.server.harness import deploy_project, project

S = 1_000_000_000  # a second in the nanoseconds an image config holds


def service(**fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"image": "x", **fields})


def image(**healthcheck: Any) -> ContainerConfig:
    return ContainerConfig(Healthcheck=HealthConfig(**healthcheck))


# --- resolve: the check a task runs --------------------------------------------------------

RESOLVE_CASES: list[tuple[str, dict[str, Any], ContainerConfig | None, Check | None]] = [
    ("nothing anywhere", {}, None, None),
    ("image without a check", {}, ContainerConfig(Cmd=["sh"]), None),
    (
        "service CMD-SHELL, Docker's defaults",
        {"healthcheck": {"test": ["CMD-SHELL", "wget -q localhost"]}},
        None,
        Check("exec", argv=("/bin/sh", "-c", "wget -q localhost")),
    ),
    (
        "service CMD with timing",
        {
            "healthcheck": {
                "test": ["CMD", "true", "x"],
                "interval": "2s",
                "timeout": "500ms",
                "retries": 5,
                "start_period": "10s",
                "start_interval": "1s",
            }
        },
        None,
        Check(
            "exec",
            argv=("true", "x"),
            interval=2,
            timeout=0.5,
            retries=5,
            start_period=10,
            start_interval=1,
        ),
    ),
    (
        "image only",
        {},
        image(Test=["CMD", "probe"], Interval=3 * S, Retries=2),
        Check("exec", argv=("probe",), interval=3, retries=2),
    ),
    (
        "service test over the image's, image timing kept field by field",
        {"healthcheck": {"test": ["CMD", "mine"], "timeout": "4s"}},
        image(Test=["CMD", "theirs"], Interval=3 * S, Timeout=9 * S, StartPeriod=7 * S),
        Check("exec", argv=("mine",), interval=3, timeout=4, start_period=7),
    ),
    (
        "service timing only: the image's test",
        {"healthcheck": {"interval": "1s", "retries": 0}},
        image(Test=["CMD", "theirs"], Retries=6),
        Check("exec", argv=("theirs",), interval=1, retries=6),
    ),
    (
        "CMD-SHELL uses the image's Shell",
        {"healthcheck": {"test": ["CMD-SHELL", "echo", "ok"]}},
        ContainerConfig(Shell=["/bin/ash", "-ec"]),
        Check("exec", argv=("/bin/ash", "-ec", "echo ok")),
    ),
    ("disable: true", {"healthcheck": {"disable": True}}, image(Test=["CMD", "theirs"]), None),
    ("test NONE", {"healthcheck": {"test": ["NONE"]}}, image(Test=["CMD", "theirs"]), None),
    ("image NONE", {}, image(Test=["NONE"]), None),
    (
        "x-shoal http on the service, its own timing first",
        {
            "healthcheck": {"interval": "5s", "retries": 2},
            "x-shoal": {
                "healthcheck": {
                    "http": {"port": 8080, "path": "/health", "status": 204},
                    "interval": "1s",
                }
            },
        },
        image(Test=["CMD", "theirs"]),
        Check("http", port=8080, path="/health", status=204, interval=1, retries=2),
    ),
    (
        "x-shoal tcp inside healthcheck, port as interpolated text",
        {"healthcheck": {"interval": "2s", "x-shoal": {"tcp": {"port": "5432"}}}},
        None,
        Check("tcp", port=5432, interval=2),
    ),
    (
        "x-shoal next to other x-shoal keys",
        {"x-shoal": {"runtime": "runc", "healthcheck": {"http": {"port": 80}}}},
        None,
        Check("http", port=80),
    ),
    (
        "disable wins over a probe",
        {"healthcheck": {"disable": True}, "x-shoal": {"healthcheck": {"tcp": {"port": 1}}}},
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "config", "expected"),
    [case[1:] for case in RESOLVE_CASES],
    ids=[case[0] for case in RESOLVE_CASES],
)
def test_resolve(fields: dict[str, Any], config: ContainerConfig | None, expected: Any) -> None:
    assert health.resolve(service(**fields), config) == expected


def test_a_plain_string_test_in_a_compose_file_is_cmd_shell(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n"
        "    healthcheck:\n      test: wget -q localhost || exit 1\n"
    )
    project = load_project(LoadOptions(files=[tmp_path / "compose.yaml"], environ={})).project
    check = health.resolve(project.services["web"])
    assert check == Check("exec", argv=("/bin/sh", "-c", "wget -q localhost || exit 1"))


def shoal_check(block: Any) -> dict[str, Any]:
    return {"x-shoal": {"healthcheck": block}}


ERROR_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("not a mapping", shoal_check("http://x"), "x-shoal.healthcheck: must be a mapping"),
    ("neither probe", shoal_check({"interval": "1s"}), "exactly one of `http` or `tcp`"),
    (
        "both probes",
        shoal_check({"http": {"port": 1}, "tcp": {"port": 1}}),
        "exactly one of `http` or `tcp`",
    ),
    ("unknown key", shoal_check({"grpc": {"port": 1}}), "unknown key 'grpc'"),
    (
        "timing inside healthcheck.x-shoal",
        {"healthcheck": {"x-shoal": {"tcp": {"port": 1}, "interval": "1s"}}},
        "healthcheck.x-shoal: unknown key 'interval'",
    ),
    ("no port", shoal_check({"http": {"path": "/"}}), "http: `port` is required"),
    ("port 0", shoal_check({"tcp": {"port": 0}}), "tcp.port: must be a whole number from 1"),
    ("port text", shoal_check({"tcp": {"port": "db"}}), "tcp.port: must be a whole number"),
    ("port bool", shoal_check({"tcp": {"port": True}}), "tcp.port: must be a whole number"),
    ("relative path", shoal_check({"http": {"port": 1, "path": "health"}}), "must start with '/'"),
    ("bad status", shoal_check({"http": {"port": 1, "status": 700}}), "http.status: must be"),
    ("unknown probe key", shoal_check({"http": {"port": 1, "host": "x"}}), "unknown key 'host'"),
    (
        "bad duration",
        shoal_check({"tcp": {"port": 1}, "interval": "soon"}),
        "x-shoal.healthcheck.interval: invalid duration",
    ),
    (
        "probe in both places",
        {
            "healthcheck": {"x-shoal": {"tcp": {"port": 1}}},
            **shoal_check({"tcp": {"port": 1}}),
        },
        "are both given",
    ),
    (
        "probe and test",
        {"healthcheck": {"test": ["CMD", "true"]}, **shoal_check({"tcp": {"port": 1}})},
        "both `test` and an x-shoal",
    ),
    ("CMD without a command", {"healthcheck": {"test": ["CMD"]}}, "is not a check"),
    ("unknown test kind", {"healthcheck": {"test": ["RUN", "x"]}}, "is not a check"),
    (
        "negative interval",
        {"healthcheck": {"test": ["CMD", "true"], "interval": "-1s"}},
        "healthcheck.interval: must be at least 1ms",
    ),
]


@pytest.mark.parametrize(
    ("fields", "message"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_invalid_checks_say_what_and_where(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as caught:
        health.validate(service(**fields))
    assert message in caught.value.message


# --- the state machine over a simulated clock ----------------------------------------------


def simulate(
    check: Check, outcomes: list[int | str], state: HealthState | None = None
) -> list[tuple[float, str, int]]:
    """Run the monitor's timing with the container started at 0 and each probe taking 0.25 s
    (a timeout takes `check.timeout`): `outcomes` are exit codes, or "T" for a timeout.
    Returns (probe start, status after, failing streak) per probe."""
    state = state or HealthState()
    now, out = 0.0, []
    for outcome in outcomes:
        now += health.next_delay(check, state, now, 0.0)
        if outcome == "T":
            result = health.timed_out(now, now + check.timeout, check.timeout)
            end = now + check.timeout
        else:
            assert isinstance(outcome, int)
            end = now + 0.25
            result = health.make_result(now, end, outcome, "")
        state = health.observe(check, state, result, 0.0)
        out.append((now, state.status, state.failing_streak))
        now = end
    return out


PLAIN = Check("exec", argv=("x",), interval=1, timeout=1, retries=3)
STARTUP = Check(
    "exec", argv=("x",), interval=5, timeout=1, retries=2, start_period=10, start_interval=2
)

TIMELINES: list[tuple[str, Check, list[int | str], list[tuple[float, str, int]]]] = [
    (
        "first probe after interval, healthy on a pass",
        PLAIN,
        [0],
        [(1.0, HEALTHY, 0)],
    ),
    (
        "starting until retries failures, then unhealthy",
        PLAIN,
        [1, 1, 1],
        [(1.0, STARTING, 1), (2.25, STARTING, 2), (3.5, UNHEALTHY, 3)],
    ),
    (
        "retries 1: the first failure is enough",
        Check("exec", argv=("x",), interval=1, retries=1),
        [2],
        [(1.0, UNHEALTHY, 1)],
    ),
    (
        "flapping never reaches retries",
        PLAIN,
        [0, 1, 1, 0, 1, 1, 0],
        [
            (1.0, HEALTHY, 0),
            (2.25, HEALTHY, 1),
            (3.5, HEALTHY, 2),
            (4.75, HEALTHY, 0),
            (6.0, HEALTHY, 1),
            (7.25, HEALTHY, 2),
            (8.5, HEALTHY, 0),
        ],
    ),
    (
        "healthy, then retries failures in a row",
        PLAIN,
        [0, 1, 1, 1],
        [(1.0, HEALTHY, 0), (2.25, HEALTHY, 1), (3.5, HEALTHY, 2), (4.75, UNHEALTHY, 3)],
    ),
    (
        "start period: start_interval, failures uncounted until it ends",
        STARTUP,
        [1, 1, 1, 1, 1, 1],
        [
            (2.0, STARTING, 0),
            (4.25, STARTING, 0),
            (6.5, STARTING, 0),
            (8.75, STARTING, 0),
            (11.0, STARTING, 1),  # started after the period: counts; interval from now on
            (16.25, UNHEALTHY, 2),
        ],
    ),
    (
        "a pass during the start period ends it",
        STARTUP,
        [1, 0, 1, 1],
        [(2.0, STARTING, 0), (4.25, HEALTHY, 0), (9.5, HEALTHY, 1), (14.75, UNHEALTHY, 2)],
    ),
    (
        "timeouts are failures (and take the timeout)",
        Check("exec", argv=("x",), interval=1, timeout=3, retries=2),
        ["T", "T"],
        [(1.0, STARTING, 1), (5.0, UNHEALTHY, 2)],
    ),
]


@pytest.mark.parametrize(
    ("check", "outcomes", "expected"),
    [case[1:] for case in TIMELINES],
    ids=[case[0] for case in TIMELINES],
)
def test_timeline(check: Check, outcomes: list[int | str], expected: Any) -> None:
    assert simulate(check, outcomes) == expected


def test_after_an_agent_restart_healthy_stays_healthy_until_a_check_fails() -> None:
    log = [HealthResult(start=1, end=2, exit_code=0, output="ok")]
    state = health.initial(TaskStatus(health="healthy", health_log=log, failing_streak=1))
    assert state == HealthState(HEALTHY, 1, tuple(log))
    # interval (not start_interval: it is not starting), one failure short of retries is kept
    assert simulate(STARTUP, [1], state) == [(5.0, UNHEALTHY, 2)]
    assert health.initial(TaskStatus()) == HealthState(STARTING, 0, ())


def test_the_log_keeps_five_results_with_their_output_capped() -> None:
    state = HealthState()
    for i in range(7):
        result = health.make_result(i, i + 0.5, i % 2, f"probe {i}\n" + "x" * 5000)
        state = health.observe(PLAIN, state, result, 0.0)
    assert [r.output.split("\n")[0] for r in state.log] == [f"probe {i}" for i in range(2, 7)]
    assert all(len(r.output.encode()) == health.OUTPUT_LIMIT for r in state.log)
    timeout = health.timed_out(3.0, 4.5, 1.5)
    assert (timeout.exit_code, timeout.output) == (-1, "timed out after 1.5s")


def test_apply_puts_the_health_on_a_status() -> None:
    result = HealthResult(start=1, end=2, exit_code=1, output="no")
    status = HealthState(UNHEALTHY, 3, (result,)).apply(TaskStatus(state="running", pid=9))
    assert (status.health, status.failing_streak, status.health_log, status.pid) == (
        UNHEALTHY,
        3,
        [result],
        9,
    )


# --- the monitor: reports changes only -----------------------------------------------------


def run_monitor(
    outcomes: list[int],
    *,
    state: HealthState | None = None,
    reported: str = STARTING,
    refuse: int = 0,
) -> tuple[list[float], list[tuple[float, str]]]:
    """A monitor on a simulated clock (the container started at 100); `refuse` first reports
    fail with Unavailable. Returns the probe times and the (time, status) reports made."""
    script = iter(outcomes)
    clock = [100.0]
    changes: list[tuple[float, str]] = []
    probes: list[float] = []
    refusals = [refuse]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    async def run_probe() -> HealthResult:
        probes.append(clock[0])
        return health.make_result(clock[0], clock[0], next(script), "")

    async def changed(state: HealthState) -> None:
        if refusals[0]:
            refusals[0] -= 1
            raise Unavailable("server unreachable")
        changes.append((clock[0], state.status))

    monitor = health.Monitor(
        PLAIN,
        run_probe,
        state or HealthState(),
        100.0,
        changed,
        reported=reported,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    asyncio.run(monitor.run())
    return probes, changes


def test_monitor_reports_each_change_once_and_stops_when_unhealthy() -> None:
    probes, changes = run_monitor([1, 0, 0, 0, 1, 0, 1, 1, 1, 0])
    assert probes == [101.0 + i for i in range(9)]  # the tenth outcome is never probed
    assert changes == [(102.0, HEALTHY), (109.0, UNHEALTHY)]


def test_monitor_tells_what_the_record_lacks_and_retries_a_refused_report() -> None:
    _, changes = run_monitor([0, 1, 1, 1], reported="")  # a record without health
    assert changes == [(100.0, STARTING), (101.0, HEALTHY), (104.0, UNHEALTHY)]
    probes, changes = run_monitor([0, 0, 0, 1, 1, 1], refuse=1)
    assert changes == [(102.0, HEALTHY), (106.0, UNHEALTHY)]  # told one probe late
    assert len(probes) == 6


def test_a_monitor_restarted_on_an_unhealthy_record_acts_at_once() -> None:
    probes, changes = run_monitor([], state=HealthState(UNHEALTHY, 3), reported=UNHEALTHY)
    assert (probes, changes) == ([], [(100.0, UNHEALTHY)])


# --- the probes, for real ------------------------------------------------------------------


@asynccontextmanager
async def http_server(answer: bytes | None) -> AsyncIterator[int]:
    """A loopback server that answers every request with `answer` (None: never answers)."""
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if answer is None:
                await done.wait()
            else:
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # a tcp probe: connected, then gone
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
MISSING = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def test_http_and_tcp_probes_on_loopback(tmp_path: Path) -> None:
    async def run(check: Check) -> HealthResult:
        return await health_probes.probe(check, ProcessRuntime(tmp_path), "none", "127.0.0.1")

    async def main() -> None:
        async with http_server(OK) as ok, http_server(MISSING) as missing:
            passed = await run(Check("http", port=ok, path="/health", timeout=5))
            assert (passed.exit_code, passed.output) == (
                0,
                f"GET http://127.0.0.1:{ok}/health: 200 OK",
            )
            wrong = await run(Check("http", port=ok, status=204, timeout=5))
            assert wrong.exit_code == 1 and wrong.output.endswith("200 OK (wanted 204)")
            absent = await run(Check("http", port=missing, timeout=5))
            assert absent.exit_code == 1 and "404 Not Found (wanted 200-399)" in absent.output
            assert (await run(Check("http", port=missing, status=404, timeout=5))).exit_code == 0
            tcp = await run(Check("tcp", port=ok, timeout=5))
            assert (tcp.exit_code, tcp.output) == (0, f"connected to 127.0.0.1:{ok}")
        async with http_server(None) as silent:
            hung = await run(Check("http", port=silent, timeout=0.2))
            assert (hung.exit_code, hung.output) == (-1, "timed out after 200ms")
            assert 0.2 <= hung.end - hung.start < 2
        port = closed_port()
        refused = await run(Check("tcp", port=port, timeout=5))
        assert refused.exit_code == 1 and "refused" in refused.output.lower()
        assert (await run(Check("http", port=port, timeout=5))).exit_code == 1

    asyncio.run(main())


@pytest.fixture
def empty_netns() -> Iterator[str]:
    """A network namespace of the test's own with only `lo` up (deleted afterwards)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2")
    name = f"shoal-health-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield f"/var/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_probes_connect_from_inside_the_given_network_namespace(
    tmp_path: Path, empty_netns: str
) -> None:
    """127.0.0.1:port answers in the host's namespace, and is refused in the empty one."""

    async def main() -> None:
        async with http_server(OK) as port:
            for kind in ("tcp", "http"):
                check = Check(kind, port=port, timeout=5)
                here = await health_probes.probe(check, ProcessRuntime(tmp_path), "none")
                there = await health_probes.probe(
                    check, ProcessRuntime(tmp_path), "none", netns=empty_netns
                )
                assert here.exit_code == 0, here
                assert there.exit_code == 1 and "Connection refused" in there.output, there
            gone = await health_probes.probe(
                Check("tcp", port=port, timeout=5),
                ProcessRuntime(tmp_path),
                "none",
                netns="/var/run/netns/no-such-namespace",
            )
            assert gone.exit_code == 1 and "No such file" in gone.output

    asyncio.run(main())


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_exec_probes_in_a_process_runtime_container(tmp_path: Path) -> None:
    marker = f"29.{os.getpid()}"  # a sleep nobody else runs

    async def main(rt: ProcessRuntime) -> None:
        await rt.create(ContainerSpec(id="c", name="c", command=["sleep", "30"]))
        await rt.start("c")

        def exec_check(script: str, timeout: float = 5) -> Check:
            return Check("exec", argv=("sh", "-c", script), timeout=timeout)

        async def run(check: Check) -> HealthResult:
            return await health_probes.probe(check, rt, "c", "127.0.0.1")

        said = await run(exec_check("echo out; echo err >&2; exit 3"))
        assert (said.exit_code, said.output) == (3, "out\nerr\n")
        assert (await run(exec_check("true"))).exit_code == 0
        missing = await run(Check("exec", argv=("/no/such/probe",)))
        assert missing.exit_code == 127 and "/no/such/probe" in missing.output
        hung = await run(exec_check(f"sleep {marker}", timeout=0.3))
        assert (hung.exit_code, hung.output) == (-1, "timed out after 300ms")
        assert processes_with(marker) == []  # killed, not left running

    run_with_runtime(tmp_path, main)


def run_with_runtime(root: Path, scenario: Callable[[ProcessRuntime], Any]) -> None:
    async def main() -> None:
        rt = ProcessRuntime(root)
        try:
            async with asyncio.timeout(30):
                await scenario(rt)
        finally:
            await clean_up(ProcessRuntime(root))

    asyncio.run(main())


# --- the agent: monitors per running task, reports, unhealthy → stopped and FAILED ------------


def checked_service(healthcheck: dict[str, Any]) -> dict[str, Any]:
    return {
        "web": {
            "image": "busybox",
            "command": ["sleep", "infinity"],
            "healthcheck": healthcheck,
            "deploy": {"restart_policy": {"condition": "none"}},
        }
    }


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_agent_reports_changes_resumes_after_restart_and_fails_unhealthy(tmp_path: Path) -> None:
    async def test(world: World) -> None:
        server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        check = {"interval": "20ms", "retries": 2, "x-shoal": {"tcp": {"port": port}}}
        await world.deploy(checked_service(check))

        async def health_is(wanted: str) -> bool:
            return (await world.task(task.id)).status.health == wanted

        async with world.agent() as agent:
            await step(agent, world.server)
            [task] = agent.tasks.values()
            started = await world.task(task.id)
            assert (started.status.state, started.status.health) == ("running", STARTING)
            await step(agent)  # the pass after the start: the monitor begins
            await until(lambda: health_is(HEALTHY))
            agent.stop_health()
        async with world.agent() as again:  # an agent restart: the record says healthy
            await step(again)
            await asyncio.sleep(0.01)  # the monitor's task gets going
            assert again.health[task.id].state.status == HEALTHY
            revision = await world.server.ctx.store.current_revision()
            before = again.health[task.id].state
            await asyncio.sleep(0.1)  # probes pass: nothing to report
            assert again.health[task.id].state is not before  # (they did run)
            assert await world.server.ctx.store.current_revision() == revision

            server.close()  # two refused connections, then the container is stopped
            await server.wait_closed()

            async def failed() -> bool:
                return (await world.task(task.id)).status.state == "failed"

            await until(failed)
            await idle(again)
            again.stop_health()
        stored = await world.task(task.id)
        assert stored.status.error == f"unhealthy: connect to 127.0.0.1:{port}: Connection refused"
        assert (stored.status.health, stored.status.failing_streak) == (UNHEALTHY, 2)
        assert [r.exit_code for r in stored.status.health_log][-2:] == [1, 1]
        assert world.host.containers[task.id].status == "exited"
        r = await world.server.http.get("/v1/events")
        assert any(e["action"] == "failed" and "unhealthy" in e["message"] for e in r.json())

    scenario(tmp_path, test)


@pytest.mark.parametrize(
    ("healthcheck", "error"),
    [
        ({"x-shoal": {"tcp": {}}}, "healthcheck.x-shoal.tcp: `port` is required"),
        ({"test": ["CMD", "true"]}, "the fake runtime cannot run health check commands"),
    ],
)
def test_agent_rejects_a_task_whose_check_cannot_run(
    tmp_path: Path, healthcheck: dict[str, Any], error: str
) -> None:
    async def test(world: World) -> None:
        # Written straight to the store: the deploy route refuses malformed checks itself, and
        # the agent must still cope with a record that holds one.
        await deploy_project(world.server.ctx, "st", project(checked_service(healthcheck)))
        async with world.agent() as agent:
            await step(agent, world.server)
            [task] = agent.tasks.values()
            stored = await world.task(task.id)
            assert stored.status.state == "rejected"
            assert error in stored.status.error
            assert task.id not in world.host.containers

    scenario(tmp_path, test)
