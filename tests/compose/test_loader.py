"""The whole loader pipeline on small hand-written projects (NOTES.md expectations + the spec)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal.model.errors import ComposeError
from tests.compose.conftest import Loader


def svc(loaded: Any, name: str = "web") -> dict[str, Any]:
    result: dict[str, Any] = loaded.document["services"][name]
    return result


def error_of(load: Loader, *texts: str, **kw: Any) -> ComposeError:
    with pytest.raises(ComposeError) as info:
        load(*texts, **kw)
    return info.value


# --- normalisation -------------------------------------------------------------------------


def test_default_network_and_prefixed_names(load: Loader) -> None:
    loaded = load(
        """
services:
  web: {image: nginx}
  db:
    image: postgres
    networks: [back]
networks:
  back: {}
  named: {name: CustomName}
  ext: {external: true}
volumes:
  data: {}
"""
    )
    doc = loaded.document
    assert svc(loaded)["networks"] == {"default": None}
    assert svc(loaded, "db")["networks"] == {"back": None}
    assert doc["networks"]["default"]["name"] == "proj_default"
    assert doc["networks"]["back"]["name"] == "proj_back"
    assert doc["networks"]["named"]["name"] == "CustomName"
    assert doc["networks"]["ext"]["name"] == "ext"
    assert doc["volumes"]["data"]["name"] == "proj_data"


def test_network_mode_service_gets_no_default_network(load: Loader) -> None:
    loaded = load("services:\n  a: {image: x}\n  web: {image: y, network_mode: 'service:a'}\n")
    assert "networks" not in svc(loaded)
    assert svc(loaded)["depends_on"]["a"] == {
        "condition": "service_started",
        "required": True,
        "restart": True,
    }


def test_implicit_dependencies(load: Loader) -> None:
    loaded = load(
        """
services:
  web:
    image: x
    links: [db]
    volumes_from: [data, "container:xyz"]
    ipc: "service:shm"
  db: {image: x}
  data: {image: x}
  shm: {image: x}
"""
    )
    deps = svc(loaded)["depends_on"]
    assert deps["db"]["restart"] is True
    assert deps["data"]["restart"] is False
    assert deps["shm"]["restart"] is True
    assert set(deps) == {"db", "data", "shm"}


def test_build_defaults_and_args_from_env(load: Loader, tmp_path: Path) -> None:
    loaded = load(
        "services:\n  web:\n    build:\n      args: {FOO: null, ZOT: null, X: y}\n",
        env={"FOO": "BAR"},
    )
    build = svc(loaded)["build"]
    assert build["context"] == str(tmp_path)
    assert build["dockerfile"] == "Dockerfile"
    assert build["args"] == {"FOO": "BAR", "X": "y"}


def test_build_short_form_and_paths_resolved(load: Loader, tmp_path: Path) -> None:
    loaded = load(
        "services:\n  web:\n    build: ./app\n    volumes: ['./data:/data', 'v:/v']\n"
        "volumes: {v: {}}\n"
    )
    assert svc(loaded)["build"]["context"] == str(tmp_path / "app")
    vols = svc(loaded)["volumes"]
    assert vols[0]["type"] == "bind" and vols[0]["source"] == str(tmp_path / "data")
    assert vols[1]["type"] == "volume" and vols[1]["source"] == "v"


# --- environment and interpolation -----------------------------------------------------------


def test_environment_map_and_list_agree(load: Loader) -> None:
    expected = {"FOO": "1", "BAR": "2", "GA": "2.5", "BU": "", "MEU": "Shadoks", "ZO": None}
    as_map = load(
        "services:\n  web:\n    image: x\n    environment: "
        "{FOO: '1', BAR: 2, GA: 2.5, BU: '', ZO: null, MEU: null}\n",
        env={"MEU": "Shadoks"},
    )
    as_list = load(
        "services:\n  web:\n    image: x\n    environment: [FOO=1, BAR=2, GA=2.5, BU=, ZO, MEU]\n",
        env={"MEU": "Shadoks"},
    )
    assert svc(as_map)["environment"] == expected
    assert svc(as_list)["environment"] == expected


def test_interpolation_in_file(load: Loader) -> None:
    loaded = load(
        """
# a comment with ${NOT_A_VAR:?x} must not matter
services:
  web:
    image: "busybox:${TAG:-latest}"
    environment:
      home1: $HOME
      home2: ${HOME}
      nonexistent: $NONEXISTENT
      default: ${NONEXISTENT-default}
      escaped: $$HOME
""",
        env={"HOME": "/home/foo"},
    )
    env = svc(loaded)["environment"]
    assert svc(loaded)["image"] == "busybox:latest"
    assert env == {
        "home1": "/home/foo",
        "home2": "/home/foo",
        "nonexistent": "",
        "default": "default",
        "escaped": "$HOME",
    }


def test_interpolated_values_are_cast(load: Loader) -> None:
    loaded = load(
        """
services:
  web:
    image: x
    deploy:
      replicas: $theint
      update_config: {max_failure_ratio: $thefloat}
    healthcheck:
      retries: ${theint}
      disable: $thebool
    ports: [$theint]
    shm_size: ${thesize}
    stop_grace_period: ${theduration}
""",
        env={
            "theint": "555",
            "thefloat": "3.14",
            "thebool": "true",
            "theduration": "60s",
            "thesize": "2gb",
        },
    )
    web = loaded.project.services["web"]
    assert web.deploy is not None and web.deploy.replicas == 555
    assert web.deploy.update_config is not None
    assert web.deploy.update_config.max_failure_ratio == 3.14
    assert web.healthcheck is not None and web.healthcheck.retries == 555
    assert web.healthcheck.disable is True
    assert web.shm_size == 2 * 1024**3
    assert web.stop_grace_period is not None and web.stop_grace_period.total_seconds() == 60
    assert web.ports is not None and web.ports[0].target == 555


def test_required_variable_error_names_location(load: Loader) -> None:
    err = error_of(
        load, "services:\n  web:\n    image: x\n    environment:\n      T: ${FOO:?foo}\n"
    )
    assert "required variable FOO is missing a value: foo" in str(err)
    assert err.location is not None and err.location.line == 5
    assert "services.web.environment.T" in str(err)


def test_invalid_template_error(load: Loader) -> None:
    err = error_of(load, "services:\n  web:\n    image: '${'\n")
    assert "invalid interpolation format for services.web.image" in str(err)
    assert "You may need to escape any $ with another $" in str(err)
    assert err.location is not None and err.location.line == 3


def test_dotenv_feeds_interpolation_and_process_env_wins(load: Loader) -> None:
    loaded = load(
        "services:\n  web:\n    image: ${IMAGE}\n    environment:\n      - A=${A}\n",
        files={".env": "IMAGE=nginx # a comment\nA=from-dotenv\n"},
        env={"A": "from-process"},
    )
    assert svc(loaded)["image"] == "nginx"
    assert svc(loaded)["environment"] == {"A": "from-process"}


def test_env_file_folds_into_environment(load: Loader) -> None:
    loaded = load(
        "services:\n  web:\n    image: x\n"
        "    env_file: [a.env, {path: missing.env, required: false}]\n"
        "    environment: {B: override}\n",
        files={"a.env": "A=1\nB=2\n"},
    )
    assert svc(loaded)["environment"] == {"A": "1", "B": "override"}
    assert "env_file" not in svc(loaded)


def test_missing_required_env_file(load: Loader) -> None:
    err = error_of(load, "services:\n  web:\n    image: x\n    env_file: nope.env\n")
    assert "nope.env" in str(err) and "not found" in str(err)


def test_project_name_variable(load: Loader) -> None:
    loaded = load(
        "services:\n  web: {image: x, container_name: '${COMPOSE_PROJECT_NAME}-web'}\n",
        "name: overrided\n",
        name=None,
    )
    assert loaded.project.name == "overrided"
    assert svc(loaded)["container_name"] == "overrided-web"


@pytest.mark.parametrize("bad", ["-my_project", "_my_project", "www.my.project", "MY_PROJECT"])
def test_invalid_project_names(load: Loader, bad: str) -> None:
    err = error_of(load, "services:\n  web: {image: x}\n", name=bad)
    assert f'invalid project name "{bad}"' in str(err)


def test_project_name_from_name_key_with_variable(load: Loader) -> None:
    loaded = load(
        "name: test-${TEST}-test\nservices:\n  web: {image: x}\n",
        name=None,
        env={"TEST": "expected"},
    )
    assert loaded.project.name == "test-expected-test"


def test_name_must_be_a_string(load: Loader) -> None:
    err = error_of(load, "name: 123\nservices:\n  web: {image: x}\n", name=None)
    assert "name must be a string" in str(err)


# --- merging several files, extends, include ---------------------------------------------------


def test_later_document_and_file_win(load: Loader) -> None:
    loaded = load(
        "services:\n  web: {image: nginx}\n---\nservices:\n  web: {image: 'nginx:override'}\n",
        "services:\n  web:\n    ports: ['80:80']\n",
    )
    assert svc(loaded)["image"] == "nginx:override"
    assert svc(loaded)["ports"][0]["published"] == "80"


def test_reset_and_override_across_files(load: Loader) -> None:
    loaded = load(
        "services:\n  web:\n    image: x\n    ports: ['80:80']\n    networks: [a]\n"
        "networks: {a: {}, b: {}}\n",
        "services:\n  web:\n    ports: !reset []\n    networks: !override [b]\n",
    )
    assert svc(loaded).get("ports", []) == []
    assert svc(loaded)["networks"] == {"b": None}


def test_extends_same_file(load: Loader) -> None:
    loaded = load(
        "services:\n  base: {image: busybox, command: echo, volumes: ['/a:/a']}\n"
        "  web:\n    extends: base\n    image: nginx\n    volumes: !reset []\n"
    )
    assert svc(loaded)["image"] == "nginx"
    assert svc(loaded)["command"] == ["echo"]
    assert not svc(loaded).get("volumes")


def test_extends_other_file_resolves_paths_there(load: Loader, tmp_path: Path) -> None:
    loaded = load(
        "services:\n  web:\n    extends: {file: sub/base.yaml, service: base}\n",
        files={
            "sub/base.yaml": "services:\n  base:\n    image: x\n    env_file: extra.env\n"
            "    container_name: ${SOURCE:-imported}\n",
            "sub/extra.env": "SOURCE=fromfile\nK=v\n",
        },
    )
    assert svc(loaded)["environment"] == {"SOURCE": "fromfile", "K": "v"}
    assert svc(loaded)["container_name"] == "imported"


def test_extends_cycle(load: Loader) -> None:
    err = error_of(load, "services:\n  a: {extends: b, image: x}\n  b: {extends: a, image: y}\n")
    assert "circular reference" in str(err)


def test_extends_without_service(load: Loader) -> None:
    err = error_of(load, "services:\n  test:\n    image: x\n    extends: {file: other.yaml}\n")
    assert "service is required" in str(err)


def test_include(load: Loader) -> None:
    loaded = load(
        "include:\n  - path: sub/inc.yaml\n    env_file: sub/extra.env\n"
        "services:\n  web:\n    image: x\n    depends_on: [imported]\n",
        files={
            "sub/inc.yaml": "services:\n  imported:\n    image: y\n"
            "    container_name: ${SOURCE:-none}\n    build: ./ctx\n",
            "sub/extra.env": "SOURCE=extends\n",
        },
    )
    assert svc(loaded, "imported")["container_name"] == "extends"
    assert svc(loaded, "imported")["build"]["context"].endswith("sub/ctx")


def test_include_env_loses_to_process_env(load: Loader) -> None:
    loaded = load(
        "include:\n  - path: sub/inc.yaml\n    env_file: sub/extra.env\n",
        files={
            "sub/inc.yaml": "services:\n  imported:\n    image: y\n"
            "    container_name: ${SOURCE:-none}\n",
            "sub/extra.env": "SOURCE=extends\n",
        },
        env={"SOURCE": "override"},
    )
    assert svc(loaded, "imported")["container_name"] == "override"


def test_include_cycle(load: Loader) -> None:
    err = error_of(
        load,
        "include: [sub/a.yaml]\nservices:\n  web: {image: x}\n",
        files={
            "sub/a.yaml": "include: [b.yaml]\nservices:\n  a: {image: x}\n",
            "sub/b.yaml": "include: [a.yaml]\nservices:\n  b: {image: x}\n",
        },
    )
    assert str(err.message).startswith("include cycle detected")


def test_profiles(load: Loader) -> None:
    text = (
        "services:\n  web: {image: x}\n  debug: {image: y, profiles: [debug]}\n"
        "  tool: {image: z, profiles: [tools, debug]}\n"
    )
    assert set(load(text).document["services"]) == {"web"}
    assert set(load(text, profiles=["debug"]).document["services"]) == {"web", "debug", "tool"}
    assert set(load(text, profiles=["*"]).document["services"]) == {"web", "debug", "tool"}


def test_depends_on_a_disabled_profile(load: Loader) -> None:
    err = error_of(
        load, "services:\n  web: {image: x, depends_on: [db]}\n  db: {image: y, profiles: [x]}\n"
    )
    assert "disabled" in str(err)


# --- errors with locations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("helicopters: 1\n", "additional properties 'helicopters' not allowed", 1),
        ("services:\n  foo:\n    image: [busybox]\n", "services.foo.image must be a string", 3),
        ("services:\n  foo: busybox\n", "services.foo must be a mapping", 2),
        ("services: [foo]\n", "services must be a mapping", 1),
        ("networks:\n  n: 1\n", "networks.n must be", 2),
        (
            "services:\n  foo:\n    image: x\n    environment: 'FOO=1'\n",
            "services.foo.environment must be a mapping",
            4,
        ),
        (
            "services:\n  foo:\n    image: x\n    environment:\n      FOO: ['1']\n",
            "services.foo.environment.FOO must be a boolean, null, number or string",
            5,
        ),
        (
            "services:\n  web:\n    image: x\n    ports:\n      - 80\n      - '80/xyz'\n",
            "Invalid proto: xyz",
            6,
        ),
        (
            "services:\n  web:\n    image: x\n    ports: ['9999999']\n",
            "Invalid containerPort: 9999999",
            4,
        ),
        (
            "services:\n  web:\n    image: x\n    depends_on: [missingservice]\n",
            'service "web" depends on undefined service "missingservice"',
            4,
        ),
        (
            "services:\n  web:\n    image: x\n    networks: [nope]\n",
            'service "web" refers to undefined network nope',
            4,
        ),
        (
            "services:\n  web:\n    image: x\n    volumes: ['myVolume:/data']\n",
            'service "web" refers to undefined volume myVolume',
            4,
        ),
        (
            "services:\n  web:\n    image: x\n    secrets: [foo]\n",
            'service "web" refers to undefined secret foo',
            4,
        ),
        (
            "services:\n  web:\n    build: {}\n    image: x\n    network_mode: host\n"
            "    networks: [a]\nnetworks: {a: {}}\n",
            "declares mutually exclusive `network_mode` and `networks`",
            5,
        ),
        ("services:\n  web:\n    command: x\n", "has neither an image nor a build context", 2),
        (
            "services:\n  web:\n    image: x\n    deploy: {replicas: lots}\n",
            "services.web.deploy.replicas",
            4,
        ),
        (
            "secrets:\n  foo: {}\nservices:\n  web: {image: x}\n",
            "must declare either `file` or `environment`",
            2,
        ),
        (
            "volumes:\n  v:\n    external: true\n    driver: foo\nservices:\n  web: {image: x}\n",
            'conflicting parameters "external" and "driver" specified',
            2,
        ),
    ],
)
def test_errors_point_at_the_line(load: Loader, text: str, message: str, line: int) -> None:
    err = error_of(load, text)
    assert message in str(err)
    assert err.location is not None, str(err)
    assert err.location.file.endswith("compose0.yaml")
    assert err.location.line == line, str(err)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("compose-depends-on-cycle.yaml", "dependency cycle detected: service1 -> service2"),
        ("compose-depends-on-self.yaml", "dependency cycle detected: service1 -> service1"),
    ],
)
def test_dependency_cycles(name: str, expected: str) -> None:
    from shoal.compose.loader import LoadOptions, load_project
    from tests.corpus import CORPUS

    path = CORPUS / "compose-go" / "loader" / "testdata" / name
    with pytest.raises(ComposeError, match=expected):
        load_project(LoadOptions(files=[path], project_name="p", environ={}))


def test_warnings_for_keys_a_cluster_cannot_honour(load: Loader) -> None:
    loaded = load(
        "version: '3'\nservices:\n  web:\n    image: x\n    container_name: web\n"
        "    deploy: {replicas: 3}\n    links: [db]\n  db: {image: y}\n"
    )
    texts = [w.message for w in loaded.warnings]
    assert any("`version` is obsolete" in t for t in texts)
    assert any("container_name" in t and "more than one replica" in t for t in texts)
    assert any("links" in t for t in texts)
    located = next(w for w in loaded.warnings if "container_name" in w.message)
    assert located.location is not None and located.location.line == 5
