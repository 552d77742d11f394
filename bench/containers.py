"""Container benchmark (not a test): shoal's runc runtime, deploy, memory, pull and build, side by
side in one run with bare runc (+CNI), Docker Engine / one-node Swarm and Podman.

    sudo .venv/bin/python bench/containers.py [--runs 12] [--shoal-rounds 3] [--swarm-rounds 2]

1. Start → first HTTP 200 of busybox `httpd -f` (the same rootfs tarball everywhere, its
   /www/index.html in the image), interleaved round by round, one warm-up round not counted:
   shoal's RuncRuntime.create+start (rootfs overlay prepared before the clock starts, timed
   apart), bare `runc run -d` of the same rootfs, `docker run -d`, `podman run -d`; each in the
   host netns (host networking) and with its own netns and a port published on 127.0.0.1
   (CNI bridge+portmap for shoal and runc, the engines' own networking for the peers).
2. `shoal deploy --wait` of one service with 20 replicas (`sleep 300`) → all running, and
   `shoal rm --wait` → no runc containers left; `docker service create --replicas 20` on a
   one-node Swarm → 20 running, `docker service rm` → none.
3. Memory with the 20 containers running: `shoal up` + every conmon; dockerd + containerd + shims.
4. Pull of a 3-layer ~50 MB image (random data, gzip) from docker-registry on 127.0.0.1:
   `shoal image pull`, RegistryClient.pull (+ unpack), `podman pull --tls-verify=false`.
5. Build of examples/busybox, cold and warm: shoal, docker (classic builder), podman.

Every process is stopped by PID; netns, bridges, iptables rules and chains, mounts, runc
containers, cgroups and temp dirs made here are removed in `finally` blocks. One JSON document is
printed on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from peers.common import (
    REPO,
    HostSnapshot,
    busybox_tar,
    free_port,
    pct,
    processes_matching,
    rss_mb,
    run,
    stop_pid,
    summary_ms,
    summary_s,
    umount_all,
    wait_http,
)
from peers.dockerd import Docker
from peers.podman import Podman
from peers.runc_floor import CGROUP_PARENT as FLOOR_CGROUP
from peers.runc_floor import BareRunc, Cni

from shoal.images.content import ContentStore
from shoal.images.image import load_image
from shoal.images.importer import import_rootfs_tar
from shoal.images.manifest import ContainerConfig
from shoal.images.registry import RegistryClient
from shoal.images.rootfs import prepare_rootfs, release_rootfs
from shoal.images.unpack import unpack_image
from shoal.runtime.base import ContainerSpec
from shoal.runtime.runc import RuncRuntime

REF = "busybox:bench"
RT_CGROUP = "shoalbench-rt"
AGENT_CGROUP = "shoal"  # RuncRuntime's default parent, used by `shoal up` and the builder
PY = sys.executable
Unavailable = dict[str, Any]


def unavailable(why: str) -> Unavailable:
    return {"available": False, "why": why}


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    if not a or not b or not a.get(key) or not b.get(key):
        return None
    return round(a[key] / b[key], 2)


# -- 1. start → first HTTP 200 ---------------------------------------------------------------


class StartBench:
    """One function per variant; each returns seconds to first 200 (+ extras) and cleans up."""

    def __init__(
        self, tmp: Path, store: ContentStore, docker: Docker | None, podman: Podman | None
    ):
        self.tmp, self.store = tmp, store
        self.loop = asyncio.new_event_loop()
        self.rt = RuncRuntime(tmp / "rt", cgroup_parent=RT_CGROUP)
        self.floor = BareRunc(tmp / "floor")
        self.cni = Cni(tmp / "cni")
        self.docker, self.podman = docker, podman
        self.extra: dict[str, dict[str, list[float]]] = {}

    def _note(self, variant: str, key: str, seconds: float) -> None:
        self.extra.setdefault(variant, {}).setdefault(key, []).append(seconds)

    def _rootfs(self, variant: str, cid: str) -> tuple[Path, Path]:
        directory = self.tmp / "rootfs" / cid
        began = time.perf_counter()
        rootfs = prepare_rootfs(self.store, REF, directory)
        self._note(variant, "prepare_rootfs", time.perf_counter() - began)
        return directory, rootfs

    def _attach(self, cid: str, port: int) -> Any:
        ports = [{"hostPort": port, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]
        return self.cni.attach(f"shb-{cid}", ports)

    def shoal(self, variant: str, cid: str, cni: bool) -> float:
        directory, rootfs = self._rootfs(variant, cid)
        port, att, created = free_port(), None, False
        try:
            began = time.perf_counter()
            if cni:
                att = self._attach(cid, port)
                netns, listen = att.path, "80"
                self._note(variant, "netns_cni_add", time.perf_counter() - began)
            else:
                netns, listen = f"/proc/{os.getpid()}/ns/net", f"127.0.0.1:{port}"
            spec = ContainerSpec(
                id=cid,
                name=cid,
                command=["/bin/httpd", "-f", "-p", listen, "-h", "/www"],
                env={"PATH": "/bin"},
                rootfs=str(rootfs),
                netns=netns,
                stop_grace_period=2,
            )
            t0 = time.perf_counter()
            self.loop.run_until_complete(self.rt.create(spec))
            created = True
            t1 = time.perf_counter()
            state = self.loop.run_until_complete(self.rt.start(cid))
            t2 = time.perf_counter()
            if state.status != "running":
                raise RuntimeError(f"shoal container {cid}: {state.status} {state.error}")
            done = wait_http(port)
            self._note(variant, "create", t1 - t0)
            self._note(variant, "start", t2 - t1)
            self._note(variant, "start_to_200", done - t2)
            return done - began
        finally:
            t = time.perf_counter()
            if created:
                self.loop.run_until_complete(self.rt.remove(cid))
            if att is not None:
                self.cni.detach(att)
            self._note(variant, "teardown", time.perf_counter() - t)
            release_rootfs(directory)
            shutil.rmtree(directory, ignore_errors=True)

    def bare(self, variant: str, cid: str, cni: bool) -> float:
        directory, rootfs = self._rootfs(variant, cid)
        port, att, started = free_port(), None, False
        try:
            began = time.perf_counter()
            if cni:
                att = self._attach(cid, port)
                netns, listen = att.path, "80"
                self._note(variant, "netns_cni_add", time.perf_counter() - began)
            else:
                netns, listen = None, f"127.0.0.1:{port}"
            config = self.floor.config(
                cid, rootfs, ["/bin/httpd", "-f", "-p", listen, "-h", "/www"], netns
            )
            t0 = time.perf_counter()
            started = True
            self.floor.start(cid, config)
            t1 = time.perf_counter()
            done = wait_http(port)
            self._note(variant, "runc_run", t1 - t0)
            self._note(variant, "start_to_200", done - t1)
            return done - began
        finally:
            t = time.perf_counter()
            if started:
                self.floor.remove(cid)
            if att is not None:
                self.cni.detach(att)
            self._note(variant, "teardown", time.perf_counter() - t)
            release_rootfs(directory)
            shutil.rmtree(directory, ignore_errors=True)

    def engine(self, engine: Docker | Podman, variant: str, cid: str, host_net: bool) -> float:
        try:
            return engine.run_http(cid, REF, host_net=host_net, port=free_port())
        finally:
            t = time.perf_counter()
            engine.rm(cid)
            self._note(variant, "teardown", time.perf_counter() - t)

    def run(self, runs: int) -> dict[str, Any]:
        variants: dict[str, Callable[[str], float]] = {
            "shoal_runc_host_netns": lambda c: self.shoal("shoal_runc_host_netns", c, False),
            "shoal_runc_cni": lambda c: self.shoal("shoal_runc_cni", c, True),
            "bare_runc_host_netns": lambda c: self.bare("bare_runc_host_netns", c, False),
            "bare_runc_cni": lambda c: self.bare("bare_runc_cni", c, True),
        }
        out: dict[str, Any] = {}
        for name, engine in (("docker", self.docker), ("podman", self.podman)):
            if engine is None:
                continue
            for mode, host in (("host_net", True), ("publish", False)):
                key = f"{name}_{mode}"
                variants[key] = lambda c, e=engine, k=key, h=host: self.engine(e, k, c, h)
        times: dict[str, list[float]] = {k: [] for k in variants}
        failed: dict[str, str] = {}
        for i in range(runs + 1):  # round 0 is a warm-up
            for key, fn in variants.items():
                if key in failed:
                    continue
                try:
                    took = fn(f"shb-{i}-{key.replace('_', '')[:20]}")
                except Exception as exc:
                    failed[key] = f"{type(exc).__name__}: {exc}"[:600]
                    continue
                if i > 0:
                    times[key].append(took)
        for key in variants:
            if key in failed:
                out[key] = unavailable(failed[key])
                continue
            entry: dict[str, Any] = {"start_to_200": summary_ms(times[key])}
            for part, values in self.extra.get(key, {}).items():
                entry[part + "_median_ms"] = round(pct(values[1:] or values, 50) * 1000, 1)
            out[key] = entry
        med = {k: v["start_to_200"] for k, v in out.items() if "start_to_200" in v}
        out["ratios_median"] = {
            "shoal_host_vs_bare_host": ratio(
                med.get("shoal_runc_host_netns"), med.get("bare_runc_host_netns"), "median_ms"
            ),
            "shoal_cni_vs_floor_bare_cni": ratio(
                med.get("shoal_runc_cni"), med.get("bare_runc_cni"), "median_ms"
            ),
            "shoal_cni_vs_docker_publish": ratio(
                med.get("shoal_runc_cni"), med.get("docker_publish"), "median_ms"
            ),
            "shoal_cni_vs_podman_publish": ratio(
                med.get("shoal_runc_cni"), med.get("podman_publish"), "median_ms"
            ),
            "shoal_host_vs_docker_host": ratio(
                med.get("shoal_runc_host_netns"), med.get("docker_host_net"), "median_ms"
            ),
            "shoal_host_vs_podman_host": ratio(
                med.get("shoal_runc_host_netns"), med.get("podman_host_net"), "median_ms"
            ),
        }
        out["leftover_runc_containers"] = self.floor.leftovers() + [
            s.id for s in self.loop.run_until_complete(self.rt.list())
        ]
        out["notes"] = (
            "clock starts before netns+CNI ADD (cni variants) or before create/runc run/docker "
            "run; stops at the first HTTP 200 polled every 2 ms. shoal and bare runc get the same "
            "overlay rootfs, prepared before the clock starts (prepare_rootfs_median_ms). shoal "
            "runs tini as init and a seccomp profile (its defaults); bare runc runs httpd "
            "directly with `runc spec` defaults. docker/podman publish: -p 127.0.0.1:H:80."
        )
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            for state in self.loop.run_until_complete(self.rt.list()):
                self.loop.run_until_complete(self.rt.remove(state.id))
        for cid in self.floor.leftovers():
            self.floor.remove(cid)
        self.loop.close()


# -- 2./3. shoal up, deploy of 20 replicas, memory ------------------------------------------------


class ShoalUp:
    def __init__(self, data_dir: Path) -> None:
        self.data = data_dir
        self.port, self.agent_port = free_port(), free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "SHOAL_ADDR": self.addr, "SHOAL_DATA_DIR": str(data_dir)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        self.data.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        with open(self.data.parent / "shoal-up.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(PY, "-m", "shoal", "up", "--data-dir", str(self.data)),
                    *("--listen", self.addr, "--agent-listen", f"127.0.0.1:{self.agent_port}"),
                    *("--runtime", "runc"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=self.env,
            )
        deadline = time.monotonic() + 60
        with httpx.Client() as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"shoal up exited {self.proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(f"http://{self.addr}/v1/health").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("shoal up not healthy after 60 s")
                time.sleep(0.05)
        time.sleep(1.0)  # let the agent register with the server
        return time.perf_counter() - began

    def cli(self, *args: str, timeout: float = 300) -> float:
        began = time.perf_counter()
        run([PY, "-m", "shoal", *args], env=self.env, timeout=timeout)
        return time.perf_counter() - began

    @property
    def runc_root(self) -> Path:
        return self.data / "agent" / "runc" / ".runc"

    def runc_list(self) -> list[dict[str, Any]]:
        if not self.runc_root.exists():
            return []
        out = run(["runc", "--root", str(self.runc_root), "list", "--format", "json"], check=False)
        return json.loads(out or "null") or []

    def memory(self) -> dict[str, Any]:
        assert self.proc is not None
        own = [p for p in (self.proc.pid,) if Path(f"/proc/{p}").exists()]
        conmons = processes_matching("conmon", str(self.data))
        up = sum(rss_mb(p) for p in own)
        mons = sum(rss_mb(p) for p in conmons)
        return {
            "shoal_up_mb": round(up, 1),
            "conmons": len(conmons),
            "conmons_mb": round(mons, 1),
            "total_mb": round(up + mons, 1),
        }

    def stop(self) -> list[str]:
        """SIGTERM `shoal up` (by PID), then remove whatever containers it left running."""
        notes: list[str] = []
        if self.proc is not None:
            stop_pid(self.proc, 20)
        for c in self.runc_list():
            cid = c["id"]
            base = ["runc", "--root", str(self.runc_root)]
            run([*base, "kill", cid, "KILL"], check=False)
            time.sleep(0.1)
            run([*base, "delete", "--force", cid], check=False)
            notes.append(f"runc container {cid}")
        time.sleep(0.3)
        for pid in processes_matching("conmon", str(self.data)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                notes.append(f"conmon {pid}")
        notes += [f"mount {m}" for m in umount_all(str(self.data))]
        return notes


def runc_created(container: dict[str, Any]) -> float:
    """`runc list`'s created time (RFC 3339 with nanoseconds) as Unix seconds."""
    found = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-].*)$", container["created"])
    if not found:
        return 0.0
    base, frac, zone = found.groups()
    stamp = datetime.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return stamp.timestamp() + float(frac or 0)


def write_compose(path: Path, replicas: int, monitor: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "services:\n"
        "  sleeper:\n"
        f"    image: {REF}\n"
        '    command: ["sleep", "300"]\n'
        "    deploy:\n"
        f"      replicas: {replicas}\n"
        + (f"      update_config:\n        monitor: {monitor}\n" if monitor else "")
    )
    return path


def shoal_deploy(tmp: Path, tar: Path, rounds: int, replicas: int) -> dict[str, Any]:
    up = ShoalUp(tmp / "shoal-data")
    out: dict[str, Any] = {}
    store = ContentStore(up.data / "agent" / "images")
    import_rootfs_tar(store, tar, REF, ContainerConfig(Cmd=["sh"]))
    compose = write_compose(tmp / "compose" / "compose.yaml", replicas)
    fast_compose = write_compose(tmp / "compose-fast" / "compose.yaml", replicas, monitor="0s")
    try:
        out["up_ready_s"] = round(up.start(), 2)
        out["idle_memory"] = up.memory()
        deploys, to_running, removals, gone, spread = [], [], [], [], []
        fast: dict[str, Any] = {}
        for i in range(rounds + 1):  # the last round: `update_config.monitor: 0s`
            last = i == rounds
            stack = f"bench{i}"
            wall = time.time()
            began = time.perf_counter()
            file = str(fast_compose if last else compose)
            deploy = subprocess.Popen(
                [PY, "-m", "shoal", "deploy", "-f", file, "-n", stack, "--wait"],
                env=up.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                running: list[dict[str, Any]] = []
                while len(running) < replicas and deploy.poll() in (None, 0):
                    running = [c for c in up.runc_list() if c.get("status") == "running"]
                    if time.perf_counter() - began > 120:
                        raise RuntimeError(f"{len(running)} of {replicas} running after 120 s")
                    time.sleep(0.01)
                all_running = time.perf_counter() - began
                if deploy.wait(120) != 0:
                    raise RuntimeError(f"shoal deploy --wait exited {deploy.returncode}")
                waited = time.perf_counter() - began
            finally:
                stop_pid(deploy, 5)
            running = [c for c in up.runc_list() if c.get("status") == "running"]
            if len(running) != replicas:
                raise RuntimeError(f"after deploy --wait: {len(running)} running, not {replicas}")
            created = sorted(runc_created(c) - wall for c in running)
            if last:
                fast = {"deploy_wait_s": round(waited, 2), "all_running_s": round(all_running, 2)}
            else:
                deploys.append(waited)
                to_running.append(all_running)
                spread.append({"first_s": round(created[0], 2), "last_s": round(created[-1], 2)})
            if i == 0:
                time.sleep(2)
                out["memory_20_running"] = up.memory()
            began = time.perf_counter()
            up.cli("rm", stack, "--wait")
            removals.append(time.perf_counter() - began)
            while up.runc_list():
                if time.perf_counter() - began > 120:
                    raise RuntimeError("runc containers left 120 s after shoal rm")
                time.sleep(0.02)
            gone.append(time.perf_counter() - began)
        out["deploy_to_all_running"] = summary_s(to_running)
        out["deploy_wait_returns"] = summary_s(deploys)
        out["deploy_wait_with_monitor_0s"] = fast
        out["runc_created_after_deploy_began"] = spread
        out["rm_wait"] = summary_s(removals)
        out["rm_to_no_containers"] = summary_s(gone)
        began = time.perf_counter()
        run([PY, "-m", "shoal", "--help"])
        out["cli_startup_s"] = round(time.perf_counter() - began, 2)
        out["notes"] = (
            f"{replicas} x `sleep 300` (busybox). deploy_to_all_running: from launching `shoal "
            "deploy --wait` to `runc list` showing all running (polled every ~10 ms), the "
            "measure comparable with Swarm's; deploy_wait_returns: until the CLI returns, which "
            "includes the 3 s stability window (update_config.monitor, like Swarm's monitor); "
            "the last round sets monitor: 0s. No networking needed (own empty netns)."
        )
    except Exception as exc:
        out.update(error=f"{type(exc).__name__}: {exc}"[:800])
        with contextlib.suppress(OSError):
            out["log_tail"] = (tmp / "shoal-up.log").read_text(errors="replace")[-1500:]
    finally:
        out["cleanup"] = up.stop()
    return out


def swarm_deploy(docker: Docker, rounds: int, replicas: int) -> dict[str, Any]:
    out: dict[str, Any] = {"available": True, "engine": docker.version}
    try:
        out["swarm_init_s"] = round(docker.swarm_init(), 2)
        time.sleep(2)
        cycles = []
        for i in range(rounds):
            cycles.append(docker.service_cycle(f"bench{i}", REF, replicas, init=i % 2 == 1))
        out["cycles"] = cycles
        out["create_to_running"] = summary_s([c["create_to_running_s"] for c in cycles])
        out["rm_to_none"] = summary_s([c["rm_to_none_s"] for c in cycles])
        out["memory_20_running"] = cycles[0]["memory"] if cycles else None
        out["notes"] = (
            "`docker service create --detach --replicas 20 busybox:bench sleep 300` (odd rounds "
            "with --init), polled through /containers/json every 50 ms; without --init, sleep is "
            "PID 1 and ignores SIGTERM, so `service rm` waits the 10 s grace period"
        )
    except Exception as exc:
        out.update(available=False, why=f"{type(exc).__name__}: {exc}"[:800])
    return out


# -- 4. pull ---------------------------------------------------------------------------------


def make_big_image(store: ContentStore, ref: str, layer_mb: float = 16.7) -> dict[str, Any]:
    """Three tar+gzip layers of random bytes (gzip -1, so they do not shrink) + config."""
    layers, diff_ids = [], []
    for n in range(3):
        raw = io.BytesIO()
        data = os.urandom(int(layer_mb * 1024 * 1024))
        with tarfile.open(fileobj=raw, mode="w") as archive:
            info = tarfile.TarInfo(f"data/layer{n}.bin")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
        tar_bytes = raw.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
        blob = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
        layers.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": store.write_blob_bytes(blob),
                "size": len(blob),
            }
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {"Cmd": ["/bin/sh"]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": store.write_blob_bytes(config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    store.set_tag(ref, store.write_blob_bytes(manifest))
    return {"layers": 3, "bytes": sum(la["size"] for la in layers) + len(config)}


def pull_bench(tmp: Path, podman: Podman | None, runs: int) -> dict[str, Any]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.images.registry_server import RegistryServer

    out: dict[str, Any] = {}
    with RegistryServer() as registry:
        ref = f"{registry.host}/bench/big:v1"
        src = ContentStore(tmp / "pull-src")
        image = make_big_image(src, ref)
        mb = image["bytes"] / 1e6
        out["image"] = {**image, "mb": round(mb, 1), "registry": "docker-registry on 127.0.0.1"}

        async def push() -> float:
            async with RegistryClient() as client:
                began = time.perf_counter()
                await client.push(ref, src)
                return time.perf_counter() - began

        out["shoal_push_s"] = round(asyncio.run(push()), 2)
        shutil.rmtree(tmp / "pull-src", ignore_errors=True)

        cli, api, unpack = [], [], []
        for i in range(runs):
            root = tmp / f"pull-cli-{i}"
            began = time.perf_counter()
            run([PY, "-m", "shoal", "image", "pull", "--root", str(root), ref])
            cli.append(time.perf_counter() - began)
            shutil.rmtree(root, ignore_errors=True)

            root = tmp / f"pull-api-{i}"
            store = ContentStore(root)

            async def pull(store: ContentStore = store) -> float:
                async with RegistryClient() as client:
                    began = time.perf_counter()
                    await client.pull(ref, store)
                    return time.perf_counter() - began

            api.append(asyncio.run(pull()))
            began = time.perf_counter()
            loaded = load_image(store, ref)
            unpack_image(store, loaded.manifest, loaded.config)
            unpack.append(time.perf_counter() - began)
            shutil.rmtree(root, ignore_errors=True)

        def rate(times: list[float]) -> dict[str, Any]:
            return {**summary_s(times), "mb_per_s": round(mb / pct(times, 50), 1)}

        out["shoal_cli_pull"] = rate(cli)
        out["shoal_api_pull"] = rate(api)
        out["shoal_unpack"] = summary_s(unpack)
        both = [a + u for a, u in zip(api, unpack, strict=True)]
        out["shoal_api_pull_plus_unpack"] = rate(both)
        if podman is None:
            out["podman"] = unavailable("podman not available (see start_to_200)")
        else:
            try:
                times = []
                for _ in range(runs):
                    podman.rmi(ref)
                    times.append(podman.pull(ref))
                podman.rmi(ref)
                out["podman_pull"] = {**rate(times), "includes": "download + unpack to overlay"}
            except Exception as exc:
                out["podman_pull"] = unavailable(f"{type(exc).__name__}: {exc}"[:600])
        out["ratios_mb_per_s"] = {
            "shoal_cli_vs_podman": ratio(out["shoal_cli_pull"], out.get("podman_pull"), "mb_per_s"),
            "shoal_pull_plus_unpack_vs_podman": ratio(
                out["shoal_api_pull_plus_unpack"], out.get("podman_pull"), "mb_per_s"
            ),
        }
    return out


# -- 5. build --------------------------------------------------------------------------------


def build_bench(tmp: Path, docker: Docker | None, podman: Podman | None, runs: int) -> Any:
    context = tmp / "build-ctx"
    shutil.copytree(REPO / "examples" / "busybox", context)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", context / "busybox")
    out: dict[str, Any] = {"context": "examples/busybox (+ /bin/busybox)"}
    tag = "bench/example:v1"

    def shoal_build(root: Path) -> float:
        began = time.perf_counter()
        run([PY, "-m", "shoal", "image", "build", "-t", tag, "--root", str(root), str(context)])
        return time.perf_counter() - began

    cold = []
    for i in range(runs):
        root = tmp / f"build-{i}"
        cold.append(shoal_build(root))
        if i < runs - 1:
            umount_all(str(root))
            shutil.rmtree(root, ignore_errors=True)
    warm = [shoal_build(tmp / f"build-{runs - 1}") for _ in range(runs)]
    out["shoal"] = {"cold": summary_s(cold), "warm": summary_s(warm), "cold_is": "fresh store"}
    for name, engine in (("docker", docker), ("podman", podman)):
        if engine is None:
            out[name] = unavailable(f"{name} not available (see start_to_200)")
            continue
        try:
            c = [engine.build(context, tag, no_cache=True) for _ in range(runs)]
            w = [engine.build(context, tag, no_cache=False) for _ in range(runs)]
            out[name] = {"cold": summary_s(c), "warm": summary_s(w), "cold_is": "--no-cache"}
        except Exception as exc:
            out[name] = unavailable(f"{type(exc).__name__}: {exc}"[:600])
    ratios: dict[str, float | None] = {}
    for name in ("docker", "podman"):
        for kind in ("cold", "warm"):
            peer = out[name].get(kind) if out[name].get("available", True) else None
            ratios[f"shoal_{kind}_vs_{name}"] = ratio(out["shoal"][kind], peer, "median_s")
    out["ratios_median"] = ratios
    out["notes"] = "wall-clock of each CLI; docker: classic builder (DOCKER_BUILDKIT=0); " + (
        "peers with --network none"
    )
    return out


# -- main ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "")
        if hasattr(platform, "freedesktop_os_release")
        else "",
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_mb": mem,
        "python": platform.python_version(),
        "runc": run(["runc", "--version"], check=False).splitlines()[0:1],
    }


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "containers",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "networking": {
            "shoal": "no networking yet: host netns (network_mode: host equivalent) or a netns "
            "the benchmark wires with CNI bridge+portmap (snat) publishing 127.0.0.1:H -> 80",
            "bare_runc": "the same two modes (the CNI one is the floor)",
            "docker_podman": "--network host, and their own bridge with -p 127.0.0.1:H:80",
        },
    }
    peers: dict[str, Any] = {}
    docker: Docker | None = None
    podman: Podman | None = None
    tar = busybox_tar(tmp / "busybox.tar")
    store = ContentStore(tmp / "store")
    import_rootfs_tar(store, tar, REF, ContainerConfig(Cmd=["sh"]))
    try:
        if (why := Docker.missing()) is not None:
            peers["docker"] = unavailable(why)
        else:
            docker = Docker(tmp / "dk")
            try:
                ready = docker.start()
                docker.import_image(tar, REF)
                peers["docker"] = {
                    "available": True,
                    "engine": docker.version,
                    "dockerd_ready_s": round(ready, 2),
                }
            except Exception as exc:
                peers["docker"] = unavailable(f"{type(exc).__name__}: {exc}"[:600])
                docker = None
        if (why := Podman.missing()) is not None:
            peers["podman"] = unavailable(why)
        else:
            podman = Podman(tmp / "pm")
            try:
                podman.start()
                podman.import_image(tar, REF)
                peers["podman"] = {"available": True, "version": podman.version}
            except Exception as exc:
                peers["podman"] = unavailable(f"{type(exc).__name__}: {exc}"[:600])
                podman = None
        result["peers"] = peers

        starts = StartBench(tmp, store, docker, podman)
        try:
            result["start_to_200"] = starts.run(args.runs)
        finally:
            starts.close()

        result["deploy_20"] = {"shoal": shoal_deploy(tmp, tar, args.shoal_rounds, 20)}
        if docker is not None:
            result["deploy_20"]["swarm"] = swarm_deploy(docker, args.swarm_rounds, 20)
        else:
            result["deploy_20"]["swarm"] = peers["docker"]
        d = result["deploy_20"]
        sh, sw = d["shoal"], d["swarm"]
        d["ratios_median"] = {
            "deploy_vs_swarm_create": ratio(
                sh.get("deploy_to_all_running"), sw.get("create_to_running"), "median_s"
            ),
            "rm_vs_swarm_rm": ratio(
                sh.get("rm_to_no_containers"), sw.get("rm_to_none"), "median_s"
            ),
        }
        result["memory_20_running"] = {
            "shoal": sh.get("memory_20_running"),
            "swarm": sw.get("memory_20_running"),
            "goal_mb": 150,
        }
        result["build"] = build_bench(tmp, docker, podman, args.build_runs)
        if docker is not None:
            docker.stop()
            docker = None
        result["pull"] = pull_bench(tmp, podman, args.pull_runs)
    finally:
        if docker is not None:
            docker.stop()
        if podman is not None:
            podman.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=12, help="start→200 runs per variant")
    parser.add_argument("--shoal-rounds", type=int, default=3)
    parser.add_argument("--swarm-rounds", type=int, default=2)
    parser.add_argument("--pull-runs", type=int, default=3)
    parser.add_argument("--build-runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/containers.py needs root (runc, netns, iptables)")
    signal.signal(signal.SIGTERM, lambda signo, _: sys.exit(128 + signo))
    tmp = Path(tempfile.mkdtemp(prefix="shb-", dir="/tmp"))
    snapshot = HostSnapshot(str(tmp), [RT_CGROUP, FLOOR_CGROUP, AGENT_CGROUP])
    result: dict[str, Any] = {}
    try:
        result = bench(args, tmp)
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            result["host_cleanup"] = snapshot.restore()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
