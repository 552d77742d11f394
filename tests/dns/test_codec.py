"""DNS codec: hand-built query bytes in, replies checked with a small decoder written here.

The decoder below is independent of shoal.dns.codec (it shares no code with it), so a bug in
the codec's name handling cannot hide itself. test_server.py reuses these helpers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.dns.codec import (
    AAAA,
    BADVERS,
    CNAME,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    OPT,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    FormatError,
    Query,
    Record,
    Srv,
    encode_response,
    parse_query,
)
from shoal.model.errors import Invalid

# -- building queries by hand --------------------------------------------------------------


def wire_name(name: str) -> bytes:
    out = b""
    for label in name.split(".") if name else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def make_query(
    name: str,
    qtype: int = A,
    *,
    id: int = 0x1234,
    flags: int = 0x0100,
    qclass: int = 1,
    edns: int | None = None,
    edns_version: int = 0,
) -> bytes:
    """A query as a stub resolver writes it; `edns` adds an OPT record with that payload size."""
    header = struct.pack("!HHHHHH", id, flags, 1, 0, 0, 1 if edns is not None else 0)
    body = wire_name(name) + struct.pack("!HH", qtype, qclass)
    if edns is not None:
        body += b"\x00" + struct.pack("!HHIH", OPT, edns, edns_version << 16, 0)
    return header + body


# -- an independent decoder ----------------------------------------------------------------


def read_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels, end, hops = [], None, 0
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            hops += 1
            assert hops < 64, "pointer loop"
            if end is None:
                end = pos + 2
            pos = struct.unpack_from("!H", msg, pos)[0] & 0x3FFF
            continue
        pos += 1
        if length == 0:
            break
        labels.append(msg[pos : pos + length].decode("latin-1"))
        pos += length
    return ".".join(labels), end if end is not None else pos


@dataclass
class RR:
    name: str
    rtype: int
    rclass: int
    ttl: int
    data: Any


@dataclass
class Message:
    id: int
    flags: int
    questions: list[tuple[str, int, int]] = field(default_factory=list)
    answers: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    def has(self, bit: int) -> bool:
        return bool(self.flags & bit)


def read_rdata(msg: bytes, rtype: int, pos: int, length: int) -> Any:
    raw = msg[pos : pos + length]
    if rtype == A:
        return socket.inet_ntop(socket.AF_INET, raw)
    if rtype == AAAA:
        return socket.inet_ntop(socket.AF_INET6, raw)
    if rtype in (PTR, CNAME):
        return read_name(msg, pos)[0]
    if rtype == SRV:
        prio, weight, port = struct.unpack_from("!HHH", msg, pos)
        return (prio, weight, port, read_name(msg, pos + 6)[0])
    if rtype == SOA:
        mname, p = read_name(msg, pos)
        rname, p = read_name(msg, p)
        return (mname, rname, *struct.unpack_from("!IIIII", msg, p))
    if rtype == TXT:
        parts, i = [], 0
        while i < len(raw):
            parts.append(raw[i + 1 : i + 1 + raw[i]])
            i += 1 + raw[i]
        return parts
    return raw


def decode(msg: bytes) -> Message:
    id, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg)
    out = Message(id, flags)
    pos = 12
    for _ in range(qd):
        name, pos = read_name(msg, pos)
        out.questions.append((name, *struct.unpack_from("!HH", msg, pos)))
        pos += 4
    for section, count in ((out.answers, an), (out.authority, ns), (out.additional, ar)):
        for _ in range(count):
            name, pos = read_name(msg, pos)
            rtype, rclass, ttl, length = struct.unpack_from("!HHIH", msg, pos)
            pos += 10
            section.append(RR(name, rtype, rclass, ttl, read_rdata(msg, rtype, pos, length)))
            pos += length
    assert pos == len(msg), "trailing bytes after the last record"
    return out


def opt_of(msg: Message) -> RR | None:
    return next((rr for rr in msg.additional if rr.rtype == OPT), None)


def a_records(name: str, count: int, ttl: int = 5) -> list[Record]:
    return [Record(name, A, ttl, f"10.1.{i // 250}.{i % 250 + 1}") for i in range(count)]


QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080

# -- parsing -------------------------------------------------------------------------------


def test_parse_lowercases_and_reads_flags_and_edns() -> None:
    q = parse_query(make_query("Web.MyStack.Shoal", SRV, id=77, edns=4096))
    assert q.question.name == "web.mystack.shoal"
    assert (q.question.qtype, q.question.qclass, q.id, q.rd) == (SRV, 1, 77, True)
    assert (q.edns, q.udp_size) == (True, 4096)
    plain = parse_query(make_query("db.shoal", flags=0))
    assert (plain.edns, plain.udp_size, plain.rd) == (False, 512, False)
    assert parse_query(make_query("db.shoal", edns=100)).udp_size == 512  # below 512 means 512


def test_parse_follows_a_backward_pointer_in_the_question() -> None:
    # an OPT record whose owner name is a pointer to the root label ending the question name
    q = make_query("db.shoal")
    root_offset = 12 + len(wire_name("db.shoal")) - 1
    with_opt = bytearray(q)
    with_opt[10:12] = b"\x00\x01"
    with_opt += struct.pack("!H", 0xC000 | root_offset) + struct.pack("!HHIH", OPT, 1400, 0, 0)
    parsed = parse_query(bytes(with_opt))
    assert (parsed.edns, parsed.udp_size) == (True, 1400)


def pointer_cycle() -> bytes:
    """Two pointers at each other inside skipped RDATA, then a name that enters the cycle."""
    q = bytearray(make_query("a.shoal"))
    q[6:8] = b"\x00\x02"  # two records follow the question
    r = len(q) + 11  # RDATA offset of the first record (root owner, 10 fixed bytes)
    q += (
        b"\x00"
        + struct.pack("!HHIH", TXT, 1, 0, 4)
        + struct.pack("!HH", 0xC000 | r + 2, 0xC000 | r)
    )
    q += struct.pack("!H", 0xC000 | r) + struct.pack("!HHIH", A, 1, 0, 0)
    return bytes(q)


@pytest.mark.parametrize(
    ("data", "answer_id", "rcode"),
    [
        (pointer_cycle(), 0x1234, FORMERR),
        (b"\x12\x34\x01", None, FORMERR),  # shorter than a header
        (make_query("a.shoal", flags=0x8000), None, FORMERR),  # a response: never answer it
        (make_query("a.shoal", flags=0x2800), 0x1234, NOTIMP),  # UPDATE
        (make_query("a.shoal")[:4] + b"\x00\x02" + make_query("a.shoal")[6:], 0x1234, FORMERR),
        (make_query("a.shoal")[:4] + b"\x00\x00" + make_query("a.shoal")[6:], 0x1234, FORMERR),
        (make_query("a.shoal")[:-2], 0x1234, FORMERR),  # question cut short
        (make_query("a.shoal")[:12] + b"\x01a\xc0\x0c\x00\x01\x00\x01", 0x1234, FORMERR),  # loop
        (make_query("a.shoal")[:12] + b"\xc0\x20" + b"\x00" * 20, 0x1234, FORMERR),  # forward
        (make_query("a.shoal")[:12] + b"\x41" + b"a" * 70, 0x1234, FORMERR),  # label type 01
        (make_query(".".join(["a" * 63] * 4) + ".b"), 0x1234, FORMERR),  # 257-octet name
    ],
)
def test_parse_rejects_with_the_right_reply(data: bytes, answer_id: int | None, rcode: int) -> None:
    with pytest.raises(FormatError) as info:
        parse_query(data)
    assert (info.value.id, info.value.rcode) == (answer_id, rcode)


def test_parse_rejects_two_opt_records() -> None:
    q = bytearray(make_query("a.shoal", edns=1232))
    q[10:12] = b"\x00\x02"
    q += b"\x00" + struct.pack("!HHIH", OPT, 1232, 0, 0)
    with pytest.raises(FormatError, match="OPT"):
        parse_query(bytes(q))


# -- encoding ------------------------------------------------------------------------------


def encode(query: bytes, rcode: int, answers: list[Record], **kw: Any) -> Message:
    kw.setdefault("max_size", 512)
    raw = encode_response(parse_query(query), rcode, answers, **kw)
    assert len(raw) <= max(kw["max_size"], 512)
    return decode(raw)


def test_several_a_records_keep_order_and_point_at_the_question() -> None:
    query = make_query("web.mystack.shoal", id=4242)
    records = a_records("web.mystack.shoal", 3)
    raw = encode_response(parse_query(query), NOERROR, records, max_size=512)
    msg = decode(raw)
    assert msg.id == 4242
    assert msg.has(QR) and msg.has(AA) and msg.has(RD) and not msg.has(RA) and not msg.has(TC)
    assert msg.questions == [("web.mystack.shoal", A, 1)]
    assert [(r.name, r.data, r.ttl) for r in msg.answers] == [
        ("web.mystack.shoal", "10.1.0.1", 5),
        ("web.mystack.shoal", "10.1.0.2", 5),
        ("web.mystack.shoal", "10.1.0.3", 5),
    ]
    # each answer is a 2-byte pointer to offset 12 + 10 fixed bytes + 4 address bytes
    assert raw.count(b"\xc0\x0c\x00\x01\x00\x01") == 3
    assert len(raw) == len(query) + 3 * 16
    assert msg.authority == [] and msg.additional == []


def test_rd_is_copied_and_ra_set_when_forwarding_is_available() -> None:
    msg = encode(make_query("a.shoal", flags=0), NOERROR, a_records("a.shoal", 1))
    assert not msg.has(RD) and not msg.has(RA)
    msg = encode(make_query("a.shoal"), NOERROR, [], recursion_available=True)
    assert msg.has(RD) and msg.has(RA)


def test_question_is_echoed_with_the_clients_case() -> None:
    query = make_query("WeB.sHoAl")
    raw = encode_response(parse_query(query), NOERROR, a_records("web.shoal", 1), max_size=512)
    assert raw[12 : 12 + len(wire_name("web.shoal"))] == wire_name("WeB.sHoAl")


def test_srv_with_target_and_additional_address() -> None:
    target = "web.1.mystack.shoal"
    answers = [Record("_http._tcp.web.mystack.shoal", SRV, 5, Srv(0, 10, 8080, target))]
    extra = [Record(target, A, 5, "10.0.3.7")]
    msg = encode(
        make_query("_http._tcp.web.mystack.shoal", SRV), NOERROR, answers, additional=extra
    )
    assert [(r.rtype, r.data) for r in msg.answers] == [(SRV, (0, 10, 8080, target))]
    assert [(r.name, r.data) for r in msg.additional] == [(target, "10.0.3.7")]


def test_names_in_rdata_and_owners_are_compressed() -> None:
    records = [
        Record("www.mystack.shoal", CNAME, 5, "web.mystack.shoal."),
        Record("web.mystack.shoal", A, 5, "10.0.0.9"),
        Record("9.0.0.10.in-addr.arpa", PTR, 5, "Web.MyStack.Shoal"),
    ]
    query = make_query("www.mystack.shoal")
    raw = encode_response(parse_query(query), NOERROR, records, max_size=512)
    msg = decode(raw)
    assert [(r.name, r.data) for r in msg.answers] == [
        ("www.mystack.shoal", "web.mystack.shoal"),
        ("web.mystack.shoal", "10.0.0.9"),
        ("9.0.0.10.in-addr.arpa", "web.mystack.shoal"),
    ]
    assert raw.count(b"mystack") == 1 and raw.count(b"\x03web") == 1


def test_txt_is_split_into_255_octet_strings() -> None:
    text = "k=" + "v" * 398
    msg = encode(make_query("a.shoal", TXT), NOERROR, [Record("a.shoal", TXT, 5, text)])
    parts = msg.answers[0].data
    assert [len(p) for p in parts] == [255, 145] and b"".join(parts) == text.encode()


def test_nxdomain_and_nodata_carry_the_zone_soa() -> None:
    nx = encode(make_query("nope.mystack.shoal"), NXDOMAIN, [])
    nodata = encode(make_query("web.mystack.shoal", AAAA), NOERROR, [])
    for msg, rcode in ((nx, NXDOMAIN), (nodata, NOERROR)):
        assert msg.rcode == rcode and msg.answers == [] and msg.has(AA)
        (soa,) = msg.authority
        assert (soa.name, soa.rtype, soa.ttl) == ("shoal", SOA, 5)
        assert soa.data[:2] == ("ns.shoal", "hostmaster.shoal") and soa.data[-1] == 5
    outside = encode(make_query("example.com"), NXDOMAIN, [])
    assert [(r.name, r.rtype) for r in outside.authority] == [("", SOA)]
    assert encode(make_query("a.shoal"), NOERROR, a_records("a.shoal", 1)).authority == []


def test_over_512_bytes_sets_tc_and_drops_answers() -> None:
    query = make_query("big.mystack.shoal")
    msg = encode(query, NOERROR, a_records("big.mystack.shoal", 40))
    assert msg.has(TC) and msg.answers == [] and msg.authority == []
    assert msg.questions == [("big.mystack.shoal", A, 1)]
    full = encode(query, NOERROR, a_records("big.mystack.shoal", 40), max_size=65535)
    assert not full.has(TC) and len(full.answers) == 40


def test_edns_size_allows_more_and_opt_is_echoed() -> None:
    query = make_query("big.mystack.shoal", edns=4096)
    msg = encode(query, NOERROR, a_records("big.mystack.shoal", 40), max_size=1232)
    assert not msg.has(TC) and len(msg.answers) == 40
    opt = opt_of(msg)
    assert opt is not None and opt.rclass == 1232 and opt.name == ""
    assert opt_of(encode(make_query("a.shoal"), NOERROR, [])) is None
    cut = encode(query, NOERROR, a_records("big.mystack.shoal", 90), max_size=1232)
    assert cut.has(TC) and cut.answers == [] and opt_of(cut) is not None


def test_additional_records_go_first_without_tc() -> None:
    answers = a_records("a.shoal", 25)  # 25 * 16 + header and question: fits in 512
    extra = a_records("b.shoal", 10)
    msg = encode(make_query("a.shoal"), NOERROR, answers, additional=extra)
    assert not msg.has(TC) and len(msg.answers) == 25 and msg.additional == []


def test_extended_rcode_goes_into_opt() -> None:
    msg = encode(make_query("a.shoal", edns=1232), BADVERS, [])
    opt = opt_of(msg)
    assert opt is not None and msg.rcode == BADVERS & 0xF and opt.ttl >> 24 == BADVERS >> 4


@pytest.mark.parametrize(
    "record",
    [
        Record("a.shoal", A, 5, "10.0.0.256"),
        Record("a.shoal", A, 5, "1"),
        Record("a.shoal", AAAA, 5, "10.0.0.1"),
        Record("a.shoal", SRV, 5, "not an Srv"),
        Record("x" * 64 + ".shoal", A, 5, "10.0.0.1"),
        Record("a..shoal", A, 5, "10.0.0.1"),
        Record(".".join(["a" * 60] * 5), A, 5, "10.0.0.1"),
        Record("é€.shoal", A, 5, "10.0.0.1"),
    ],
)
def test_bad_records_raise_invalid(record: Record) -> None:
    with pytest.raises(Invalid):
        encode_response(parse_query(make_query("a.shoal")), NOERROR, [record], max_size=512)


def test_aaaa_record() -> None:
    msg = encode(make_query("a.shoal", AAAA), NOERROR, [Record("a.shoal", AAAA, 5, "fd00::1")])
    assert msg.answers[0].data == "fd00::1"


# -- fuzzing -------------------------------------------------------------------------------

VALID = [
    make_query("web.mystack.shoal"),
    make_query("_http._tcp.web.mystack.shoal", SRV, edns=1232),
    make_query("example.com", AAAA, edns=4096),
]


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "set" and at < len(data):
            data[at] = draw(st.sampled_from([0x00, 0x3F, 0x40, 0xC0, 0xC0 | 0x0C, 0xFF]))
    return bytes(data)


def parse_and_answer(data: bytes) -> Query | None:
    """Parse; if that works, answering must work or fail with Invalid only."""
    try:
        query = parse_query(data)
    except FormatError as exc:
        assert exc.id is None or 0 <= exc.id < 65536
        return None
    for rcode, answers in ((NOERROR, a_records(query.question.name, 2)), (NXDOMAIN, [])):
        with contextlib.suppress(Invalid):
            decode(encode_response(query, rcode, answers, max_size=512))
    return query


FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_only_raise_format_error(data: bytes) -> None:
    parse_and_answer(data)


@FUZZ
@given(mutated_queries())
def test_fuzz_mutated_queries_only_raise_format_error(data: bytes) -> None:
    parse_and_answer(data)
