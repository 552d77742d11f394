"""A node's networking, driven by the agent: per-task namespaces and per-network bridges,
VIP and published-port rules, and the DNS server, all kept in step with the server's networks
and endpoints records (followed through `/v1/watch/network`).

- `attach(task)` before a container starts: the task's netns with one interface per network
  (CNI bridge plugin, static addresses given by the server), and the files that make names
  work inside it (/etc/resolv.conf pointing at this node's DNS on the gateway, /etc/hosts).
- `detach(task_id)` after it ended: CNI DEL, netns gone — before the agent reports the task
  finished, so the server never hands an address out again while it is still in use.
- `sync()` whenever records or local tasks change: bridges exist exactly for the networks with
  local tasks (the ones this agent made are removed when their last task leaves), each bridge
  carries its services' VIPs, iptables maps VIPs and published ports to ready local tasks, and
  the DNS server listens on every local gateway.
Every step is idempotent and reads its state back from disk (`<agent data>/net/`), so an agent
restarted in the middle of anything finishes or undoes it on its next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.client.http import AsyncClient
from shoal.dns.server import DnsServer
from shoal.dns.zone import Zone
from shoal.model.cluster import Task
from shoal.model.errors import ShoalError, Unavailable
from shoal.model.network import DOMAIN, Endpoints, Network
from shoal.network import cni, firewall, netns
from shoal.server.auth import scoped_token

log = logging.getLogger(__name__)

SYNC_WAIT = 10.0
"""Seconds `attach` waits for the first snapshot of networks from the server."""
API_PORT = 7480
"""Where containers reach shoal's API: this port on their gateway, relayed to the server."""
TOKEN_PATH = "/run/shoal/token"
"""The container's token, scoped to its stack's keys, leases and catalog entries."""


class NodeNetwork:
    def __init__(
        self,
        client: AsyncClient,
        data_dir: Path,
        *,
        node_id: Callable[[], str],
        token: str = "",
        dns_port: int = 53,
        api_port: int = API_PORT,
        upstreams: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.dir = data_dir / "net"
        self.node_id = node_id
        self.token = token
        self.dns_port = dns_port
        self.api_port = api_port
        self.upstreams = tuple(upstreams)
        self.relays: dict[str, asyncio.Server] = {}  # gateway → the API relay listening there
        self._rules = True  # shoal's iptables chains may exist (a previous run's, at start)
        self.prefix = firewall.agent_prefix(str(data_dir.resolve()))  # this agent's chains
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[str, Endpoints] = {}  # store key → record
        self.zone = Zone()
        self.dns = DnsServer(self, upstreams=self._upstreams_for)
        self.synced = asyncio.Event()
        self.changed = asyncio.Event()
        self.task_upstreams: dict[str, tuple[str, ...]] = {}  # task address → its `dns:` list
        self.draining: set[str] = set()  # tasks about to stop: no new connections to them
        self._lock = asyncio.Lock()

    # --- the Resolver protocol, delegated to the current zone ----------------------------------

    def resolve(self, client: str, question: Any) -> Any:
        return self.zone.resolve(client, question)

    def _upstreams_for(self, client: str) -> Sequence[str]:
        return self.task_upstreams.get(client, self.upstreams)

    # --- state on disk ---------------------------------------------------------------------------

    @property
    def _records(self) -> Path:
        return self.dir / "tasks"

    @property
    def _cni_cache(self) -> Path:
        return self.dir / "cni"

    def attached(self) -> dict[str, list[str]]:
        """Task id → networks, for every task with plumbing on this node (read from disk)."""
        out: dict[str, list[str]] = {}
        for path in self._records.glob("*.json") if self._records.exists() else ():
            with contextlib.suppress(ValueError, OSError):
                out[path.stem] = list(json.loads(path.read_text())["networks"])
        return out

    def _bridges_file(self) -> Path:
        return self.dir / "bridges.json"

    def _made_bridges(self) -> dict[str, dict[str, Any]]:
        path = self._bridges_file()
        if not path.exists():
            return {}
        made: dict[str, dict[str, Any]] = json.loads(path.read_text())
        return made

    def _save_bridges(self, made: dict[str, dict[str, Any]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._bridges_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(made, indent=1, sort_keys=True))
        tmp.replace(self._bridges_file())

    # --- following the server ---------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch())
            tg.create_task(self._sync_loop())

    async def _watch(self) -> None:
        delay = 0.2
        while True:
            try:
                async for kind, data in self.client.watch_network():
                    self._apply(kind, data)
                    delay = 0.2
            except ShoalError as exc:
                log.warning("network watch interrupted: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _apply(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "snapshot":
            self.networks = {n["name"]: Network.model_validate(n) for n in data["networks"]}
            self.endpoints = {
                f"{e['stack']}/{e['service']}": Endpoints.model_validate(e)
                for e in data["endpoints"]
            }
            self.synced.set()
        elif kind in ("put", "delete"):
            is_network = data["kind"] == "network"
            name = data["key"].split("/", 2)[2]
            table: dict[str, Any] = self.networks if is_network else self.endpoints
            if kind == "delete":
                table.pop(name, None)
            else:
                cls = Network if is_network else Endpoints
                table[name] = cls.model_validate(data["object"])
        else:
            return
        self.zone = Zone.build(self.networks.values(), self.endpoints.values())
        self.changed.set()

    async def _sync_loop(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            try:
                await self.sync()
            except ShoalError as exc:
                log.warning("network sync failed: %s", exc)
            except Exception:
                log.exception("network sync failed")
            await asyncio.sleep(0.05)  # coalesce bursts of changes

    # --- one task --------------------------------------------------------------------------------

    def netns_name(self, task_id: str) -> str:
        return f"shoal-{task_id}"

    async def attach(self, task: Task) -> tuple[str, dict[str, str], dict[str, str]]:
        """Plumb the task's namespace; returns its path, the files to bind into it and the
        environment that tells the workload where shoal's API is."""
        try:
            await asyncio.wait_for(self.synced.wait(), SYNC_WAIT)
        except TimeoutError:
            raise Unavailable("the server has not sent this node its networks yet") from None
        missing = [a.network for a in task.networks if a.network not in self.networks]
        if missing:
            raise Unavailable(f"network {missing[0]} is not known on this node yet")
        self._records.mkdir(parents=True, exist_ok=True)
        record = self._records / f"{task.id}.json"
        record.write_text(json.dumps({"networks": [a.network for a in task.networks]}))
        async with self._lock:
            for attachment in task.networks:
                await self._ensure_bridge(self.networks[attachment.network])
        path = await netns.create(self.netns_name(task.id))
        attachments = [
            cni.Attach(_bridge_net(self.networks[a.network]), f"eth{i}", a.address)
            for i, a in enumerate(task.networks)
        ]
        await cni.add(task.id, path, attachments, self._cni_cache)
        for attach in attachments:  # a reused address: forget the previous owner's MAC
            await netns.run("ip", "neigh", "flush", "to", attach.address, "dev", attach.net.bridge)
        files = self._write_files(task)
        self.task_upstreams.update({a.address: tuple(task.spec.dns or ()) for a in task.networks})
        self.changed.set()
        gateway = self.networks[task.networks[0].network].gateway
        env = {"SHOAL_ADDR": f"http://{gateway}:{self.api_port}", "SHOAL_TOKEN_FILE": TOKEN_PATH}
        return path, files, env

    async def drain(self, task_id: str) -> None:
        """Take the task out of this node's VIP and port rules before it is stopped, so no
        new connection reaches a process that is going away (the server's record may lag)."""
        if task_id in self.attached():
            self.draining.add(task_id)
            await self.sync()

    async def detach(self, task_id: str) -> None:
        """Undo `attach` (idempotent; also for what a crashed agent left half-done)."""
        name = self.netns_name(task_id)
        if netns.exists(name):
            await netns.delete(name)  # takes the veth pair with it: DEL has less to do
        await cni.delete(task_id, None, self._cni_cache)
        shutil.rmtree(self.dir / "files" / task_id, ignore_errors=True)
        (self._records / f"{task_id}.json").unlink(missing_ok=True)
        self.draining.discard(task_id)
        self.changed.set()

    def _write_files(self, task: Task) -> dict[str, str]:
        folder = self.dir / "files" / task.id
        folder.mkdir(parents=True, exist_ok=True)
        first = self.networks[task.networks[0].network]
        spec = task.spec
        search = [f"{task.stack}.{DOMAIN}", DOMAIN, *(spec.dns_search or [])]
        options = ["ndots:1", *(spec.dns_opt or [])]
        resolv = f"nameserver {first.gateway}\nsearch {' '.join(search)}\n"
        resolv += f"options {' '.join(options)}\n"
        hostname = spec.hostname or task.name.replace("_", "-").replace(".", "-")
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        hosts.append(f"{task.networks[0].address}\t{hostname} {task.service}")
        for host, address in _extra_hosts(spec.extra_hosts):
            hosts.append(f"{address}\t{host}")
        (folder / "resolv.conf").write_text(resolv)
        (folder / "hosts").write_text("\n".join(hosts) + "\n")
        (folder / "hostname").write_text(hostname + "\n")
        files = {
            f"/etc/{name}": str(folder / name) for name in ("resolv.conf", "hosts", "hostname")
        }
        if self.token:
            token = folder / "token"
            token.touch(mode=0o600)
            token.write_text(scoped_token(self.token, task.stack) + "\n")
            files[TOKEN_PATH] = str(token)
        return files

    # --- the node --------------------------------------------------------------------------------

    async def _ensure_bridge(self, network: Network) -> None:
        made = self._made_bridges()
        if network.bridge not in made:
            made[network.bridge] = json.loads(network.model_dump_json())
            self._save_bridges(made)  # first the record, so a crash cannot leak the bridge
        await cni.ensure_bridge(_bridge_net(network))
        if network.gateway not in self.dns.listening():
            try:
                await self.dns.listen(network.gateway, self.dns_port)
            except ShoalError as exc:
                log.warning("DNS cannot listen on %s: %s", network.gateway, exc)
        if network.gateway not in self.relays and self.token:
            try:
                self.relays[network.gateway] = await asyncio.start_server(
                    self._relay, network.gateway, self.api_port
                )
            except OSError as exc:
                log.warning("API relay cannot listen on %s: %s", network.gateway, exc)

    async def sync(self) -> None:
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        needed = {n for nets in self.attached().values() for n in nets}
        made = self._made_bridges()
        for bridge, raw in sorted(made.items()):
            network = Network.model_validate(raw)
            if network.name in needed:
                continue
            if network.gateway in self.dns.listening():
                await self.dns.unlisten(network.gateway)
            relay = self.relays.pop(network.gateway, None)
            if relay is not None:
                relay.close()
            await cni.remove_bridge(_bridge_net(network))
            del made[bridge]
            self._save_bridges(made)
        local = {n: self.networks[n] for n in needed if n in self.networks}
        for network in local.values():
            await self._ensure_bridge(network)
        for network in local.values():
            vips = {e.vips[network.name] for e in self.endpoints.values() if network.name in e.vips}
            await cni.set_vips(network.bridge, vips)
        if local or needed:
            await firewall.apply(
                self._firewall(local), api_ports=(self.api_port,), prefix=self.prefix
            )
            self._rules = True
        elif self._rules:  # nothing of ours runs here any more: leave no rule behind
            await firewall.cleanup(prefix=self.prefix)
            self._rules = False

    def _firewall(self, local: dict[str, Network]) -> firewall.NodeFirewall:
        me = self.node_id()
        nets = tuple(
            firewall.FwNetwork(n.bridge, n.subnet, n.gateway, n.internal) for n in local.values()
        )
        services = []
        published = []
        for record in sorted(self.endpoints.values(), key=lambda e: (e.stack, e.service)):
            ready = [t for t in record.ready if t.node_id == me and t.id not in self.draining]
            vips = tuple(
                (local[n].bridge, vip) for n, vip in sorted(record.vips.items()) if n in local
            )
            if vips:
                backends = tuple(
                    (local[n].bridge, addr)
                    for t in ready
                    for n, addr in t.addresses.items()
                    if n in local
                )
                services.append(
                    firewall.FwService(
                        key=firewall.chain_key(record.stack, record.service),
                        vips=vips,
                        ports=(),
                        backends=backends,
                    )
                )
            if not vips and not any(t.addresses for t in record.tasks):
                continue  # network_mode host: the workload binds the node's port itself
            for port in record.ports:
                addresses = tuple(next(iter(t.addresses.values())) for t in ready if t.addresses)
                published.append(
                    firewall.FwPublished(
                        port.protocol, port.published, port.target, port.host_ip, addresses
                    )
                )
        return firewall.NodeFirewall(nets, tuple(services), tuple(published))

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pipe one container connection to the server, bytes as they are: the server checks
        the (stack-scoped) token, so the relay needs to understand nothing."""
        target = urlsplit(self.client.addr)
        try:
            up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        """On the agent's way out: with no task plumbed here any more, leave no bridge and
        no rule behind (with tasks still running, everything stays for the next agent)."""
        for relay in self.relays.values():
            relay.close()
        self.relays.clear()
        await self.dns.close()
        if not self.attached():
            try:
                await self.sync()
            except ShoalError as exc:
                log.warning("final network cleanup failed: %s", exc)


def _bridge_net(network: Network) -> cni.BridgeNet:
    return cni.BridgeNet(
        name=network.name,
        bridge=network.bridge,
        subnet=network.subnet,
        gateway=network.gateway,
        internal=network.internal,
    )


def _extra_hosts(raw: Any) -> list[tuple[str, str]]:
    """Compose `extra_hosts` (a map host → address or list, or a list of "host:address")."""
    if not raw:
        return []
    if isinstance(raw, dict):
        items = raw.items()
    else:
        items = [entry.replace("=", ":", 1).split(":", 1) for entry in raw]  # type: ignore[assignment]
    out = []
    for host, value in items:
        for address in value if isinstance(value, list) else [value]:
            out.append((str(host), str(address).strip("[]")))
    return out
