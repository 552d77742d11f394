"""Docker's command/entrypoint/env rules for a task over its image's config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shoal.agent.containers import argv, container_spec, environment
from shoal.model.cluster import Task
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Invalid


@dataclass
class Img:
    Entrypoint: list[str] | None = None
    Cmd: list[str] | None = None
    Env: list[str] | None = None
    WorkingDir: str | None = None
    User: str | None = None
    StopSignal: str | None = None


def task(**spec: Any) -> Task:
    s = ServiceSpec.model_validate({"image": "x", **spec})
    return Task(id="t1", stack="s", service="web", service_id="x", slot=1, spec_version=1, spec=s)


IMG = Img(Entrypoint=["/entry"], Cmd=["serve", "--port", "80"], Env=["A=1", "PATH=/bin"])


@pytest.mark.parametrize(
    ("spec", "image", "expected"),
    [
        ({}, IMG, ["/entry", "serve", "--port", "80"]),
        ({"command": ["run"]}, IMG, ["/entry", "run"]),
        ({"entrypoint": ["/other"]}, IMG, ["/other"]),  # image CMD dropped with its entrypoint
        ({"entrypoint": ["/other"], "command": ["x"]}, IMG, ["/other", "x"]),
        ({"entrypoint": []}, IMG, []),
        ({"command": []}, IMG, ["/entry"]),
        ({"command": ["sleep", "1"]}, None, ["sleep", "1"]),
        ({}, Img(Cmd=["sh"]), ["sh"]),
    ],
)
def test_argv_follows_docker(spec: dict[str, Any], image: Img | None, expected: list[str]) -> None:
    assert argv(task(**spec), image) == expected


def test_environment_overlays_image_env() -> None:
    env = environment(task(environment={"A": "2", "B": None, "C": "3"}), IMG)
    assert env == {"A": "2", "C": "3", "PATH": "/bin"}
    assert environment(task(), Img())["PATH"].startswith("/usr/local/sbin")
    assert "PATH" not in environment(task(), None)  # host processes keep their own PATH


def test_defaults_from_image_and_nothing_to_run(tmp_path: Path) -> None:
    image = Img(Cmd=["sh"], WorkingDir="/srv", User="nobody", StopSignal="SIGQUIT")
    spec = container_spec(task(), tmp_path, image)
    assert (spec.working_dir, spec.user, spec.stop_signal) == ("/srv", "nobody", "SIGQUIT")
    overridden = container_spec(task(working_dir="/app", stop_signal="SIGINT"), tmp_path, image)
    assert (overridden.working_dir, overridden.stop_signal) == ("/app", "SIGINT")
    with pytest.raises(Invalid, match="nothing to run"):
        container_spec(task(), tmp_path, Img())
