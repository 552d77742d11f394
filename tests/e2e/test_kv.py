"""`shoal kv` against a real server process: CLI round trip, lease expiry, and a watch that
survives a server restart without losing or repeating an event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.store.sqlite import SqliteStore
from tests.e2e.cluster import Cluster, cluster


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path, "server") as c:
        c.start_server()
        yield c


def env(c: Cluster) -> dict[str, str]:
    token = (c.data / "token").read_text().strip()
    return {**os.environ, "SHOAL_ADDR": c.addr, "SHOAL_TOKEN": token}


def shoal(c: Cluster, *args: str, stdin: bytes = b"", ok: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        input=stdin,
        capture_output=True,
        env=env(c),
        timeout=30,
    )
    assert (result.returncode == 0) == ok, (args, result.stdout, result.stderr)
    return (result.stdout if ok else result.stderr).decode()


class Lines:
    """A long-running `shoal` command whose stdout lines are read on a thread."""

    def __init__(self, c: Cluster, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env(c),
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.decode())

    def next(self, timeout: float = 20.0) -> Any:
        return json.loads(self.lines.get(timeout=timeout))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@contextlib.contextmanager
def watching(c: Cluster, *args: str) -> Iterator[Lines]:
    lines = Lines(c, "kv", "watch", *args, "-o", "json")
    try:
        yield lines
    finally:
        lines.stop()


def test_cli_put_get_ls_rm(server: Cluster) -> None:
    assert shoal(server, "kv", "put", "app/config", "x=1").startswith("OK app/config revision ")
    blob = bytes(range(256))
    shoal(server, "kv", "put", "app/blob", "-", stdin=blob)
    assert shoal(server, "kv", "get", "app/config") == "x=1\n"
    raw = subprocess.run(
        [sys.executable, "-m", "shoal", "kv", "get", "app/blob", "--raw"],
        capture_output=True,
        env=env(server),
        check=True,
    )
    assert raw.stdout == blob
    listed = json.loads(shoal(server, "kv", "ls", "app/", "-o", "json"))
    assert [i["key"] for i in listed["items"]] == ["app/blob", "app/config"]
    item = json.loads(shoal(server, "kv", "get", "app/config", "-o", "json"))
    revision = item["mod_revision"]
    error = shoal(server, "kv", "put", "app/config", "x=2", "--cas", "0", ok=False)
    assert f"current mod_revision is {revision}" in error
    shoal(server, "kv", "put", "app/config", "x=2", "--cas", str(revision))
    assert "deleted 2" in shoal(server, "kv", "rm", "app/", "--prefix")
    assert "no key 'app/config'" in shoal(server, "kv", "get", "app/config", ok=False)


def test_a_lease_that_is_not_renewed_vanishes(server: Cluster) -> None:
    ttl = 3.0  # well above the time the CLI calls below take, even on a loaded machine
    shoal(server, "kv", "put", "svc/stays", "yes")
    lease = shoal(server, "kv", "lease", "grant", f"{ttl}s").strip()
    shoal(server, "kv", "put", "svc/alive", "yes", "--lease", lease)
    with watching(server, "svc/", "--prefix") as watch:
        shoal(server, "kv", "lease", "keepalive", lease)
        renewed = time.monotonic()
        # Nobody reads or renews from here: the server itself must end the lease.
        event = watch.next(timeout=ttl + 20)
        gone_after = time.monotonic() - renewed
    assert (event["type"], event["key"]) == ("delete", "svc/alive")
    assert gone_after >= ttl - 0.1, gone_after  # not before its TTL
    left = json.loads(shoal(server, "kv", "ls", "svc/", "-o", "json"))["items"]
    assert [i["key"] for i in left] == ["svc/stays"]
    assert "not found" in shoal(server, "kv", "lease", "keepalive", lease, ok=False)


def write_while_down(data: Path) -> None:
    """Changes made while the server is down (the store file is free once it died)."""

    async def write() -> None:
        async with SqliteStore.open(data / "state.db") as store:
            await store.put("/kv/w/c", b"3")
            await store.put("/kv/w/d", b"4")
            await store.delete("/kv/w/a")

    asyncio.run(write())


def test_watch_resumes_after_a_server_restart(server: Cluster) -> None:
    first = shoal(server, "kv", "put", "w/a", "1", "-o", "json")
    after = str(json.loads(first)["revision"])
    with watching(server, "w/", "--prefix", "--revision", after) as watch:
        shoal(server, "kv", "put", "w/b", "2")
        seen = [watch.next()]
        server.kill9("server")
        write_while_down(server.data)
        server.start_server()
        seen += [watch.next() for _ in range(3)]
        shoal(server, "kv", "put", "w/e", "5")
        seen.append(watch.next())
        time.sleep(0.5)
        assert watch.lines.empty(), watch.lines.get()  # nothing repeated
    assert [(e["type"], e["key"], e.get("value")) for e in seen] == [
        ("put", "w/b", "2"),
        ("put", "w/c", "3"),
        ("put", "w/d", "4"),
        ("delete", "w/a", None),
        ("put", "w/e", "5"),
    ]
    revisions = [e["mod_revision"] for e in seen]
    assert revisions == sorted(set(revisions))
