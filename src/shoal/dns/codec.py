"""DNS wire format for shoal's container DNS server (RFC 1035, 2308, 2782, 3596, 6891).

Hand-written rather than dnslib/dnspython: the server parses one question and writes a handful of
records per query, and doing only that keeps a query in the tens of microseconds. Parsing never
raises anything but `FormatError` (fuzzed); encoding compresses names, truncates to the client's
size, echoes EDNS0 and puts an SOA in negative answers so stub caches know how long to keep them.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from shoal.model.errors import Invalid

A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, IXFR, AXFR, ANY = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 251, 252, 255,
)  # fmt: skip
IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended rcode: its high bits travel in the OPT record

QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
OPCODE_MASK = 0x7800

ZONE = "shoal"
NEGATIVE_TTL = 5  # SOA minimum: how long a resolver may cache "no such name"
EDNS_PAYLOAD = 1232  # what we advertise and the most we send over UDP (DNS flag day 2020)
TCP_MAX = 65535

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_H = struct.Struct("!H")
_SRV_FIXED = struct.Struct("!HHH")
# serial, refresh, retry, expire, minimum
_SOA_TAIL = struct.pack("!IIIII", 1, 3600, 600, 86400, NEGATIVE_TTL)


class FormatError(Invalid):
    """The bytes are not a query we can answer.

    `id` is None when the header itself is unusable (or the message is a response): the server
    then stays silent. Otherwise it replies header-only with `rcode` (FORMERR, or NOTIMP for an
    opcode other than QUERY).
    """

    def __init__(
        self, message: str, *, id: int | None = None, flags: int = 0, rcode: int = FORMERR
    ) -> None:
        super().__init__(message)
        self.id = id
        self.flags = flags
        self.rcode = rcode


@dataclass(frozen=True, slots=True)
class Question:
    name: str  # lower-case, no trailing dot; "" is the root
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Record:
    """One answer. data: A/AAAA → address str; PTR/CNAME/NS → name; SRV → Srv; TXT → str."""

    name: str
    rtype: int
    ttl: int
    data: str | Srv


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    question: Question
    udp_size: int  # the client's EDNS0 payload size, 512 without an OPT record
    edns: bool
    edns_version: int
    question_end: int  # raw[12:question_end] is the question section as the client wrote it
    raw: bytes

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)


def _read_name(data: bytes, pos: int, id: int) -> tuple[str, int]:
    """Decode the name at pos; returns it and the offset just after it (pointers followed)."""
    labels: list[bytes] = []
    end = -1
    floor = pos  # every pointer must go strictly below the last one: no loops
    total = 0
    size = len(data)
    while True:
        if pos >= size:
            raise FormatError("name runs past the end of the message", id=id)
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length >= 0xC0:
            if pos + 1 >= size:
                raise FormatError("truncated compression pointer", id=id)
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= floor:
                raise FormatError("compression pointer does not point backwards", id=id)
            if end < 0:
                end = pos + 2
            pos = floor = target
            continue
        if length > 63:
            raise FormatError(f"unsupported label type 0x{length:02x}", id=id)
        total += length + 1
        if total > 255:
            raise FormatError("name longer than 255 octets", id=id)
        pos += 1
        if pos + length > size:
            raise FormatError("label runs past the end of the message", id=id)
        labels.append(data[pos : pos + length])
        pos += length
    name = b".".join(labels).lower().decode("latin-1")
    return name, end if end >= 0 else pos


def parse_query(data: bytes) -> Query:
    """Parse a client's request: exactly one question, optionally an OPT record."""
    if len(data) < 12:
        raise FormatError("message shorter than a DNS header")
    id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & QR:
        raise FormatError("message is a response, not a query")
    if flags & OPCODE_MASK:
        raise FormatError("only standard queries are served", id=id, flags=flags, rcode=NOTIMP)
    if qdcount != 1:
        raise FormatError(f"query has {qdcount} questions, expected 1", id=id, flags=flags)
    name, pos = _read_name(data, 12, id)
    if pos + 4 > len(data):
        raise FormatError("question truncated", id=id, flags=flags)
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    question_end = pos + 4
    udp_size, edns, version = 512, False, 0
    pos = question_end
    for index in range(ancount + nscount + arcount):
        rname, pos = _read_name(data, pos, id)
        if pos + 10 > len(data):
            raise FormatError("record header truncated", id=id, flags=flags)
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
        pos += 10 + rdlength
        if pos > len(data):
            raise FormatError("record data truncated", id=id, flags=flags)
        if rtype == OPT:
            if edns or rname or index < ancount + nscount:
                raise FormatError("misplaced or repeated OPT record", id=id, flags=flags)
            edns, udp_size, version = True, max(rclass, 512), (ttl >> 16) & 0xFF
    return Query(
        id, flags, Question(name, qtype, qclass), udp_size, edns, version, question_end, data
    )


def encode_error(id: int, flags: int, rcode: int) -> bytes:
    """Header-only reply (FORMERR, NOTIMP) to a message whose question we could not use."""
    out_flags = QR | (flags & (OPCODE_MASK | RD | CD)) | (rcode & 0xF)
    return _HEADER.pack(id, out_flags, 0, 0, 0, 0)


class _Writer:
    """Appends records to a message, compressing owner names and names inside RDATA."""

    __slots__ = ("buf", "names")

    def __init__(self, buf: bytearray, names: dict[str, int]) -> None:
        self.buf = buf
        self.names = names

    def name(self, name: str, *, compress: bool = True) -> None:
        buf, names = self.buf, self.names
        full, total = name, 0
        while name:
            if compress:
                offset = names.get(name)
                if offset is not None:
                    buf += _H.pack(0xC000 | offset)
                    return
                if len(buf) < 0x4000:
                    names[name] = len(buf)
            label, _, name = name.partition(".")
            raw = _label(label)
            total += len(raw) + 1
            if total > 254:
                raise Invalid(f"name {full!r} is longer than 255 octets")
            buf.append(len(raw))
            buf += raw
        buf.append(0)

    def record(self, rec: Record) -> None:
        buf = self.buf
        self.name(rec.name)
        rtype, data = rec.rtype, rec.data
        start = len(buf) + 10
        buf += _RR_FIXED.pack(rtype, IN, rec.ttl, 0)
        if rtype == A and isinstance(data, str):
            buf += _address(socket.AF_INET, data)
        elif rtype == AAAA and isinstance(data, str):
            buf += _address(socket.AF_INET6, data)
        elif rtype in (PTR, CNAME, NS) and isinstance(data, str):
            self.name(data.rstrip(".").lower())
        elif rtype == SRV and isinstance(data, Srv):
            buf += _SRV_FIXED.pack(data.priority, data.weight, data.port)
            self.name(data.target.rstrip(".").lower(), compress=False)  # RFC 2782: no pointers
        elif rtype == TXT and isinstance(data, str):
            raw = data.encode()
            for i in range(0, max(len(raw), 1), 255):
                chunk = raw[i : i + 255]
                buf.append(len(chunk))
                buf += chunk
        else:
            raise Invalid(f"cannot encode a type {rtype} record with data {data!r}")
        buf[start - 2 : start] = _H.pack(len(buf) - start)

    def soa(self, owner: str, zone: str) -> None:
        """An SOA for negative caching (RFC 2308): TTL = minimum = NEGATIVE_TTL."""
        buf = self.buf
        self.name(owner)
        start = len(buf) + 10
        buf += _RR_FIXED.pack(SOA, IN, NEGATIVE_TTL, 0)
        self.name(f"ns.{zone}")
        self.name(f"hostmaster.{zone}")
        buf += _SOA_TAIL
        buf[start - 2 : start] = _H.pack(len(buf) - start)


def _label(label: str) -> bytes:
    try:
        raw = label.encode("latin-1")
    except UnicodeEncodeError:
        raise Invalid(f"label {label!r} is not ASCII", hint="use punycode for IDNs") from None
    if not 0 < len(raw) < 64:
        raise Invalid(f"label {label!r} must be 1 to 63 octets")
    return raw


def _address(family: int, text: str) -> bytes:
    try:
        return socket.inet_pton(family, text)
    except (OSError, ValueError):
        raise Invalid(f"{text!r} is not a valid address for this record type") from None


def _question_names(query: Query) -> dict[str, int]:
    """Offsets of the question name and its suffixes, so answers can point at them."""
    names: dict[str, int] = {}
    name, data, pos = query.question.name, query.raw, 12
    while name:
        label, _, rest = name.partition(".")
        if data[pos] != len(label):  # a pointer, or a label holding a dot: stop here
            break
        names[name] = pos
        pos += data[pos] + 1
        name = rest
    return names


def _soa_owner(name: str, zone: str) -> str:
    """The negative answer's SOA owner: our zone if the name is in it, else the root."""
    if name == zone or name.endswith("." + zone):
        return zone
    return ""


def encode_response(
    query: Query,
    rcode: int,
    answers: Sequence[Record],
    *,
    additional: Sequence[Record] = (),
    authoritative: bool = True,
    recursion_available: bool = False,
    zone: str = ZONE,
    max_size: int,
) -> bytes:
    """The reply to `query`; over `max_size` it drops additional records, then sets TC.

    NXDOMAIN and NODATA (NOERROR without answers) carry the SOA of `zone` (or of the root for
    names outside it) in the authority section.
    """
    flags = QR | (query.flags & (RD | CD)) | (rcode & 0xF)
    if authoritative:
        flags |= AA
    if recursion_available:
        flags |= RA
    qend = query.question_end
    buf = bytearray(query.raw[:qend])
    writer = _Writer(buf, _question_names(query))
    for rec in answers:
        writer.record(rec)
    nscount = 0
    if not answers and rcode in (NOERROR, NXDOMAIN):
        writer.soa(_soa_owner(query.question.name, zone), zone)
        nscount = 1
    after_authority = len(buf)
    for rec in additional:
        writer.record(rec)
    opt = _opt(rcode) if query.edns else b""
    ancount, arcount = len(answers), len(additional)
    if len(buf) + len(opt) > max_size:
        arcount = 0
        del buf[after_authority:]
        if len(buf) + len(opt) > max_size:
            flags |= TC
            ancount = nscount = 0
            del buf[qend:]  # pointers only go backwards, so a cut at a boundary is valid
    buf += opt
    arcount += 1 if opt else 0
    buf[:12] = _HEADER.pack(query.id, flags, 1, ancount, nscount, arcount)
    return bytes(buf)


def _opt(rcode: int) -> bytes:
    """Our OPT record: root owner, our payload size, extended rcode bits, version 0."""
    return b"\x00" + _RR_FIXED.pack(OPT, EDNS_PAYLOAD, (rcode >> 4) << 24, 0)
