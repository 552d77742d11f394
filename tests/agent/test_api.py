"""The agent's HTTP API in-process (ASGI): exec and stats over a stub runtime that has them,
the fake runtime that has neither, and real host processes (stats read from /proc)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from shoal.agent.api import EXEC_OUTPUT_LIMIT, create_app
from shoal.model.errors import Conflict, Invalid
from shoal.runtime.base import ContainerSpec, Runtime
from shoal.runtime.cgroups import CgroupStats
from shoal.runtime.fake import FakeRuntime
from shoal.runtime.process import ProcessRuntime
from shoal.runtime.runc import ExecResult
from shoal.runtime.testsuite import clean_up

TOKEN = "agent-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class StubRuntime(FakeRuntime):
    """The fake runtime plus what runc adds: exec_in and stats."""

    def __init__(self) -> None:
        super().__init__()
        self.execs: builtins.list[builtins.list[str]] = []
        self.output = "hi\n"
        self.result: ExecResult | None = None

    async def exec_in(self, id: str, argv: builtins.list[str], *, tty: bool = False) -> ExecResult:
        if not argv:
            raise Invalid("exec needs a command")
        if (await self.state(id)).status != "running":
            raise Conflict(f"container {id!r} is not running", hint="start it first")
        self.execs.append(argv)
        if self.result is not None:
            return self.result
        return ExecResult(exit_code=3, stdout=self.output, stderr="oops\n")

    async def stats(self, id: str) -> CgroupStats:
        if (await self.state(id)).status != "running":
            raise Conflict(f"container {id!r} is not running")
        return CgroupStats(
            cpu_usage_ns=5_000_000,
            memory_usage=1 << 20,
            memory_limit=64 << 20,
            pids_current=2,
            pids_limit=50,
            oom_kills=1,
        )


def spec(id: str, *command: str) -> ContainerSpec:
    return ContainerSpec(id=id, name=id, command=list(command))


def with_agent(runtime: Runtime, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        transport = httpx.ASGITransport(app=create_app(runtime, TOKEN))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
            await scenario(http)

    asyncio.run(main())


async def running(runtime: Runtime, id: str, *command: str) -> None:
    await runtime.create(spec(id, *command))
    await runtime.start(id)


def test_exec_answers_exit_code_and_output() -> None:
    rt = StubRuntime()

    async def scenario(http: httpx.AsyncClient) -> None:
        await running(rt, "c1", "sleep", "infinity")
        r = await http.post(
            "/v1/containers/c1/exec", json={"argv": ["sh", "-c", "x"]}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "exit_code": 3,
            "stdout": "hi\n",
            "stderr": "oops\n",
            "stdout_truncated": False,
            "stderr_truncated": False,
        }
        assert rt.execs == [["sh", "-c", "x"]]

    with_agent(rt, scenario)


def test_exec_output_is_capped() -> None:
    rt = StubRuntime()
    rt.output = "x" * (EXEC_OUTPUT_LIMIT + 10)

    async def scenario(http: httpx.AsyncClient) -> None:
        await running(rt, "c1", "sleep", "infinity")
        r = await http.post("/v1/containers/c1/exec", json={"argv": ["yes"]}, headers=AUTH)
        body = r.json()
        assert len(body["stdout"]) == EXEC_OUTPUT_LIMIT and body["stdout_truncated"] is True
        assert body["stderr_truncated"] is False

    with_agent(rt, scenario)


RUNC_NOT_FOUND = (
    'time="2026-11-25T19:54:53Z" level=error msg="exec failed: unable to start container '
    'process: exec: \\"nosuch\\": executable file not found in $PATH"\n'
)


def test_a_command_that_cannot_start_exits_like_in_a_shell() -> None:
    rt = StubRuntime()

    async def scenario(http: httpx.AsyncClient) -> None:
        await running(rt, "c1", "sleep", "infinity")
        rt.result = ExecResult(exit_code=255, stderr=RUNC_NOT_FOUND)
        r = await http.post("/v1/containers/c1/exec", json={"argv": ["nosuch"]}, headers=AUTH)
        body = r.json()
        assert body["exit_code"] == 127
        assert body["stderr"] == 'exec: "nosuch": executable file not found in $PATH\n'
        denied = RUNC_NOT_FOUND.replace("executable file not found in $PATH", "permission denied")
        rt.result = ExecResult(exit_code=255, stderr=denied)
        r = await http.post("/v1/containers/c1/exec", json={"argv": ["nosuch"]}, headers=AUTH)
        assert r.json()["exit_code"] == 126
        rt.result = ExecResult(exit_code=255, stderr="the command's own failure\n")
        r = await http.post("/v1/containers/c1/exec", json={"argv": ["nosuch"]}, headers=AUTH)
        assert r.json()["exit_code"] == 255

    with_agent(rt, scenario)


def test_exec_errors() -> None:
    rt = StubRuntime()

    async def scenario(http: httpx.AsyncClient) -> None:
        await running(rt, "c1", "sleep", "infinity")
        await rt.create(spec("c2", "sleep", "1"))  # created, never started
        post = http.post
        r = await post("/v1/containers/c1/exec", json={"argv": ["true"]})
        assert r.status_code == 401
        r = await post("/v1/containers/nope/exec", json={"argv": ["true"]}, headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["kind"] == "NotFound"
        bodies: list[Any] = [{"argv": []}, {"argv": "ls"}, {"argv": [1]}, {}, [1]]
        for bad in bodies:
            r = await post("/v1/containers/c1/exec", json=bad, headers=AUTH)
            assert r.status_code == 400, bad
            assert "non-empty list of strings" in r.json()["error"]["message"]
        r = await post("/v1/containers/c1/exec", content=b"{", headers=AUTH)
        assert r.status_code == 400
        r = await post("/v1/containers/c2/exec", json={"argv": ["true"]}, headers=AUTH)
        assert r.status_code == 409
        assert r.json()["error"] == {
            "kind": "Conflict",
            "message": "container 'c2' is not running",
            "hint": "start it first",
        }
        r = await http.get("/v1/containers/c1/exec", headers=AUTH)
        assert r.status_code == 405

    with_agent(rt, scenario)


def test_stats_from_the_runtime() -> None:
    rt = StubRuntime()

    async def scenario(http: httpx.AsyncClient) -> None:
        await running(rt, "c1", "sleep", "infinity")
        r = await http.get("/v1/containers/c1/stats", headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body.pop("time") > 0
        assert body == {
            "cpu_usage_ns": 5_000_000,
            "memory_usage": 1 << 20,
            "memory_limit": 64 << 20,
            "pids_current": 2,
            "pids_limit": 50,
            "oom_kills": 1,
            "source": "cgroup",
        }
        assert (await http.get("/v1/containers/c1/stats")).status_code == 401
        assert (await http.get("/v1/containers/no/stats", headers=AUTH)).status_code == 404
        rt.finish("c1", 0)
        r = await http.get("/v1/containers/c1/stats", headers=AUTH)
        assert r.status_code == 409

    with_agent(rt, scenario)


def test_runtime_without_exec_says_so() -> None:
    rt = FakeRuntime()

    async def scenario(http: httpx.AsyncClient) -> None:
        await running(rt, "c1", "sleep", "infinity")
        r = await http.post("/v1/containers/c1/exec", json={"argv": ["true"]}, headers=AUTH)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["kind"] == "Invalid"
        assert "the fake runtime cannot exec into a task" in error["message"]
        assert error["hint"]
        r = await http.post("/v1/containers/no/exec", json={"argv": ["true"]}, headers=AUTH)
        assert r.status_code == 404
        await rt.create(spec("c2", "sleep", "1"))
        r = await http.get("/v1/containers/c2/stats", headers=AUTH)
        assert r.status_code == 409  # not running: no process to read

    with_agent(rt, scenario)


def test_process_runtime_reads_proc(tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path / "containers")

    async def scenario(http: httpx.AsyncClient) -> None:
        try:
            await running(rt, "p1", "sleep", "30")
            r = await http.post("/v1/containers/p1/exec", json={"argv": ["ls"]}, headers=AUTH)
            assert r.status_code == 400
            assert r.json()["error"]["message"] == (
                "the process runtime cannot exec into a task: it runs host processes"
            )
            r = await http.get("/v1/containers/p1/stats", headers=AUTH)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            assert body["source"] == "proc"
            assert body["memory_usage"] > 0 and body["cpu_usage_ns"] >= 0
            assert body["memory_limit"] is None and body["oom_kills"] == 0
            await rt.stop("p1", grace=1)
            r = await http.get("/v1/containers/p1/stats", headers=AUTH)
            assert r.status_code == 409
        finally:
            await clean_up(rt)

    with_agent(rt, scenario)
