"""Address allocation and the deploy-time networking plan (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal.model.cluster import Service, Task
from shoal.model.compose_mounts import PortSpec
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Conflict, Invalid, Unavailable
from shoal.model.network import Network, PublishedPort
from shoal.network import allocate
from shoal.network.deployment import attach_task, plan_stack, service_networks
from shoal.server.netstate import host_routes


def net(name: str, subnet: str = "10.213.0.0/24", stack: str = "st", **kw: Any) -> Network:
    gateway = subnet.rsplit(".", 1)[0] + ".1"
    return Network(name=name, stack=stack, subnet=subnet, gateway=gateway, bridge="shlx", **kw)


def spec(**kw: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"image": "busybox", **kw})


def test_bridge_names_fit_linux_and_differ() -> None:
    a, b = allocate.bridge_name("st_default"), allocate.bridge_name("st_front")
    assert len(a) <= 15 and a.startswith("shl") and a != b
    assert allocate.bridge_name("st_default") == a


def test_new_networks_take_free_subnets_and_keep_existing() -> None:
    existing = [net("other_default", "10.213.0.0/24", stack="other")]
    created = allocate.new_networks(
        "st", {"default": {"name": "st_default"}, "back": {"internal": True}}, existing
    )
    by_name = {n.name: n for n in created}
    assert by_name["st_default"].subnet != "10.213.0.0/24"
    assert by_name["st_back"].internal
    assert by_name["st_default"].gateway.endswith(".1")
    assert len({n.subnet for n in created}) == 2
    # A second deploy creates nothing new.
    again = allocate.new_networks("st", {"default": {"name": "st_default"}}, existing + created)
    assert again == []


def test_declared_subnet_is_used_and_overlap_refused() -> None:
    [made] = allocate.new_networks(
        "st", {"n": {"ipam": {"config": [{"subnet": "10.5.0.0/24", "gateway": "10.5.0.254"}]}}}, []
    )
    assert (made.subnet, made.gateway) == ("10.5.0.0/24", "10.5.0.254")
    with pytest.raises(Conflict, match="overlaps"):
        allocate.new_networks(
            "st2", {"n": {"ipam": {"config": [{"subnet": "10.5.0.128/25"}]}}}, [made]
        )
    with pytest.raises(Invalid, match="not a subnet"):
        allocate.new_networks("st", {"n": {"ipam": {"config": [{"subnet": "nonsense"}]}}}, [])


def test_external_networks_must_exist_and_names_belong_to_one_stack() -> None:
    with pytest.raises(Invalid, match="external network 'shared' does not exist"):
        allocate.new_networks("st", {"n": {"name": "shared", "external": True}}, [])
    assert (
        allocate.new_networks(
            "st", {"n": {"name": "shared", "external": True}}, [net("shared", stack="a")]
        )
        == []
    )
    with pytest.raises(Conflict, match="belongs to stack 'a'"):
        allocate.new_networks("st", {"n": {"name": "shared"}}, [net("shared", stack="a")])


def test_pool_exhaustion_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="no free /24"):
        allocate.new_networks("st", {"a": {}, "b": {}}, [], pool="10.213.0.0/24", prefix=24)


def test_addresses_from_bottom_vips_from_top() -> None:
    n = net("st_default", "10.213.0.0/29")
    assert allocate.allocate(n, set()) == "10.213.0.2"
    assert allocate.allocate(n, {"10.213.0.2"}) == "10.213.0.3"
    assert allocate.allocate(n, set(), top=True) == "10.213.0.6"
    full = {f"10.213.0.{i}" for i in range(2, 7)}
    with pytest.raises(Unavailable, match="no free address"):
        allocate.allocate(n, full)


def test_pinned_addresses_are_checked() -> None:
    n = net("st_default", "10.213.0.0/24")
    assert allocate.check_address(n, "10.213.0.9", set(), "t") == "10.213.0.9"
    with pytest.raises(Invalid, match="not a usable address"):
        allocate.check_address(n, "10.9.0.9", set(), "t")
    with pytest.raises(Invalid, match="not a usable address"):
        allocate.check_address(n, "10.213.0.1", set(), "t")  # the gateway
    with pytest.raises(Conflict, match="already in use"):
        allocate.check_address(n, "10.213.0.9", {"10.213.0.9"}, "t")


def test_ports_expand_ranges_and_clash() -> None:
    ports = allocate.expand_ports(
        "web",
        [
            PortSpec(target=9000, published="9000-9001", protocol="udp"),
            PortSpec(target=80, published="8080"),
            PortSpec(target=5000),
        ],
    )
    assert [(p.target, p.published, p.protocol) for p in ports] == [
        (9000, 9000, "udp"),
        (9001, 9001, "udp"),
        (80, 8080, "tcp"),
        (5000, 0, "tcp"),
    ]
    taken = {"other/api": [PublishedPort(target=80, published=8080)]}
    with pytest.raises(Conflict, match="8080/tcp is already published by other/api"):
        allocate.assign_ports("st/web", ports, taken)
    # udp and tcp on one number do not clash; another host_ip does not either.
    udp = [PublishedPort(target=80, published=8080, protocol="udp")]
    assert allocate.assign_ports("st/web", udp, taken) == udp
    pinned = [PublishedPort(target=80, published=8080, host_ip="127.0.0.2")]
    other = {"o/x": [PublishedPort(target=80, published=8080, host_ip="127.0.0.3")]}
    assert allocate.assign_ports("st/web", pinned, other) == pinned


def test_ephemeral_ports_are_given_and_kept_on_redeploy() -> None:
    wanted = [PublishedPort(target=5000, published=0)]
    taken = {"o/x": [PublishedPort(target=1, published=30000)]}
    [first] = allocate.assign_ports("st/web", wanted, taken)
    assert first.published == 30001
    [again] = allocate.assign_ports("st/web", wanted, taken, previous=[first])
    assert again.published == 30001


def test_bad_ports_are_invalid() -> None:
    with pytest.raises(Invalid, match="protocol 'sctp'"):
        allocate.expand_ports("web", [PortSpec(target=80, published="80", protocol="sctp")])
    with pytest.raises(Invalid, match="port range"):
        allocate.expand_ports("web", [PortSpec(target=80, published="90-80")])


def _service(stack: str, name: str, **kw: Any) -> Service:
    return Service(id=f"{stack}-{name}", stack=stack, name=name, spec=spec(), **kw)


def test_plan_stack_gives_vips_per_network_and_keeps_them() -> None:
    declared = {"default": {"name": "st_default"}, "back": {"name": "st_back"}}
    services = {
        "web": spec(networks={"default": None, "back": None}, ports=[{"target": 80}]),
        "db": spec(networks={"back": None}, deploy={"endpoint_mode": "dnsrr"}),
        "host": spec(network_mode="host"),
    }
    plan = plan_stack("st", services, declared, [], [])
    assert {n.name for n in plan.create} == {"st_default", "st_back"}
    assert set(plan.vips["web"]) == {"st_default", "st_back"}
    assert plan.vips["db"] == {} and plan.vips["host"] == {}
    assert plan.ports["web"][0].published == 30000
    # Redeploy: same VIPs and ports.
    current = _service("st", "web", vips=plan.vips["web"], ports=plan.ports["web"])
    again = plan_stack("st", services, declared, plan.create, [current])
    assert again.vips["web"] == plan.vips["web"] and again.ports["web"] == plan.ports["web"]
    assert again.create == []


def test_plan_stack_refuses_clashes_and_unreachable_ports() -> None:
    other = _service("o", "x", ports=[PublishedPort(target=80, published=8080)])
    declared = {"default": {"name": "st_default"}}
    with pytest.raises(Conflict, match="8080/tcp is already published by o/x"):
        plan_stack(
            "st",
            {"web": spec(networks={"default": None}, ports=[{"target": 80, "published": "8080"}])},
            declared,
            [],
            [other],
        )
    internal = {"back": {"name": "st_back", "internal": True}}
    with pytest.raises(Invalid, match="only on internal networks"):
        plan_stack(
            "st",
            {"web": spec(networks={"back": None}, ports=[{"target": 80, "published": "80"}])},
            internal,
            [],
            [],
        )
    with pytest.raises(Invalid, match="not declared"):
        plan_stack("st", {"web": spec(networks={"nope": None})}, declared, [], [])


def test_attach_task_gives_one_address_per_network_with_aliases() -> None:
    networks = {
        "st_default": net("st_default", "10.213.1.0/24"),
        "st_back": net("st_back", "10.213.2.0/24"),
    }
    declared = {"default": {"name": "st_default"}, "back": {"name": "st_back"}}
    task_spec = spec(networks={"default": None, "back": {"aliases": ["db"]}})
    task = Task(id="t1", stack="st", service="web", service_id="s", spec_version=1, spec=task_spec)
    used: set[str] = set()
    attached = attach_task(task, declared, networks, used)
    assert [(a.network, a.address, a.aliases) for a in attached] == [
        ("st_back", "10.213.2.2", ["db"]),
        ("st_default", "10.213.1.2", []),
    ]
    assert used == {"10.213.2.2", "10.213.1.2"}
    second = attach_task(task, declared, networks, used)
    assert [a.address for a in second] == ["10.213.2.3", "10.213.1.3"]


def test_service_networks_honour_priority_and_modes() -> None:
    s = spec(networks={"a": None, "b": {"priority": 10}})
    assert [k for k, _ in service_networks("st", s, {})] == ["b", "a"]
    assert service_networks("st", spec(network_mode="host"), {}) == []


def test_new_subnets_keep_clear_of_the_hosts_routes(tmp_path: Path) -> None:
    [made] = allocate.new_networks("st", {"n": {}}, [], avoid=["10.213.0.0/23", "192.0.2.0/24"])
    assert made.subnet == "10.213.2.0/24"
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "br0\t0000D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    assert host_routes(str(route)) == ["10.213.0.0/24"]
