"""The process runtime passes the conformance suite; its monitor survives the agent; logs rotate."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shoal.model.errors import Unavailable
from shoal.runtime.base import ContainerSpec, Runtime
from shoal.runtime.logs import LineSplitter, LogReader, LogWriter, rotated_files
from shoal.runtime.monitor import is_alive, proc_stat, start_ticks
from shoal.runtime.process import ProcessRuntime
from shoal.runtime.testsuite import RuntimeConformance, clean_up, collect


class TestProcessRuntime(RuntimeConformance):
    def open_runtime(self, root: Path) -> Runtime:
        return ProcessRuntime(root)


def spec(id: str, *command: str, **fields: object) -> ContainerSpec:
    return ContainerSpec.model_validate({"id": id, "name": id, "command": command, **fields})


def run(root: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    """Run `scenario(rt)` and leave no container (or process) behind."""

    async def main() -> None:
        rt = ProcessRuntime(root)
        try:
            async with asyncio.timeout(30):
                await scenario(rt)
        finally:
            await clean_up(ProcessRuntime(root))

    asyncio.run(main())


def test_state_dir_layout_and_remove(tmp_path: Path) -> None:
    async def scenario(rt: ProcessRuntime) -> None:
        await rt.create(spec("c1", "sh", "-c", "echo hi; exit 2"))
        await rt.start("c1")
        assert (await rt.wait("c1")).exit_code == 2
        d = tmp_path / "c1"
        names = {p.name for p in d.iterdir()}
        assert {"spec.json", "pid", "monitor.pid", "exit.json", "log"} <= names
        assert json.loads((d / "exit.json").read_text())["exit_code"] == 2
        assert (d / "log" / "container.log").read_text().count('"text":"hi"') == 1
        await rt.remove("c1")
        assert not d.exists()

    run(tmp_path, scenario)


AGENT = textwrap.dedent(
    """
    import asyncio, sys, time
    from shoal.runtime.base import ContainerSpec
    from shoal.runtime.process import ProcessRuntime

    async def main(root, go):
        rt = ProcessRuntime(root)
        script = f"echo before; while [ ! -e {go} ]; do sleep 0.02; done; echo after; exit 7"
        await rt.create(ContainerSpec(id="w", name="w", command=["sh", "-c", script]))
        state = await rt.start("w")
        print(state.pid, flush=True)
        time.sleep(60)  # the agent is busy when it is killed

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_workload_survives_kill_9_of_the_agent_process_group(tmp_path: Path) -> None:
    root, go = tmp_path / "root", tmp_path / "go"
    command = [sys.executable, "-c", AGENT, str(root), str(go)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, start_new_session=True) as agent:
        assert agent.stdout is not None
        pid = int(agent.stdout.readline())
        os.killpg(agent.pid, signal.SIGKILL)  # the agent and its whole process group
        agent.wait()

    async def scenario(rt: ProcessRuntime) -> None:
        await asyncio.sleep(0.1)
        state = await rt.state("w")
        assert (state.status, state.pid, state.error) == ("running", pid, None)
        assert is_alive(pid, start_ticks(pid))
        go.touch()
        ended = await rt.wait("w")
        assert (ended.status, ended.exit_code) == ("exited", 7)
        assert json.loads((root / "w" / "exit.json").read_text())["exit_code"] == 7
        assert [x.text for x in await collect(rt.logs("w"))] == ["before", "after"]

    run(root, scenario)


def test_monitor_forwards_sigterm_to_the_workload(tmp_path: Path) -> None:
    async def scenario(rt: ProcessRuntime) -> None:
        await rt.create(spec("c1", "sleep", "60"))
        await rt.start("c1")
        monitor = json.loads((tmp_path / "c1" / "monitor.pid").read_text())["pid"]
        os.kill(monitor, signal.SIGTERM)
        assert (await rt.wait("c1")).exit_code == 143

    run(tmp_path, scenario)


def test_processes_left_in_the_group_die_with_the_main_one(tmp_path: Path) -> None:
    async def scenario(rt: ProcessRuntime) -> None:
        await rt.create(spec("c1", "sh", "-c", "sleep 60 & echo $!; exit 0"))
        await rt.start("c1")
        t0 = time.monotonic()
        assert (await rt.wait("c1")).exit_code == 0
        assert time.monotonic() - t0 < 3
        [line] = await collect(rt.logs("c1"))
        assert proc_stat(int(line.text)) is None or not is_alive(int(line.text), None)

    run(tmp_path, scenario)


def test_start_failures_have_shell_exit_codes(tmp_path: Path) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\necho no\n")

    async def scenario(rt: ProcessRuntime) -> None:
        await rt.create(spec("c1", str(not_executable)))
        await rt.create(spec("c2", "true", working_dir="/nonexistent/dir"))
        s1, s2 = await rt.start("c1"), await rt.start("c2")
        assert (s1.exit_code, s2.exit_code) == (126, 127)
        assert s1.error and "Permission denied" in s1.error
        assert s2.error and "working directory /nonexistent/dir" in s2.error

    run(tmp_path / "root", scenario)


def test_user_is_applied_when_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        return  # documented: the process driver cannot switch users without root

    async def scenario(rt: ProcessRuntime) -> None:
        await rt.create(spec("c1", "sh", "-c", "id -u; id -g", user="nobody"))
        await rt.create(spec("c2", "sh", "-c", "id -u; id -g", user="4321:99"))
        await rt.create(spec("c3", "true", user="no-such-user"))
        for id in ("c1", "c2", "c3"):
            await rt.start(id)
            await rt.wait(id)
        assert [x.text for x in await collect(rt.logs("c1"))] == ["65534", "65534"]
        assert [x.text for x in await collect(rt.logs("c2"))] == ["4321", "99"]
        failed = await rt.state("c3")
        assert failed.exit_code == 126 and failed.error and "no-such-user" in failed.error

    run(tmp_path, scenario)


def test_runtime_logs_rotate_by_size(tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); done"

    async def scenario(rt: ProcessRuntime) -> None:
        await rt.create(spec("c1", "sh", "-c", script, log_max_bytes=2048, log_max_files=2))
        await rt.start("c1")
        await rt.wait("c1")
        log_dir = tmp_path / "c1" / "log"
        assert len(rotated_files(log_dir)) == 1
        lines = [x.text for x in await collect(rt.logs("c1"))]
        assert lines[-1] == "line299" and 0 < len(lines) < 300
        assert lines == [f"line{i}" for i in range(300 - len(lines), 300)]
        assert [x.text for x in await collect(rt.logs("c1", tail=2))] == ["line298", "line299"]

    run(tmp_path, scenario)


def test_reader_follows_across_rotations(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, max_bytes=1024, max_files=3)
    with LogReader(tmp_path) as reader:
        assert reader.read_existing() == []
        seen: list[str] = []
        for i in range(100):
            writer.write("stdout", f"message {i:03}", float(i))
            if i % 7 == 0:
                seen += [r.text for r in reader.poll()]
        writer.close()
        seen += [r.text for r in reader.poll()]
    assert seen == [f"message {i:03}" for i in range(100)]
    assert len(rotated_files(tmp_path)) == 2


def test_reader_keeps_a_partial_record_until_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(b'{"time":1,"stream":"stdout","text":"a"}\n{"time":2,"stre')
    with LogReader(tmp_path) as reader:
        assert [r.text for r in reader.read_existing()] == ["a"]
        with path.open("ab") as f:
            f.write(b'am":"stderr","text":"b"}\nnot json\n')
        assert [(r.stream, r.text) for r in reader.poll()] == [("stderr", "b")]


def test_line_splitter() -> None:
    s = LineSplitter(max_line=8)
    assert s.feed(b"ab\ncd") == ["ab"]
    assert s.feed(b"e\n\xff\n") == ["cde", "\ufffd"]
    assert s.feed(b"0123456789") == ["01234567"]
    assert s.flush() == ["89"]
    assert s.flush() == []


def test_pid_reuse_is_not_mistaken_for_the_workload() -> None:
    me = os.getpid()
    ticks = start_ticks(me)
    assert ticks is not None
    assert is_alive(me, ticks)
    assert not is_alive(me, ticks + 1)
    assert not is_alive(2**22 + 1, None)


def test_monitor_that_cannot_run_or_dies_is_reported(tmp_path: Path) -> None:
    async def scenario(rt: ProcessRuntime) -> None:
        await rt.create(spec("c1", "sleep", "1"))
        with pytest.raises(Unavailable):
            await ProcessRuntime(tmp_path, python="/nonexistent/python").start("c1")
        assert (await rt.state("c1")).status == "created", "a later start may still work"
        lost = await ProcessRuntime(tmp_path, python="/bin/false").start("c1")
        assert lost.status == "unknown" and lost.error and "monitor failed" in lost.error
        assert await rt.wait("c1") == lost

    run(tmp_path, scenario)
