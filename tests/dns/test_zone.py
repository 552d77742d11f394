"""Which names a container sees, and what they answer (pure)."""

from __future__ import annotations

from shoal.dns.codec import AAAA, NOERROR, NXDOMAIN, SRV, A, Question, Srv
from shoal.dns.zone import Zone
from shoal.model.network import Endpoints, EndpointTask, Network, PublishedPort


def net(name: str, stack: str, third: int) -> Network:
    return Network(
        name=name,
        stack=stack,
        subnet=f"10.213.{third}.0/24",
        gateway=f"10.213.{third}.1",
        bridge=f"shl{third}",
    )


def task(tid: str, ready: bool = True, **addresses: str) -> EndpointTask:
    return EndpointTask(id=tid, node_id="n", addresses=addresses, ready=ready)


NETS = [net("a_front", "a", 1), net("a_back", "a", 2), net("b_default", "b", 3)]


def zone() -> Zone:
    web = Endpoints(
        stack="a",
        service="web",
        vips={"a_front": "10.213.1.254"},
        ports=[PublishedPort(target=80, published=8080, name="http")],
        target_ports=[80],
        tasks=[
            task("w1", a_front="10.213.1.2"),
            task("w2", a_front="10.213.1.3"),
            task("w3", ready=False, a_front="10.213.1.4"),
        ],
    )
    db = Endpoints(
        stack="a",
        service="db",
        mode="dnsrr",
        tasks=[
            EndpointTask(
                id="d1",
                node_id="n",
                addresses={"a_back": "10.213.2.2"},
                aliases={"a_back": ["database"]},
                hostname="primary",
                ready=True,
            )
        ],
    )
    api = Endpoints(
        stack="a",
        service="api",
        vips={"a_front": "10.213.1.253", "a_back": "10.213.2.253"},
        tasks=[task("p1", a_front="10.213.1.5", a_back="10.213.2.5")],
    )
    other = Endpoints(
        stack="b",
        service="web",
        vips={"b_default": "10.213.3.254"},
        tasks=[task("o1", b_default="10.213.3.2")],
    )
    return Zone.build(NETS, [web, db, api, other])


def ask(z: Zone, client: str, name: str, qtype: int = A) -> tuple[int, list[object]] | None:
    answer = z.resolve(client, Question(name, qtype, 1))
    if answer is None:
        return None
    return answer.rcode, sorted(str(r.data) for r in answer.records)


WEB1, DB1, API1, OTHER1 = "10.213.1.2", "10.213.2.2", "10.213.1.5", "10.213.3.2"


def test_service_names_answer_the_vip_in_every_form() -> None:
    z = zone()
    for name in ("web", "web.a", "web.a.shoal"):
        assert ask(z, API1, name) == (NOERROR, ["10.213.1.254"])


def test_tasks_name_lists_only_ready_tasks() -> None:
    assert ask(zone(), API1, "tasks.web") == (NOERROR, ["10.213.1.2", "10.213.1.3"])


def test_dnsrr_aliases_and_hostnames_answer_task_addresses() -> None:
    z = zone()
    for name in ("db", "database", "primary.a.shoal", "tasks.db"):
        assert ask(z, "10.213.2.5", name) == (NOERROR, [DB1])


def test_names_are_scoped_to_the_askers_networks() -> None:
    z = zone()
    # web is only on a_front: db (only on a_back) cannot see it, and web cannot see db.
    assert ask(z, DB1, "web.a.shoal") == (NXDOMAIN, [])
    assert ask(z, WEB1, "db") is None  # not ours: forwarded if configured, else NXDOMAIN
    assert ask(z, WEB1, "db.a.shoal") == (NXDOMAIN, [])
    # api is on both: it sees each service on the network it shares with it.
    assert ask(z, DB1, "api") == (NOERROR, ["10.213.2.253"])
    assert ask(z, WEB1, "api") == (NOERROR, ["10.213.1.253"])
    # Stack b's web is invisible to stack a, and vice versa.
    assert ask(z, OTHER1, "web") == (NOERROR, ["10.213.3.254"])
    assert ask(z, OTHER1, "web.a") is None
    assert ask(z, OTHER1, "web.a.shoal") == (NXDOMAIN, [])


def test_srv_records_by_port_name_and_number() -> None:
    z = zone()
    answer = z.resolve(API1, Question("_http._tcp.web.a.shoal", SRV, 1))
    assert answer is not None
    assert [r.data for r in answer.records] == [Srv(0, 0, 80, "web.a.shoal")]
    assert ask(z, API1, "_80._tcp.web.a.shoal") is not None


def test_nodata_for_other_types_and_nxdomain_under_our_domain() -> None:
    z = zone()
    assert ask(z, API1, "web", AAAA) == (NOERROR, [])
    assert ask(z, API1, "nothing.a.shoal") == (NXDOMAIN, [])
    assert ask(z, API1, "example.com") is None


def test_unknown_clients_see_every_name() -> None:
    assert ask(zone(), "127.0.0.1", "web.b") == (NOERROR, ["10.213.3.254"])


def test_multi_address_answers_rotate() -> None:
    z = zone()
    firsts = set()
    for _ in range(4):
        answer = z.resolve(API1, Question("tasks.web", A, 1))
        assert answer is not None
        firsts.add(answer.records[0].data)
    assert firsts == {"10.213.1.2", "10.213.1.3"}
