"""Namespaces and CNI attachments on the real kernel: add/delete round trips, routes of internal
networks, the cache that lets a crash be undone, failures part-way, and the bridge's address
order the bridge plugin depends on."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.model.errors import Conflict, Invalid, ShoalError
from shoal.network import cni, netns
from shoal.network.netns import run

from .conftest import Lab, Scenario, kernel_marks

pytestmark = kernel_marks
Runner = Callable[[Scenario], None]


async def ip_json(*args: str) -> list[dict[str, Any]]:
    done = (await run("ip", "-json", *args)).check("ip " + " ".join(args))
    parsed: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return parsed


async def inet(ns: str, ifname: str) -> list[str]:
    links = await ip_json("-n", ns, "addr", "show", "dev", ifname)
    infos = links[0]["addr_info"]
    return [f"{a['local']}/{a['prefixlen']}" for a in infos if a["family"] == "inet"]


async def ports(bridge: str) -> list[str]:
    return [link["ifname"] for link in await ip_json("link", "show", "master", bridge)]


async def bridge_inet(bridge: str) -> list[str]:
    links = await ip_json("addr", "show", "dev", bridge)
    return [
        f"{a['local']}/{a['prefixlen']}" for a in links[0]["addr_info"] if a["family"] == "inet"
    ]


def test_netns_create_is_idempotent_and_brings_lo_up(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        box = await lab.namespace("ns")
        name = box.ns
        path = await netns.create(name)
        assert path == netns.path(name) == f"/var/run/netns/{name}"
        assert await netns.create(name) == path and netns.exists(name)
        lo = await ip_json("-n", name, "link", "show", "lo")
        assert "UP" in lo[0]["flags"]
        assert name in netns.list_names(f"shlt-{lab.token}")
        assert netns.list_names(f"shlt-{lab.token}-nothing") == []
        await netns.delete(name)
        await netns.delete(name)
        assert not netns.exists(name) and not os.path.lexists(path)
        # a crash between creating the file and mounting it leaves an empty file behind
        Path(path).touch()
        assert not netns.exists(name)
        await netns.create(name)
        assert netns.exists(name)

    lab(scenario)


def test_netns_rejects_bad_names() -> None:
    for bad in ("", "../etc", "a/b", "-x"):
        with pytest.raises(Invalid):
            netns.path(bad)


def test_add_delete_round_trip(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        closed = await lab.network(internal=True)
        box = await lab.box("c1", (net, 10), (closed, 10), serve=False)
        cache = lab.cache / f"{box.ns}.json"
        record = json.loads(cache.read_text())
        assert [a["ifname"] for a in record["attachments"]] == ["eth0", "eth1"]
        assert all(a["result"]["ips"] for a in record["attachments"])
        assert record["attachments"][0]["config"]["ipMasq"] is False

        assert await inet(box.ns, "eth0") == [f"{lab.address(net, 10)}/24"]
        assert await inet(box.ns, "eth1") == [f"{lab.address(closed, 10)}/24"]
        routes = await ip_json("-n", box.ns, "route")
        defaults = [r for r in routes if r["dst"] == "default"]
        assert [(r["gateway"], r["dev"]) for r in defaults] == [(net.gateway, "eth0")]
        assert {r["dst"]: r["dev"] for r in routes if r["dst"] != "default"} == {
            net.subnet: "eth0",
            closed.subnet: "eth1",
        }
        assert len(await ports(net.bridge)) == 1 and len(await ports(closed.bridge)) == 1

        await cni.delete(box.ns, box.path, lab.cache)
        assert not cache.exists()
        links = await ip_json("-n", box.ns, "link")
        assert [link["ifname"] for link in links] == ["lo"]
        assert await ports(net.bridge) == [] and await ports(closed.bridge) == []
        await cni.delete(box.ns, box.path, lab.cache)  # again: nothing to do

    lab(scenario)


def test_delete_after_the_namespace_is_gone(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        box = await lab.box("c1", (net, 10), serve=False)
        await netns.delete(box.ns)
        await cni.delete(box.ns, box.path, lab.cache)
        assert not (lab.cache / f"{box.ns}.json").exists()
        for _ in range(200):  # the kernel removes the veth pair with the namespace, shortly
            if not await ports(net.bridge):
                break
            await asyncio.sleep(0.01)
        assert await ports(net.bridge) == []

    lab(scenario)


def test_a_failure_part_way_is_undone(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        # the second network's "bridge" is a veth: the plugin refuses it
        fake = cni.BridgeNet("fake", f"shlt{lab.token}x", "10.213.239.0/24", "10.213.239.1")
        lab.nets.append(fake)
        peer = f"shlt{lab.token}y"
        (await run("ip", "link", "add", fake.bridge, "type", "veth", "peer", "name", peer)).check(
            "ip link add"
        )
        half = await lab.namespace("half")
        name, path = half.ns, half.path
        good = cni.Attach(net, "eth0", lab.address(net, 10))
        bad = cni.Attach(fake, "eth1", "10.213.239.10")
        with pytest.raises(ShoalError, match="is not a bridge"):
            await cni.add(name, path, [good, bad], lab.cache)
        with pytest.raises(Conflict, match="is not a bridge"):
            await cni.ensure_bridge(fake)
        assert not (lab.cache / f"{name}.json").exists()
        assert [link["ifname"] for link in await ip_json("-n", name, "link")] == ["lo"]
        assert await ports(net.bridge) == []

    lab(scenario)


def test_bad_attachments_are_refused_before_anything_is_made(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        bare = await lab.namespace("bare")
        name, path = bare.ns, bare.path
        for attach in [
            cni.Attach(net, "eth0", "10.99.0.5"),  # outside the subnet
            cni.Attach(net, "eth0", net.gateway),
            cni.Attach(net, "a-very-long-interface", lab.address(net, 10)),
        ]:
            with pytest.raises(Invalid):
                await cni.add(name, path, [attach], lab.cache)
        with pytest.raises(Invalid):
            await cni.add("../x", path, [], lab.cache)
        assert list(lab.cache.glob("*")) == []
        box = await lab.box("c1", (net, 10), serve=False)
        with pytest.raises(Conflict):
            await cni.add(
                box.ns, box.path, [cni.Attach(net, "eth1", lab.address(net, 11))], lab.cache
            )

    lab(scenario)


def test_bridge_gateway_first_then_vips(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        b = net.bridge
        link = (await ip_json("link", "show", "dev", b))[0]
        assert link["address"] == cni.bridge_mac(b)
        assert Path(f"/proc/sys/net/ipv4/conf/{b}/route_localnet").read_text().strip() == "1"
        v1, v2, v3 = (lab.address(net, h) for h in (200, 201, 202))
        await cni.set_vips(b, {v2, v1})
        assert await bridge_inet(b) == [f"{net.gateway}/24", f"{v1}/32", f"{v2}/32"]
        await cni.ensure_bridge(net)  # idempotent: nothing moves
        assert await bridge_inet(b) == [f"{net.gateway}/24", f"{v1}/32", f"{v2}/32"]
        await lab.box("c1", (net, 10), serve=False)  # the plugin accepts bridge + VIPs
        await cni.set_vips(b, {v2, v3})
        assert await bridge_inet(b) == [f"{net.gateway}/24", f"{v2}/32", f"{v3}/32"]

        # the gateway re-added after the VIPs: the plugin refuses the bridge…
        await run("ip", "addr", "del", f"{net.gateway}/24", "dev", b)
        await run("ip", "addr", "add", f"{net.gateway}/24", "dev", b)
        assert (await bridge_inet(b))[0] != f"{net.gateway}/24"
        c2 = await lab.namespace("c2")
        name, path = c2.ns, c2.path
        with pytest.raises(ShoalError, match="already has an IP address"):
            await cni.add(name, path, [cni.Attach(net, "eth0", lab.address(net, 11))], lab.cache)
        # …until ensure_bridge puts the gateway first again
        await cni.ensure_bridge(net)
        assert await bridge_inet(b) == [f"{net.gateway}/24", f"{v2}/32", f"{v3}/32"]
        await cni.add(name, path, [cni.Attach(net, "eth0", lab.address(net, 11))], lab.cache)

        await cni.set_vips(b, set())
        assert await bridge_inet(b) == [f"{net.gateway}/24"]
        with pytest.raises(Invalid):
            await cni.set_vips(b, {"10.1.2.300"})

    lab(scenario)


def test_remove_bridge_is_idempotent(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        await cni.remove_bridge(net)
        await cni.remove_bridge(net)
        assert not os.path.exists(f"/sys/class/net/{net.bridge}")
        with pytest.raises(ShoalError, match="does not exist"):
            await cni.set_vips(net.bridge, set())

    lab(scenario)
