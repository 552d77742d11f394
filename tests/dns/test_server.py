"""DNS server over real UDP and TCP on loopback, checked with `dig` and with hand-built bytes.

The servers run on an event loop in a background thread so the tests can be plain blocking
clients (sockets, dig subprocesses, hypothesis). Forwarding goes only to other servers started
here on 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.dns.codec import (
    AAAA,
    BADVERS,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    SERVFAIL,
    SOA,
    SRV,
    A,
    Question,
    Record,
    Srv,
)
from shoal.dns.server import Answer, DnsServer, parse_upstream
from shoal.model.errors import Conflict, Invalid, Unavailable
from tests.dns.test_codec import (
    AA,
    RA,
    TC,
    Message,
    a_records,
    decode,
    make_query,
    mutated_queries,
    opt_of,
)

T = TypeVar("T")
ZONE_TTL = 5
DIG = shutil.which("dig")
needs_dig = pytest.mark.skipif(DIG is None, reason="dig missing: apt-get install bind9-dnsutils")


class TableResolver:
    """Names → records; unknown names under .shoal are NXDOMAIN, others are not ours (None)."""

    def __init__(self, table: dict[str, list[Record]]) -> None:
        self.table = table
        self.clients: list[str] = []
        self.fail_with: Exception | None = None

    def resolve(self, client: str, question: Question) -> Answer | None:
        self.clients.append(client)
        if self.fail_with is not None:
            raise self.fail_with
        if question.name == "whoami.shoal":  # answers with the asking client's address
            return Answer(NOERROR, [Record(question.name, A, 0, client)])
        records = self.table.get(question.name)
        if records is None:
            return Answer(NXDOMAIN) if question.name.endswith(".shoal") else None
        return Answer(NOERROR, [r for r in records if r.rtype == question.qtype])


SRV_NAME = "_http._tcp.web.mystack.shoal"
TABLE = {
    "web.mystack.shoal": a_records("web.mystack.shoal", 3),
    "big.mystack.shoal": a_records("big.mystack.shoal", 60),
    SRV_NAME: [Record(SRV_NAME, SRV, ZONE_TTL, Srv(0, 10, 8080, "web.1.mystack.shoal"))],
}
UPSTREAM_TABLE = {
    "ext.example": [Record("ext.example", A, 300, "192.0.2.10")],
    "huge.example": a_records("huge.example", 60),
}


class Loop:
    """An event loop in a thread; `run` executes a coroutine there and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    background = Loop()
    try:
        yield background
    finally:
        background.stop()


class Servers:
    """Starts DnsServers on the background loop and closes every one of them at the end."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.started: list[DnsServer] = []

    def start(
        self, table: dict[str, list[Record]], host: str = "127.0.0.1", **kw: Any
    ) -> tuple[DnsServer, int, TableResolver]:
        resolver = TableResolver(table)

        async def make() -> tuple[DnsServer, int]:
            server = DnsServer(resolver, **kw)  # created on the loop that will run it
            return server, await server.listen(host, 0)

        server, port = self.loop.run(make())
        self.started.append(server)
        return server, port, resolver

    def close(self) -> None:
        for server in self.started:
            self.loop.run(server.close())


@pytest.fixture
def servers(loop: Loop) -> Iterator[Servers]:
    made = Servers(loop)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def dns(servers: Servers) -> tuple[DnsServer, int, TableResolver]:
    return servers.start(TABLE)


# -- clients -------------------------------------------------------------------------------


def udp(port: int, query: bytes, host: str = "127.0.0.1", *, source: str = "127.0.0.1") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(3)
        sock.sendto(query, (host, port))
        return sock.recv(65535)


def tcp(port: int, queries: Sequence[bytes], host: str = "127.0.0.1") -> list[bytes]:
    """Sends all queries at once (pipelined) on one connection, then reads the replies."""
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(b"".join(struct.pack("!H", len(q)) + q for q in queries))
        return [read_framed(sock) for _ in queries]


def read_framed(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    return exactly(struct.unpack("!H", exactly(2))[0])


def dig(port: int, *args: str) -> tuple[str, str, list[str], str]:
    """Runs dig; returns (status, flags, answer lines, whole output)."""
    assert DIG is not None
    out = subprocess.run(
        [DIG, "@127.0.0.1", "-p", str(port), *args, "+tries=1", "+time=1"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    assert status and flags, out
    section = (
        out.split(";; ANSWER SECTION:\n")[1].split("\n\n")[0] if "ANSWER SECTION" in out else ""
    )
    return (
        status.group(1),
        flags.group(1),
        [" ".join(line.split()) for line in section.splitlines()],
        out,
    )


# -- answers through dig -------------------------------------------------------------------


@needs_dig
def test_dig_a_udp_and_tcp(dns: tuple[DnsServer, int, TableResolver]) -> None:
    server, port, _ = dns
    for extra in ((), ("+tcp",)):
        status, flags, answers, _ = dig(port, "web.mystack.shoal", "A", *extra)
        assert status == "NOERROR" and "aa" in flags.split()
        assert answers == [f"web.mystack.shoal. 5 IN A 10.1.0.{i}" for i in (1, 2, 3)]
    assert server.counters["queries"] == 2 and server.counters["tcp"] == 1


@needs_dig
def test_dig_srv(dns: tuple[DnsServer, int, TableResolver]) -> None:
    _, port, _ = dns
    status, _, answers, _ = dig(port, SRV_NAME, "SRV")
    assert status == "NOERROR"
    assert answers == [f"{SRV_NAME}. 5 IN SRV 0 10 8080 web.1.mystack.shoal."]


@needs_dig
def test_dig_nxdomain_and_nodata_with_soa(dns: tuple[DnsServer, int, TableResolver]) -> None:
    server, port, _ = dns
    status, _, answers, out = dig(port, "nope.mystack.shoal", "A")
    assert status == "NXDOMAIN" and answers == []
    assert re.search(r"^shoal\.\s+5\s+IN\s+SOA\s+ns\.shoal\. hostmaster\.shoal\. ", out, re.M)
    status, _, answers, out = dig(port, "web.mystack.shoal", "AAAA")
    assert status == "NOERROR" and answers == []
    assert "AUTHORITY: 1" in out and "IN\tSOA" in out
    assert server.counters["nxdomain"] == 1


@needs_dig
def test_dig_bufsize_decides_truncation(dns: tuple[DnsServer, int, TableResolver]) -> None:
    _, port, _ = dns
    status, flags, answers, _ = dig(port, "big.mystack.shoal", "+bufsize=4096")
    assert status == "NOERROR" and "tc" not in flags.split() and len(answers) == 60
    _, flags, answers, _ = dig(port, "big.mystack.shoal", "+bufsize=512", "+ignore")
    assert "tc" in flags.split() and answers == []
    _, flags, answers, _ = dig(port, "big.mystack.shoal", "+bufsize=512")  # dig retries on TCP
    assert "tc" not in flags.split() and len(answers) == 60


# -- answers through hand-built bytes ------------------------------------------------------


def test_truncated_over_udp_full_over_tcp(dns: tuple[DnsServer, int, TableResolver]) -> None:
    server, port, _ = dns
    query = make_query("big.mystack.shoal", id=99)
    small = decode(udp(port, query))
    assert small.id == 99 and small.flags & TC and small.answers == []
    full = decode(tcp(port, [query])[0])
    assert not full.flags & TC
    assert [r.data for r in full.answers] == [r.data for r in TABLE["big.mystack.shoal"]]
    assert server.counters["truncated"] == 1


def test_edns_payload_size_is_honoured(dns: tuple[DnsServer, int, TableResolver]) -> None:
    _, port, _ = dns
    msg = decode(udp(port, make_query("big.mystack.shoal", edns=4096)))
    assert not msg.flags & TC and len(msg.answers) == 60
    opt = opt_of(msg)
    assert opt is not None and opt.rclass == 1232
    assert opt_of(decode(udp(port, make_query("web.mystack.shoal")))) is None


def test_tcp_serves_several_pipelined_queries(dns: tuple[DnsServer, int, TableResolver]) -> None:
    _, port, _ = dns
    queries = [make_query(name, id=i) for i, name in enumerate(["web.mystack.shoal", "x.shoal"])]
    replies = [decode(r) for r in tcp(port, queries * 2)]
    assert [(m.id, m.rcode) for m in replies] == [(0, NOERROR), (1, NXDOMAIN)] * 2


def test_tcp_idle_connection_is_closed(servers: Servers) -> None:
    _, port, _ = servers.start(TABLE, tcp_idle_timeout=0.2)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        began = time.monotonic()
        assert sock.recv(10) == b""  # EOF from the server, not our timeout
        assert 0.15 < time.monotonic() - began < 2


def test_client_address_reaches_the_resolver(dns: tuple[DnsServer, int, TableResolver]) -> None:
    _, port, resolver = dns
    for source in ("127.0.0.1", "127.0.0.5"):
        msg = decode(udp(port, make_query("whoami.shoal"), source=source))
        assert [r.data for r in msg.answers] == [source]
    assert resolver.clients[-2:] == ["127.0.0.1", "127.0.0.5"]


def test_refused_kinds_of_query(dns: tuple[DnsServer, int, TableResolver]) -> None:
    _, port, resolver = dns
    asked = len(resolver.clients)
    assert decode(udp(port, make_query("web.mystack.shoal", qclass=3))).rcode == NOTIMP  # CHAOS
    assert decode(udp(port, make_query("web.mystack.shoal", flags=0x1000))).rcode == NOTIMP
    badvers = decode(udp(port, make_query("web.mystack.shoal", edns=1232, edns_version=1)))
    opt = opt_of(badvers)
    assert opt is not None and (opt.ttl >> 24) << 4 | badvers.rcode == BADVERS
    assert len(resolver.clients) == asked


def test_resolver_error_is_servfail_logged_once(
    dns: tuple[DnsServer, int, TableResolver], caplog: pytest.LogCaptureFixture
) -> None:
    server, port, resolver = dns
    resolver.fail_with = KeyError("boom")
    with caplog.at_level(logging.ERROR, logger="shoal.dns.server"):
        for i in range(3):
            msg = decode(udp(port, make_query("web.mystack.shoal", id=i)))
            assert (msg.id, msg.rcode, msg.answers) == (i, SERVFAIL, [])
    assert len([r for r in caplog.records if r.exc_info]) == 1
    resolver.fail_with = None
    assert decode(udp(port, make_query("web.mystack.shoal"))).rcode == NOERROR
    assert server.counters["errors"] == 3


def test_bad_record_from_resolver_is_servfail(servers: Servers) -> None:
    _, port, _ = servers.start({"bad.shoal": [Record("bad.shoal", A, 5, "not-an-ip")]})
    assert decode(udp(port, make_query("bad.shoal"))).rcode == SERVFAIL


# -- forwarding ----------------------------------------------------------------------------


def test_forwarding_to_an_upstream_server(servers: Servers) -> None:
    upstream, up_port, _ = servers.start(UPSTREAM_TABLE)
    upstreams = {"127.0.0.1": [f"127.0.0.1:{up_port}"]}
    server, port, _ = servers.start(TABLE, upstreams=lambda c: upstreams.get(c, []))
    msg = decode(udp(port, make_query("ext.example", id=7)))
    assert (msg.id, msg.rcode) == (7, NOERROR)
    assert [(r.name, r.data, r.ttl) for r in msg.answers] == [("ext.example", "192.0.2.10", 300)]
    own = decode(udp(port, make_query("web.mystack.shoal")))
    assert own.flags & RA and own.flags & AA
    # a client without upstreams gets NXDOMAIN for names that are not ours
    other = decode(udp(port, make_query("ext.example"), source="127.0.0.9"))
    assert other.rcode == NXDOMAIN and not other.flags & RA
    assert server.counters["forwarded"] == 1 and upstream.counters["queries"] == 1


def test_forwarding_over_tcp_retries_truncated_upstream_reply_on_tcp(servers: Servers) -> None:
    _, up_port, _ = servers.start(UPSTREAM_TABLE)
    _, port, _ = servers.start(TABLE, upstreams=lambda c: [f"127.0.0.1:{up_port}"])
    over_udp = decode(udp(port, make_query("huge.example")))
    assert over_udp.flags & TC and over_udp.answers == []
    over_tcp = decode(tcp(port, [make_query("huge.example")])[0])
    assert not over_tcp.flags & TC and len(over_tcp.answers) == 60


def test_dead_upstream_is_servfail_within_the_timeout(servers: Servers) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blackhole:
        blackhole.bind(("127.0.0.1", 0))  # receives, never answers
        dead = f"127.0.0.1:{blackhole.getsockname()[1]}"
        server, port, _ = servers.start(TABLE, upstreams=lambda c: [dead], forward_timeout=0.3)
        began = time.monotonic()
        msg = decode(udp(port, make_query("ext.example", id=5)))
        elapsed = time.monotonic() - began
    assert (msg.id, msg.rcode) == (5, SERVFAIL)
    assert 0.25 < elapsed < 1.5
    assert server.counters["errors"] == 1


def test_closed_upstream_port_falls_through_to_the_next(servers: Servers) -> None:
    _, up_port, _ = servers.start(UPSTREAM_TABLE)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # free once the socket is closed
    order = ["not an address:x", f"127.0.0.1:{closed}", f"127.0.0.1:{up_port}"]
    _, port, _ = servers.start(TABLE, upstreams=lambda c: order, forward_timeout=5)
    began = time.monotonic()
    msg = decode(udp(port, make_query("ext.example")))
    assert msg.rcode == NOERROR and [r.data for r in msg.answers] == ["192.0.2.10"]
    assert time.monotonic() - began < 2  # ICMP port unreachable, not the 5 s timeout


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10.0.0.2", ("10.0.0.2", 53)),
        ("10.0.0.2:5353", ("10.0.0.2", 5353)),
        ("fd00::53", ("fd00::53", 53)),
        ("[fd00::53]:5300", ("fd00::53", 5300)),
    ],
)
def test_parse_upstream(spec: str, expected: tuple[str, int]) -> None:
    assert parse_upstream(spec) == expected


@pytest.mark.parametrize("spec", ["", "10.0.0.2:", "10.0.0.2:99999", ":53", "[fd00::1]:x"])
def test_parse_upstream_rejects(spec: str) -> None:
    with pytest.raises(Invalid):
        parse_upstream(spec)


# -- addresses -----------------------------------------------------------------------------


def test_listen_and_unlisten_two_addresses(loop: Loop, servers: Servers) -> None:
    server, port2, _ = servers.start(TABLE, host="127.0.0.2")
    port3 = loop.run(server.listen("127.0.0.3", 0))
    assert server.listening() == {"127.0.0.2", "127.0.0.3"}
    assert loop.run(server.listen("127.0.0.3", 0)) == port3  # idempotent
    with pytest.raises(Conflict):
        loop.run(server.listen("127.0.0.3", port3 + 1 if port3 < 65535 else port3 - 1))
    for host, port in (("127.0.0.2", port2), ("127.0.0.3", port3)):
        assert decode(udp(port, make_query("web.mystack.shoal"), host)).rcode == NOERROR
        assert decode(tcp(port, [make_query("web.mystack.shoal")], host)[0]).rcode == NOERROR
    loop.run(server.unlisten("127.0.0.2"))
    assert server.listening() == {"127.0.0.3"}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port2), timeout=1).close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.connect(("127.0.0.2", port2))
        sock.send(make_query("web.mystack.shoal"))
        with pytest.raises(ConnectionRefusedError):
            sock.recv(512)
    assert decode(udp(port3, make_query("web.mystack.shoal"), "127.0.0.3")).rcode == NOERROR
    loop.run(server.unlisten("127.0.0.2"))  # unknown address: nothing to do


def test_listen_on_an_address_not_on_this_node_is_unavailable(servers: Servers) -> None:
    with pytest.raises(Unavailable, match=r"192\.0\.2\.1"):
        servers.start(TABLE, host="192.0.2.1")  # TEST-NET-1: bound, never sent to


# -- garbage -------------------------------------------------------------------------------


def ask_after(port: int, garbage: bytes) -> list[Message]:
    """Sends garbage then a probe; returns what came back before the probe's reply.

    UDP on loopback keeps order and the server answers in order, so anything the garbage
    provoked arrives before the probe's answer: no waiting for a reply that never comes.
    """
    probe_id = 0xBEEF if garbage[:2] != b"\xbe\xef" else 0xBEEE
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.connect(("127.0.0.1", port))
        sock.send(garbage)
        sock.send(make_query("web.mystack.shoal", id=probe_id))
        before: list[Message] = []
        while True:
            msg = decode(sock.recv(65535))
            if msg.id == probe_id and msg.questions == [("web.mystack.shoal", A, 1)]:
                assert msg.rcode == NOERROR and len(msg.answers) == 3
                return before
            before.append(msg)


def check_garbage_reply(port: int, garbage: bytes) -> None:
    replies = ask_after(port, garbage)
    assert len(replies) <= 1
    for msg in replies:
        assert msg.id == struct.unpack("!H", garbage[:2])[0]
        assert msg.flags & 0x8000
        assert msg.rcode in (FORMERR, NOTIMP, NOERROR, NXDOMAIN, SERVFAIL, BADVERS & 0xF)


LIVE_FUZZ = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def fuzz_port(loop: Loop) -> Iterator[tuple[DnsServer, int]]:
    made = Servers(loop)
    try:
        server, port, _ = made.start(TABLE)
        yield server, port
    finally:
        made.close()


@LIVE_FUZZ
@given(data=st.binary(min_size=1, max_size=600))
def test_server_survives_random_bytes(fuzz_port: tuple[DnsServer, int], data: bytes) -> None:
    check_garbage_reply(fuzz_port[1], data)


@LIVE_FUZZ
@given(data=mutated_queries())
def test_server_survives_mutated_queries(fuzz_port: tuple[DnsServer, int], data: bytes) -> None:
    if data:
        check_garbage_reply(fuzz_port[1], data)


def test_garbage_gets_formerr_and_garbage_on_tcp_closes(
    dns: tuple[DnsServer, int, TableResolver],
) -> None:
    server, port, _ = dns
    (formerr,) = ask_after(port, make_query("a.shoal")[:4] + b"\x00\x00" + b"\x00" * 6)
    assert (formerr.id, formerr.rcode, formerr.questions) == (0x1234, FORMERR, [])
    assert ask_after(port, b"\x01\x02\x03") == []  # no header: silence
    assert ask_after(port, make_query("a.shoal", flags=0x8100)) == []  # a response: silence
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(b"\x00\x03abc")
        assert sock.recv(10) == b""
    assert server.counters["errors"] == 4


def test_aaaa_of_a_name_with_only_a_is_nodata(dns: tuple[DnsServer, int, TableResolver]) -> None:
    _, port, _ = dns
    msg = decode(udp(port, make_query("web.mystack.shoal", AAAA)))
    assert msg.rcode == NOERROR and msg.answers == []
    assert [(r.name, r.rtype, r.data[-1]) for r in msg.authority] == [("shoal", SOA, 5)]
