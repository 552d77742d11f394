"""shoal's iptables rules: the rendering as tables of text, then the real thing between
namespaces: isolation, VIP load-balancing and hairpin, published ports on 127.0.0.1 (tcp, udp),
fast refusal without backends, internal networks, idempotent applies and a clean cleanup."""

from __future__ import annotations

import asyncio
import collections
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest

from shoal.model.errors import Invalid
from shoal.network import cni, firewall
from shoal.network.firewall import FwNetwork, FwPublished, FwService, NodeFirewall

from .conftest import HTTP_PORT, Box, Lab, Scenario, needs_kernel, wait_listening

Runner = Callable[[Scenario], None]
NET_A = FwNetwork("shlaaaa", "10.213.1.0/24", "10.213.1.1")
NET_B = FwNetwork("shlbbbb", "10.213.2.0/24", "10.213.2.1", internal=True)


def web(backends: int, key: str = "k1") -> FwService:
    return FwService(
        key,
        vips=(("shlaaaa", "10.213.1.200"),),
        ports=(("tcp", 80), ("udp", 53)),
        backends=tuple(("shlaaaa", f"10.213.1.{10 + i}") for i in range(backends)),
    )


def rules(payload: str, chain: str) -> list[str]:
    return [line for line in payload.splitlines() if line.startswith(f"-A {chain} ")]


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "odds"),
    [
        (1, []),
        (2, ["0.5000000000"]),
        (3, ["0.3333333333", "0.5000000000"]),
        (4, ["0.2500000000", "0.3333333333", "0.5000000000"]),
    ],
)
def test_backends_are_picked_uniformly(n: int, odds: list[str]) -> None:
    chain = rules(firewall.render(NodeFirewall((NET_A,), (web(n),))), "SHOAL-SVC-k1-0")
    assert len(chain) == n
    assert [r.split("--probability ")[1].split()[0] for r in chain[:-1]] == odds
    assert "statistic" not in chain[-1]
    assert [r.split()[-1] for r in chain] == [f"10.213.1.{10 + i}" for i in range(n)]


def test_render_is_stable_whatever_the_input_order() -> None:
    pubs = (FwPublished("tcp", 8080, 80, "", ("10.213.1.11", "10.213.1.10")),)
    one = NodeFirewall((NET_A, NET_B), (web(3), web(0, "k0")), pubs)
    two = NodeFirewall(
        (NET_B, NET_A),
        (web(0, "k0"), FwService("k1", web(3).vips, web(3).ports[::-1], web(3).backends[::-1])),
        pubs,
    )
    assert firewall.render(one) == firewall.render(two)


def test_vip_rules() -> None:
    text = firewall.render(NodeFirewall((NET_A,), (web(2), web(0, "k0"))))
    pre = rules(text, "SHOAL-PREROUTING")
    vip = "-A SHOAL-PREROUTING -i shlaaaa -d 10.213.1.200/32"
    assert pre == [
        f"{vip} -p tcp -m tcp --dport 80 -j SHOAL-SVC-k1-0",
        f"{vip} -p udp -m udp --dport 53 -j SHOAL-SVC-k1-0",
        "-A SHOAL-PREROUTING -d 10.213.1.200/32 -j RETURN",
    ]
    assert rules(text, "SHOAL-OUTPUT")[0].startswith("-A SHOAL-OUTPUT -d 10.213.1.200/32 -p tcp")
    assert ":SHOAL-SVC-k0-0 - [0:0]" not in text  # no backend, no chain: INPUT refuses it
    assert "-A SHOAL-INPUT -d 10.213.1.200/32 -p tcp -j REJECT --reject-with tcp-reset" in text


def test_published_rules() -> None:
    pubs = (
        FwPublished("tcp", 8080, 80, "", ("10.213.1.10",)),
        FwPublished("tcp", 8080, 81, "127.0.0.1", ("10.213.1.11",)),
        FwPublished("udp", 5353, 53, "", ()),
    )
    text = firewall.render(NodeFirewall((NET_A,), (), pubs))
    assert rules(text, "SHOAL-PREROUTING") == [
        "-A SHOAL-PREROUTING -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j SHOAL-PUB-tcp-8080-1",
        "-A SHOAL-PREROUTING -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 8080 "
        "-j SHOAL-PUB-tcp-8080",
    ]
    assert rules(text, "SHOAL-PUB-tcp-8080") == [
        "-A SHOAL-PUB-tcp-8080 -p tcp -j DNAT --to-destination 10.213.1.10:80"
    ]
    assert (
        "-A SHOAL-INPUT -m addrtype --dst-type LOCAL -p udp -m udp --dport 5353 "
        "-j REJECT --reject-with icmp-port-unreachable" in text
    )


def test_masquerade_and_isolation_rules() -> None:
    text = firewall.render(NodeFirewall((NET_A, NET_B)), api_ports=(7480,))
    post = rules(text, "SHOAL-POSTROUTING")
    assert "-A SHOAL-POSTROUTING -s 10.213.1.0/24 ! -o shlaaaa -j MASQUERADE" in post
    assert not [r for r in post if "! -o shlbbbb" in r]  # internal: never out
    assert rules(text, "SHOAL-ISOLATION-2") == [
        "-A SHOAL-ISOLATION-2 -o shlaaaa -j DROP",
        "-A SHOAL-ISOLATION-2 -o shlbbbb -j DROP",
    ]
    forward = rules(text, "SHOAL-FORWARD")
    assert forward[:3] == [
        "-A SHOAL-FORWARD -j SHOAL-ISOLATION-1",
        "-A SHOAL-FORWARD -i shlbbbb ! -o shlbbbb -j DROP",
        "-A SHOAL-FORWARD -o shlbbbb ! -i shlbbbb -j DROP",
    ]
    assert "-A SHOAL-INPUT -i shlaaaa -p tcp -m tcp --dport 7480 -j RETURN" in text
    assert "-A SHOAL-INPUT -i shlaaaa -d 10.213.1.1/32 -p udp -m udp --dport 53 -j RETURN" in text


def test_jumps_are_added_once_and_stale_chains_dropped() -> None:
    fresh = firewall.render(NodeFirewall((NET_A,), (web(1),)))
    assert fresh.count("-I PREROUTING 1 -j SHOAL-PREROUTING") == 1
    assert "-I FORWARD 1 -j SHOAL-FORWARD" in fresh and "-X " not in fresh
    current = "\n".join(
        [
            "*nat",
            ":PREROUTING ACCEPT [0:0]",
            ":SHOAL-PREROUTING - [0:0]",
            ":SHOAL-SVC-old-0 - [0:0]",
            "-A PREROUTING -j SHOAL-PREROUTING",
            "-A PREROUTING -j SHOAL-PREROUTING",
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
            "-A OUTPUT -j SHOAL-OUTPUT",
            "COMMIT",
        ]
    )
    text = firewall.render(NodeFirewall((NET_A,), (web(1),)), current=current)
    nat = text.split("COMMIT")[0]
    assert "-I PREROUTING" not in nat and nat.count("-D PREROUTING -j SHOAL-PREROUTING") == 1
    assert "-I OUTPUT" not in nat and "-I POSTROUTING 1 -j SHOAL-POSTROUTING" in nat
    assert ":SHOAL-SVC-old-0 - [0:0]" in nat and nat.rstrip().endswith("-X SHOAL-SVC-old-0")
    assert "DOCKER" not in text


def test_cleanup_payload() -> None:
    current = "\n".join(
        [
            "*filter",
            ":FORWARD ACCEPT [0:0]",
            ":SHOAL-FORWARD - [0:0]",
            "-A FORWARD -j SHOAL-FORWARD",
            "-A FORWARD -j DOCKER-USER",
            "-A SHOAL-FORWARD -j ACCEPT",
            "COMMIT",
            "*nat",
            ":PREROUTING ACCEPT [0:0]",
            "COMMIT",
        ]
    )
    assert firewall.render_cleanup(current) == (
        "*filter\n:SHOAL-FORWARD - [0:0]\n-D FORWARD -j SHOAL-FORWARD\n-X SHOAL-FORWARD\nCOMMIT\n"
    )
    assert firewall.render_cleanup("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n") == ""


@pytest.mark.parametrize(
    "fw",
    [
        NodeFirewall((FwNetwork("a-bridge-name-too-long", "10.0.0.0/24", "10.0.0.1"),)),
        NodeFirewall((FwNetwork("shlx", "10.0.0.0/33", "10.0.0.1"),)),
        NodeFirewall((NET_A,), (FwService("bad key", (("shlaaaa", "10.213.1.2"),)),)),
        NodeFirewall((NET_A,), (FwService("k", (("shlnope", "10.213.1.2"),)),)),
        NodeFirewall((NET_A,), (FwService("k", (), (("icmp", 1),)),)),
        NodeFirewall((NET_A,), (), (FwPublished("tcp", 0, 80),)),
        NodeFirewall((NET_A,), (), (FwPublished("tcp", 80, 80, "localhost"),)),
    ],
)
def test_bad_input_is_invalid(fw: NodeFirewall) -> None:
    with pytest.raises(Invalid):
        firewall.render(fw)


def test_chain_key_is_stable_and_short() -> None:
    key = firewall.chain_key("shop", "web")
    assert key == firewall.chain_key("shop", "web") != firewall.chain_key("shop", "db")
    assert len(key) == 12 and int(key, 16) >= 0
    assert len(f"SHOAL-SVC-{key}-9") <= 28  # iptables' limit on chain names


# --- on the real kernel ------------------------------------------------------------------------


def svc(lab: Lab, net: cni.BridgeNet, vip: str, *backends: Box) -> FwService:
    return FwService(
        "k1",
        vips=((net.bridge, vip),),
        ports=(("tcp", HTTP_PORT),),
        backends=tuple((net.bridge, b.addresses[net.name]) for b in backends),
    )


async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@needs_kernel
def test_networks_are_isolated_once_applied(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        a, b = await lab.network(), await lab.network()
        a1, a2 = await lab.box("a1", (a, 10)), await lab.box("a2", (a, 11))
        b1 = await lab.box("b1", (b, 10))
        b1_addr = b1.addresses[b.name]
        assert await lab.fetch(a1, f"http://{a2.addresses[a.name]}:{HTTP_PORT}/") == ["a2"]
        assert await lab.fetch(a1, f"http://{b1_addr}:{HTTP_PORT}/") == ["b1"]  # before
        await lab.apply(NodeFirewall(lab.fw_networks()))
        assert await lab.fetch(a1, f"http://{a2.addresses[a.name]}:{HTTP_PORT}/") == ["a2"]
        started = time.monotonic()
        blocked = await asyncio.gather(
            lab.sh(a1, f"timeout 1 wget -qO- http://{b1_addr}:{HTTP_PORT}/"),
            lab.sh(b1, f"timeout 1 wget -qO- http://{a1.addresses[a.name]}:{HTTP_PORT}/"),
        )
        assert all(done.returncode != 0 for done in blocked)
        assert time.monotonic() - started >= 0.9  # dropped, not refused: the rule did it

    lab(scenario)


@needs_kernel
def test_vip_balances_and_hairpins(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        backends = [await lab.box(f"c{i}", (net, 10 + i)) for i in (1, 2, 3)]
        client = await lab.box("client", (net, 20), serve=False)
        vip = lab.address(net, 200)
        url = f"http://{vip}:{HTTP_PORT}/"
        await cni.set_vips(net.bridge, {vip})
        await lab.apply(NodeFirewall(lab.fw_networks(), (svc(lab, net, vip, *backends),)))
        hits = collections.Counter(await lab.fetch(client, url, 60))
        assert set(hits) == {"c1", "c2", "c3"}, hits
        # the host may use VIPs too
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        assert body.decode().strip() in {"c1", "c2", "c3"}

        c2 = backends[1]
        await lab.apply(NodeFirewall(lab.fw_networks(), (svc(lab, net, vip, c2),)))
        assert set(await lab.fetch(client, url, 20)) == {"c2"}
        assert set(await lab.fetch(c2, url, 5)) == {"c2"}  # hairpin: back to itself
        await lab.apply(NodeFirewall(lab.fw_networks(), (svc(lab, net, vip, *backends),)))
        assert set(await lab.fetch(c2, url, 30)) == {"c1", "c2", "c3"}

    lab(scenario)


@needs_kernel
def test_no_backend_is_refused_fast_and_the_host_is_closed(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        client = await lab.box("client", (net, 20), serve=False)
        vip = lab.address(net, 200)
        await cni.set_vips(net.bridge, {vip})
        api = free_port()
        # the host listens on the VIP, on the gateway, and on the API port: only the last
        # may be reached from a container
        places = [(vip, HTTP_PORT), (net.gateway, HTTP_PORT), (net.gateway, api)]
        servers = [await asyncio.start_server(hang_up, a, p) for a, p in places]
        try:
            probe = "timeout 5 nc {} {} </dev/null; echo $?"
            open_vip = (await lab.sh(client, probe.format(vip, HTTP_PORT))).stdout.split()
            assert open_vip == ["0"]  # without shoal's rules the host would answer
            await lab.apply(NodeFirewall(lab.fw_networks(), (svc(lab, net, vip),)), (api,))
            for (address, port), code in zip(places, ["1", "1", "0"], strict=True):
                started = time.monotonic()
                out = (await lab.sh(client, probe.format(address, port))).stdout.split()
                assert out[-1:] == [code], (address, port, out)
                assert time.monotonic() - started < 1.0
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()

    lab(scenario)


@needs_kernel
def test_published_tcp_port_on_loopback_and_from_a_container(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        c1, c2 = await lab.box("c1", (net, 10)), await lab.box("c2", (net, 11))
        port = free_port()
        backends = (c1.addresses[net.name], c2.addresses[net.name])
        pub = FwPublished("tcp", port, HTTP_PORT, "", backends)
        await lab.apply(NodeFirewall(lab.fw_networks(), (), (pub,)))

        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                return bytes(resp.read()).decode().strip()

        hits = collections.Counter([await asyncio.to_thread(get) for _ in range(30)])
        assert set(hits) == {"c1", "c2"}, hits
        # a container of the same network, through the host's address (hairpin)
        assert set(await lab.fetch(c1, f"http://{net.gateway}:{port}/", 20)) == {"c1", "c2"}

    lab(scenario)


UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(sys.argv[2].encode() + b":" + data, peer)
"""


@needs_kernel
def test_published_udp_port_on_loopback(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        box = await lab.box("u1", (net, 10), serve=False)
        pid = await lab.spawn(
            "ip", "netns", "exec", box.ns, sys.executable, "-c", UDP_ECHO, "5353", "u1"
        )
        await wait_listening(pid, 5353)
        port = free_port(socket.SOCK_DGRAM)
        pub = FwPublished("udp", port, 5353, "127.0.0.1", (box.addresses[net.name],))
        await lab.apply(NodeFirewall(lab.fw_networks(), (), (pub,)))

        def ask() -> bytes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(b"ping", ("127.0.0.1", port))
                return s.recv(2048)

        assert await asyncio.to_thread(ask) == b"u1:ping"

    lab(scenario)


@needs_kernel
def test_internal_network_has_no_way_out(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        closed, other = await lab.network(internal=True), await lab.network()
        i1, o1 = await lab.box("i1", (closed, 10), serve=False), await lab.box("o1", (other, 10))
        routes = (await lab.sh(i1, "ip route")).stdout
        assert "default" not in routes
        # even with a route added by hand, the firewall is what stops it
        await lab.sh(i1, f"ip route add {other.subnet} via {closed.gateway}")
        url = f"http://{o1.addresses[other.name]}:{HTTP_PORT}/"
        assert await lab.fetch(i1, url) == ["o1"]
        await lab.apply(NodeFirewall(lab.fw_networks()))
        assert (await lab.sh(i1, f"timeout 1 wget -qO- {url}")).returncode != 0

    lab(scenario)


def _count(table: str, needle: str) -> int:
    out = subprocess.run(
        ["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True
    )
    return sum(1 for line in out.stdout.splitlines() if needle in line)


@needs_kernel
def test_apply_is_idempotent_fast_and_cleanup_leaves_nothing(lab: Runner) -> None:
    async def scenario(lab: Lab) -> None:
        net = await lab.network()
        b = net.bridge
        services = tuple(
            FwService(
                firewall.chain_key("bench", f"s{i}"),
                vips=((b, lab.address(net, 100 + i)),),
                ports=(("tcp", 80), ("tcp", 443)),
                backends=tuple((b, lab.address(net, 2 + (i * 5 + j) % 90)) for j in range(5)),
            )
            for i in range(50)
        )
        fw = NodeFirewall(lab.fw_networks(), services)
        started = time.monotonic()
        await lab.apply(fw)
        elapsed = time.monotonic() - started
        await lab.apply(fw)
        assert elapsed < 2.0, elapsed
        assert _count("nat", "-j DNAT") == 250
        for table, jump in [
            ("nat", "-A PREROUTING -j SHOAL-PREROUTING"),
            ("nat", "-A OUTPUT -j SHOAL-OUTPUT"),
            ("nat", "-A POSTROUTING -j SHOAL-POSTROUTING"),
            ("filter", "-A FORWARD -j SHOAL-FORWARD"),
            ("filter", "-A INPUT -j SHOAL-INPUT"),
        ]:
            assert _count(table, jump) == 1, jump
        # someone else flushes a chain: the next apply notices and restores it
        subprocess.run(["iptables", "-t", "nat", "-F", "SHOAL-PREROUTING"], check=True)
        await lab.apply(fw)
        assert _count("nat", "-A SHOAL-PREROUTING") == 150  # 50 × 2 ports + 50 RETURNs
        await lab.apply(NodeFirewall(lab.fw_networks(), services[:1]))
        assert _count("nat", "-N SHOAL-SVC-") == 1 and _count("nat", "-j DNAT") == 5
        await firewall.cleanup()
        await firewall.cleanup()
        assert _count("nat", "SHOAL") == 0 and _count("filter", "SHOAL") == 0

    lab(scenario)
