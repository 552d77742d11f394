"""Volume records through the API and the control loop: deploy creates them, names clash or
must exist, the schedule pass writes where each lives, removal goes through the node's agent
(a real agent HTTP app on loopback) and never while a task uses the volume."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from shoal.agent.api import create_app as agent_app
from shoal.model.cluster import Node, NodeDescription, NodeState, NodeStatus, TaskState, TaskStatus
from shoal.model.codec import encode
from shoal.model.volume import LocalMount, local_mount
from shoal.runtime.process import ProcessRuntime
from shoal.server import objects
from shoal.server.context import ServerContext
from shoal.store import Compare, PutOp
from tests.server.harness import TOKEN, Server, running_server, settle
from tests.server.test_loops import report

DATA = {"type": "volume", "source": "data", "target": "/data"}


def run(tmp_path: Path, test: Callable[[Server], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_server(tmp_path) as server:
            await test(server)

    asyncio.run(main())


def stack_doc(volumes: dict[str, Any], mounts: list[Any] | None = None, n: int = 1) -> Any:
    service = {"image": "busybox", "command": ["sleep", "1"], "deploy": {"replicas": n}}
    if mounts:
        service["volumes"] = mounts
    return {"services": {"web": service}, "volumes": volumes}


async def deploy(server: Server, stack: str, doc: Any) -> httpx.Response:
    return await server.http.post(f"/v1/stacks/{stack}/deploy", json={"project": doc})


async def put_node(ctx: ServerContext, node_id: str, addr: str = "") -> None:
    node = Node(
        id=node_id,
        description=NodeDescription(hostname=f"host-{node_id}"),
        status=NodeStatus(state=NodeState.READY, heartbeat_at=ctx.clock(), addr=addr),
    )
    key = objects.node_key(node_id)
    await ctx.commit([Compare.missing(key)], [PutOp(key, encode(node))], "node")


async def volume(server: Server, name: str) -> Any:
    response = await server.http.get(f"/v1/volumes/{name}")
    return response.json() if response.status_code == 200 else None


async def finish_tasks(ctx: ServerContext) -> None:
    """What the agent reports once it stopped what it was told to stop."""
    for t in ctx.cache.tasks():
        if not t.status.state.terminal and t.desired_state != TaskState.RUNNING:
            await report(ctx, t, TaskStatus(state=TaskState.SHUTDOWN, timestamp=ctx.clock()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def agent(data_dir: Path) -> AsyncIterator[str]:
    """The agent's HTTP API (its volumes under `data_dir/volumes`) on a loopback port."""
    port = free_port()
    app = agent_app(ProcessRuntime(data_dir / "containers"), TOKEN)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def test_deploy_creates_records_once(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        decls = {
            "data": {},
            "named": {"name": "shared"},
            "fast": {"driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"}},
        }
        assert (await deploy(server, "st", stack_doc(decls, [DATA]))).status_code == 200
        listed = (await server.http.get("/v1/volumes")).json()
        assert [v["name"] for v in listed] == ["shared", "st_data", "st_fast"]
        fast = await volume(server, "st_fast")
        assert fast["stack"] == "st" and fast["driver"] == "local" and fast["node_id"] == ""
        assert fast["driver_opts"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"}
        created = (await volume(server, "st_data"))["created_at"]
        server.clock.advance(10)
        assert (await deploy(server, "st", stack_doc(decls, [DATA]))).status_code == 200
        assert (await volume(server, "st_data"))["created_at"] == created
        events = (await server.http.get("/v1/events")).json()
        made = [e["id"] for e in events if e["type"] == "volume" and e["action"] == "create"]
        assert sorted(made) == ["shared", "st_data", "st_fast"]

    run(tmp_path, test)


def test_external_must_exist_and_names_belong_to_one_stack(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        external = {"ext": {"name": "shared", "external": True}}
        missing = await deploy(server, "b", stack_doc(external))
        assert missing.status_code == 400
        assert "volume shared" in missing.json()["error"]["message"]
        assert "external but does not exist" in missing.json()["error"]["message"]
        assert not (await server.http.get("/v1/stacks")).json()  # nothing written
        assert (await deploy(server, "a", stack_doc({"x": {"name": "shared"}}))).status_code == 200
        assert (await deploy(server, "b", stack_doc(external))).status_code == 200
        clash = await deploy(server, "c", stack_doc({"mine": {"name": "shared"}}))
        assert clash.status_code == 409
        error = clash.json()["error"]
        assert error["message"] == "volume shared (volumes.mine) belongs to stack a"
        assert "external: true" in error["hint"]
        assert (await volume(server, "shared"))["declared_by"] == ["a", "b"]

    run(tmp_path, test)


def test_bad_driver_opts_and_drivers_are_refused_with_the_key(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        size = {"v": {"driver_opts": {"type": "tmpfs", "o": "size=lots"}}}
        bad = await deploy(server, "st", stack_doc(size))
        assert bad.status_code == 400
        assert bad.json()["error"]["field"] == "volumes.v.driver_opts.o"
        assert "size=lots is not a size" in bad.json()["error"]["message"]
        nfs = await deploy(server, "st", stack_doc({"v": {"driver": "nfs"}}))
        assert nfs.status_code == 400 and nfs.json()["error"]["field"] == "volumes.v.driver"
        tmpfs = stack_doc({})
        tmpfs["services"]["web"]["tmpfs"] = ["/run:size=12q"]
        short = await deploy(server, "st", tmpfs)
        assert (
            short.status_code == 400 and short.json()["error"]["field"] == "services.web.tmpfs[0]"
        )
        assert not (await server.http.get("/v1/volumes")).json()

    run(tmp_path, test)


def test_the_first_placement_homes_the_volume_and_pins_the_rest(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        for node_id in ("node-1", "node-2", "node-3"):
            await put_node(ctx, node_id)
        assert (await deploy(server, "st", stack_doc({"data": {}}, [DATA], n=3))).status_code == 200
        await settle(ctx)
        nodes = {t.node_id for t in ctx.cache.tasks()}
        home = (await volume(server, "st_data"))["node_id"]
        assert nodes == {home} and home
        # Its node drained: the replacements wait, and say why.
        drained = await server.http.patch(f"/v1/nodes/{home}", json={"availability": "drain"})
        assert drained.status_code == 200
        await settle(ctx)
        await finish_tasks(ctx)
        await settle(ctx)
        waiting = [t for t in ctx.cache.tasks() if t.status.state == TaskState.PENDING]
        assert len(waiting) == 3
        for t in waiting:
            assert t.pending_reasons["volumes"] == f"volume st_data lives on node {home}"
            assert t.status.message.startswith(
                f"no suitable node: volume st_data lives on node {home}"
            )

    run(tmp_path, test)


def test_in_use_volumes_stay_and_the_agent_deletes_the_data(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        agent_dir = tmp_path / "agent"
        async with agent(agent_dir) as addr:
            await put_node(ctx, "node-1", addr)
            decls: dict[str, Any] = {"data": {}, "keep": {}}
            mounts = [DATA, {"type": "volume", "source": "keep", "target": "/keep"}]
            assert (await deploy(server, "st", stack_doc(decls, mounts, n=2))).status_code == 200
            await settle(ctx)
            for name in ("st_data", "st_keep"):
                (agent_dir / "volumes" / name).mkdir(parents=True)
                (agent_dir / "volumes" / name / "file").write_text("precious")
            busy = await server.http.delete("/v1/volumes/st_data")
            assert busy.status_code == 409
            assert busy.json()["error"]["message"].startswith("volume st_data is in use by 2 task")
            assert "st_web.1" in busy.json()["error"]["message"]
            assert "shoal rm st" in busy.json()["error"]["hint"]
            assert (await volume(server, "st_data"))["state"] == "in use"
            # `shoal rm st`: the volumes stay; `prune` then removes what no stack declares.
            assert (await server.http.delete("/v1/stacks/st")).status_code == 200
            await settle(ctx)
            await finish_tasks(ctx)
            await settle(ctx)
            assert not ctx.cache.stacks()
            assert (agent_dir / "volumes" / "st_data" / "file").read_text() == "precious"
            assert (await volume(server, "st_data"))["state"] == "unused"
            assert (await server.http.delete("/v1/volumes/st_data")).status_code == 200
            assert not (agent_dir / "volumes" / "st_data").exists()
            pruned = (await server.http.post("/v1/volumes/prune")).json()
            assert pruned == {"removed": ["st_keep"], "failed": {}}
            assert not (agent_dir / "volumes" / "st_keep").exists()
            assert (await server.http.get("/v1/volumes")).json() == []
            missing = await server.http.delete("/v1/volumes/st_data")
            assert missing.status_code == 404

    run(tmp_path, test)


def test_rm_with_volumes_removes_them_after_the_tasks(tmp_path: Path) -> None:
    async def test(server: Server) -> None:
        ctx = server.ctx
        agent_dir = tmp_path / "agent"
        async with agent(agent_dir) as addr:
            await put_node(ctx, "node-1", addr)
            assert (await deploy(server, "st", stack_doc({"data": {}}, [DATA]))).status_code == 200
            assert (await deploy(server, "other", stack_doc({"data": {}}))).status_code == 200
            await settle(ctx)
            (agent_dir / "volumes" / "st_data").mkdir(parents=True)
            removed = await server.http.delete("/v1/stacks/st", params={"volumes": "true"})
            assert removed.status_code == 200
            assert (await volume(server, "st_data"))["state"] == "removing"
            await settle(ctx)  # its task has not stopped yet: the volume waits
            assert (await volume(server, "st_data")) is not None
            await finish_tasks(ctx)
            await settle(ctx)
            assert await volume(server, "st_data") is None
            assert not (agent_dir / "volumes" / "st_data").exists()
            assert await volume(server, "other_data") is not None  # another stack's

    run(tmp_path, test)


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ({}, LocalMount()),
        (
            {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,mode=1777"},
            LocalMount("tmpfs", "tmpfs", "size=67108864,mode=1777"),
        ),
        (
            {"type": "tmpfs", "o": "size=50%,uid=1000"},
            LocalMount("tmpfs", "tmpfs", "size=50%,uid=1000"),
        ),
        ({"type": "none", "o": "bind", "device": "/srv/x"}, LocalMount("none", "/srv/x", "bind")),
        ({"type": "ext4", "device": "/dev/vdb1"}, LocalMount("ext4", "/dev/vdb1", "")),
        ({"type": "tmpfs", "o": "size=0"}, "size=0 is not a size"),
        ({"type": "tmpfs", "o": "mode=rwx"}, "mode=rwx is not an octal file mode"),
        (
            {"type": "none", "o": "bind", "device": "rel/x"},
            "device rel/x of a bind must be an absolute",
        ),
        ({"type": "none", "device": "/x"}, "type none is only for binds"),
        ({"type": "ext4"}, "type ext4 needs a device"),
        ({"o": "size=1m"}, "device and o need a type"),
        ({"size": "1m"}, "unknown option size"),
    ],
)
def test_local_driver_options(opts: dict[str, str], expected: LocalMount | str) -> None:
    if isinstance(expected, LocalMount):
        assert local_mount(opts) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            local_mount(opts)
