"""The node's DNS server: answers containers from a `Resolver`, forwards the rest upstream.

One server per agent listens on the gateway address of every container network on the node
(UDP and TCP on the same port); addresses come and go with `listen`/`unlisten`. The client's
source address tells the resolver which container asks. The UDP path is a plain
DatagramProtocol callback (parse, resolve, encode, send: no task, no logging per query); only a
forwarded query gets a task, because it waits for an upstream.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from shoal.dns.codec import (
    AXFR,
    BADVERS,
    EDNS_PAYLOAD,
    IN,
    IXFR,
    NOTIMP,
    NXDOMAIN,
    QR,
    SERVFAIL,
    TC,
    TCP_MAX,
    FormatError,
    Query,
    Question,
    Record,
    encode_error,
    encode_response,
    parse_query,
)
from shoal.model.errors import Conflict, Invalid, NotFound, Unavailable

log = logging.getLogger(__name__)

_LEN = struct.Struct("!H")
MAX_FORWARDS = 1024  # forwarded queries in flight; beyond this new ones are dropped


@dataclass(frozen=True, slots=True)
class Answer:
    """The resolver's verdict on a name of ours. `additional` is dropped first when too big."""

    rcode: int
    records: Sequence[Record] = ()
    additional: Sequence[Record] = ()


class Resolver(Protocol):
    def resolve(self, client: str, question: Question) -> Answer | None:
        """Answer for `client` (its source IP), or None: "not a name of ours"."""


def parse_upstream(spec: str) -> tuple[str, int]:
    """ "ip", "ip:port", "[v6]:port" or a bare IPv6 address → (host, port)."""
    host, port = spec, 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            port = _port(spec, rest.removeprefix(":"))
    elif spec.count(":") == 1:
        host, _, text = spec.partition(":")
        port = _port(spec, text)
    if not host:
        raise Invalid(f"upstream {spec!r} has no address", hint='write "ip" or "ip:port"')
    return host, port


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Invalid(f"upstream {spec!r} has a bad port", hint='write "ip" or "ip:port"')
    return int(text)


class _Upstream(asyncio.DatagramProtocol):
    """One forwarded query on its own socket: waits for the reply that matches it."""

    def __init__(self, query: Query, done: asyncio.Future[bytes]) -> None:
        self.query = query
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        q = self.query
        if (
            len(data) >= q.question_end
            and data[:2] == q.raw[:2]
            and data[2] & 0x80
            and data[12 : q.question_end].lower() == q.raw[12 : q.question_end].lower()
            and not self.done.done()
        ):
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        if not self.done.done():
            self.done.set_exception(exc)


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # selector's is no subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.server._local(data, addr[0], tcp=False)
        if out is None or self.transport is None:
            return
        if isinstance(out, bytes):
            self.transport.sendto(out, addr)
        else:
            self.server._forward_udp(out, addr, self.transport)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away: nothing to do


@dataclass
class _Listener:
    port: int
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    connections: set[asyncio.StreamWriter]


class DnsServer:
    """DNS for containers. `upstreams(client)` is called per query: keep it a lookup."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        upstreams: Callable[[str], Sequence[str]] = lambda client: (),
        forward_timeout: float = 2.0,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        self.resolver = resolver
        self.upstreams = upstreams
        self.forward_timeout = forward_timeout
        self.tcp_idle_timeout = tcp_idle_timeout
        self.counters = {
            "queries": 0,
            "nxdomain": 0,
            "forwarded": 0,
            "errors": 0,
            "truncated": 0,
            "tcp": 0,
        }
        self._listeners: dict[str, _Listener] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._logged: set[str] = set()

    # -- addresses -------------------------------------------------------------------------

    def listening(self) -> set[str]:
        return set(self._listeners)

    def port(self, host: str) -> int:
        try:
            return self._listeners[host].port
        except KeyError:
            raise NotFound(f"DNS server is not listening on {host}") from None

    async def listen(self, host: str, port: int = 53) -> int:
        """Serve UDP and TCP on host:port (port 0: a free port, the same for both); returns it."""
        if host in self._listeners:
            current = self._listeners[host].port
            if port in (0, current):
                return current
            raise Conflict(f"DNS server already listens on {host}:{current}, not {port}")
        loop = asyncio.get_running_loop()
        for _ in range(8 if port == 0 else 1):
            udp, _protocol = await self._bind_udp(loop, host, port)
            bound = int(udp.get_extra_info("sockname")[1])
            connections: set[asyncio.StreamWriter] = set()
            try:
                tcp = await asyncio.start_server(
                    functools.partial(self._serve_tcp, connections=connections), host, bound
                )
            except OSError as exc:
                udp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue  # the free UDP port is taken for TCP: draw another one
                raise _unavailable(host, bound, exc) from exc
            self._listeners[host] = _Listener(bound, udp, tcp, connections)
            return bound
        raise Unavailable(f"no port free for both UDP and TCP on {host}")

    async def _bind_udp(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
        try:
            return await loop.create_datagram_endpoint(
                lambda: _UdpServer(self), local_addr=(host, port)
            )
        except OSError as exc:
            raise _unavailable(host, port, exc) from exc

    async def unlisten(self, host: str) -> None:
        listener = self._listeners.pop(host, None)
        if listener is None:
            return
        listener.udp.close()
        listener.tcp.close()
        for writer in list(listener.connections):
            writer.close()
        await listener.tcp.wait_closed()

    async def close(self) -> None:
        for host in list(self._listeners):
            await self.unlisten(host)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- answering -------------------------------------------------------------------------

    def _local(self, data: bytes, client: str, *, tcp: bool) -> bytes | Query | None:
        """The reply to send, None to stay silent, or the Query itself when it must be forwarded."""
        counters = self.counters
        counters["queries"] += 1
        try:
            query = parse_query(data)
        except FormatError as exc:
            counters["errors"] += 1
            return None if exc.id is None else encode_error(exc.id, exc.flags, exc.rcode)
        question = query.question
        upstreams = self.upstreams(client)
        max_size = TCP_MAX if tcp else min(query.udp_size, EDNS_PAYLOAD)
        if query.edns_version:
            return encode_response(query, BADVERS, (), max_size=max_size)
        if question.qclass != IN or question.qtype in (AXFR, IXFR):
            counters["errors"] += 1
            return encode_response(query, NOTIMP, (), max_size=max_size)
        try:
            answer = self.resolver.resolve(client, question)
        except Exception as exc:
            return self._failed(query, exc, max_size)
        if answer is None:
            if upstreams:
                return query
            answer = _NXDOMAIN
        if answer.rcode == NXDOMAIN:
            counters["nxdomain"] += 1
        try:
            out = encode_response(
                query,
                answer.rcode,
                answer.records,
                additional=answer.additional,
                recursion_available=bool(upstreams),
                max_size=max_size,
            )
        except Exception as exc:
            return self._failed(query, exc, max_size)
        if out[2] & (TC >> 8) and not tcp:
            counters["truncated"] += 1
        return out

    def _failed(self, query: Query, exc: Exception, max_size: int) -> bytes:
        """A resolver (or record) bug: SERVFAIL, logged once per kind, and the server goes on."""
        self.counters["errors"] += 1
        kind = type(exc).__qualname__
        if kind not in self._logged:
            self._logged.add(kind)
            log.error("DNS answer for %r failed", query.question.name, exc_info=exc)
        return encode_response(query, SERVFAIL, (), authoritative=False, max_size=max_size)

    # -- forwarding ------------------------------------------------------------------------

    def _forward_udp(
        self, query: Query, addr: tuple[str, int], transport: asyncio.DatagramTransport
    ) -> None:
        if len(self._tasks) >= MAX_FORWARDS:
            self.counters["errors"] += 1
            return

        async def relay() -> None:
            reply = await self._forward(query, addr[0], tcp=False)
            if not transport.is_closing():
                transport.sendto(reply, addr)

        task = asyncio.get_running_loop().create_task(relay())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, query: Query, client: str, *, tcp: bool) -> bytes:
        """Relay the client's bytes to each upstream in turn; SERVFAIL if none answers."""
        self.counters["forwarded"] += 1
        for spec in self.upstreams(client):
            try:
                host, port = parse_upstream(spec)
            except Invalid as exc:
                self._log_once(f"upstream {spec}", str(exc))
                continue
            reply = await self._ask_udp(query, host, port)
            if reply is not None and tcp and reply[2] & (TC >> 8):
                reply = await self._ask_tcp(query, host, port)
            if reply is not None:
                return reply
        self.counters["errors"] += 1
        max_size = TCP_MAX if tcp else min(query.udp_size, EDNS_PAYLOAD)
        return encode_response(query, SERVFAIL, (), authoritative=False, max_size=max_size)

    async def _ask_udp(self, query: Query, host: str, port: int) -> bytes | None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Upstream(query, done), remote_addr=(host, port)
            )
        except OSError as exc:
            self._log_once(f"upstream {host}", f"cannot reach DNS upstream {host}: {exc}")
            return None
        try:
            transport.sendto(query.raw)
            async with asyncio.timeout(self.forward_timeout):
                return await done
        except (TimeoutError, OSError):
            return None
        finally:
            transport.close()

    async def _ask_tcp(self, query: Query, host: str, port: int) -> bytes | None:
        """The UDP reply was truncated and the client came over TCP: ask again over TCP."""
        writer = None
        try:
            async with asyncio.timeout(self.forward_timeout):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(_LEN.pack(len(query.raw)) + query.raw)
                (size,) = _LEN.unpack(await reader.readexactly(2))
                reply = await reader.readexactly(size)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            return None
        finally:
            if writer is not None:
                writer.close()
        return reply if reply[:2] == query.raw[:2] and reply[2] & (QR >> 8) else None

    def _log_once(self, kind: str, message: str) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s", message)

    # -- TCP -------------------------------------------------------------------------------

    async def _serve_tcp(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connections: set[asyncio.StreamWriter],
    ) -> None:
        """Length-prefixed queries, answered in order, until the client is idle too long."""
        connections.add(writer)
        client = writer.get_extra_info("peername")[0]
        try:
            while True:
                try:
                    async with asyncio.timeout(self.tcp_idle_timeout):
                        (size,) = _LEN.unpack(await reader.readexactly(2))
                        data = await reader.readexactly(size)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    return
                self.counters["tcp"] += 1
                out = self._local(data, client, tcp=True)
                if isinstance(out, Query):
                    out = await self._forward(out, client, tcp=True)
                if out is None:
                    return  # not even a DNS header: this is no DNS client
                writer.write(_LEN.pack(len(out)) + out)
                await writer.drain()
        except OSError:
            return
        finally:
            connections.discard(writer)
            writer.close()


_NXDOMAIN = Answer(NXDOMAIN)


def _unavailable(host: str, port: int, exc: OSError) -> Unavailable:
    return Unavailable(
        f"DNS server cannot bind {host}:{port}: {exc.strerror or exc}",
        hint="is the address configured on this node (the network's gateway) and the port free?",
    )
