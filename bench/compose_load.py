"""Benchmark: load every awesome-compose file through the whole loader; import time of shoal.

Goal (issue 2): the whole 39-file corpus in under 0.3 s in one process after import, and
`shoal --help` under 0.25 s wall. Peer: `docker compose config` when a docker CLI with the compose
plugin is present (it needs no engine); otherwise reported as unavailable.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = (REPO / ".." / "shared" / "compose-corpus" / "awesome").resolve()


def _shoal_help_wall(runs: int = 10) -> float:
    exe = Path(sys.executable).with_name("shoal")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _import_time() -> float:
    code = (
        "import time; t=time.perf_counter(); import shoal.compose.loader; "
        "print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


def _sample_env() -> dict[str, str]:
    """The variables the samples' own .env files set (not shipped in the corpus)."""
    sys.path.insert(0, str(REPO))
    from shoal.compose.dotenv import parse_dotenv
    from tests.corpus import SAMPLE_DOTENV

    env: dict[str, str] = {"PATH": os.environ.get("PATH", "")}
    for text in SAMPLE_DOTENV.values():
        env.update({k: v for k, v in parse_dotenv(text).items() if v is not None})
    return env


def _load_all(files: list[Path]) -> float:
    from shoal.compose.loader import LoadOptions, load_project

    env = _sample_env()
    t0 = time.perf_counter()
    for f in files:
        load_project(LoadOptions(files=[f], project_name=f.stem.lower(), environ=env))
    return time.perf_counter() - t0


def _peer_command() -> tuple[str, list[str]] | None:
    """`docker compose` (v2 plugin) if present, else Debian's `docker-compose` (v1, Python)."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return "docker compose (v2)", [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return "docker-compose (v1, Debian package)", [legacy]
    return None


def _peer_config(cmd: list[str], files: list[Path]) -> float:
    """Wall time for the peer to validate every file, one process per file as a user would."""
    t0 = time.perf_counter()
    for f in files:
        subprocess.run([*cmd, "-f", str(f), "-p", "bench", "config", "-q"], capture_output=True)
    return time.perf_counter() - t0


def _shoal_config(files: list[Path]) -> float:
    """The same, with `shoal config -q` (one process per file, import included)."""
    exe = Path(sys.executable).with_name("shoal")
    t0 = time.perf_counter()
    for f in files:
        subprocess.run([str(exe), "config", "-q", "-f", str(f), "-n", "bench"], capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    files = sorted(CORPUS.glob("*.yaml"))
    import shoal.compose.loader  # noqa: F401  (measure after import)

    _load_all(files)  # warm caches (schema, validators)
    runs = [_load_all(files) for _ in range(5)]
    best, median = min(runs), statistics.median(runs)
    peer = _peer_command()
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, "
        f"Python {platform.python_version()}",
        "files": len(files),
        "corpus_seconds_median": round(median, 4),
        "corpus_seconds_best": round(best, 4),
        "files_per_second": round(len(files) / median, 1),
        "import_seconds": round(_import_time(), 4),
        "shoal_help_wall_seconds": round(_shoal_help_wall(), 4),
    }
    shoal_cli = _shoal_config(files)
    result["shoal_config_cli_seconds"] = round(shoal_cli, 3)
    if peer is not None:
        peer_s = _peer_config(peer[1], files)
        result["peer"] = peer[0]
        result["peer_config_cli_seconds"] = round(peer_s, 3)
        result["ratio_peer_over_shoal_cli"] = round(peer_s / shoal_cli, 2)
    else:
        result["peer"] = "none available (no docker compose plugin, no docker-compose)"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
