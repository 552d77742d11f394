"""compose-go's on-disk loader fixtures through the whole pipeline (NOTES.md 14-16, 24, 25)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal.compose.loader import LoadOptions, load_project
from shoal.model.errors import ComposeError
from tests.corpus import CORPUS

TESTDATA = CORPUS / "compose-go" / "loader" / "testdata"
CLI = CORPUS / "compose-go" / "cli" / "testdata"


def load(path: Path, name: str | None = "p", **kw: Any) -> Any:
    return load_project(
        LoadOptions(files=[path], project_name=name, environ=kw.pop("environ", {}), **kw)
    )


def test_extends_from_other_file() -> None:
    loaded = load(TESTDATA / "compose-test-extends.yaml", name=None)
    importer = loaded.document["services"]["importer"]
    assert loaded.project.name == "compose-test-extends"
    assert importer["container_name"] == "imported"
    vol = importer["volumes"][0]
    assert (
        vol["type"] == "bind" and vol["source"] == "/opt/data" and vol["target"] == "/var/lib/mysql"
    )
    assert vol["bind"]["create_host_path"] is True
    # env_file resolved against the extended file's directory, folded into environment
    assert importer["environment"] == {"SOURCE": "extends"}


def test_include_without_env_file_uses_defaults_and_process_env(tmp_path: Path) -> None:
    loaded = load(TESTDATA / "compose-include.yaml")
    # no env_file on the include and no .env beside the included file: the default applies
    assert loaded.document["services"]["imported"]["container_name"] == "imported"
    assert loaded.document["services"]["bar"]["environment"] == {"FOO": "BAR"}
    overridden = load(TESTDATA / "compose-include.yaml", environ={"SOURCE": "override"})
    assert overridden.document["services"]["imported"]["container_name"] == "override"


def test_include_cycle() -> None:
    with pytest.raises(ComposeError) as info:
        load(TESTDATA / "compose-include-cycle.yaml")
    assert info.value.message.startswith("include cycle detected")
    assert info.value.location is not None


def test_include_project_directory() -> None:
    loaded = load(TESTDATA / "include" / "project-directory.yaml")
    service = loaded.document["services"]["service"]
    assert service["build"]["context"] == str(TESTDATA / "subdir")
    assert service["volumes"][0]["source"] == str(
        TESTDATA / "subdir" / "compose-test-extends-imported.yaml"
    )


def test_version_2_file_still_loads() -> None:
    loaded = load(TESTDATA / "compose-test-with-version.yaml")
    assert any("`version` is obsolete" in w.message for w in loaded.warnings)
    services = loaded.document["services"]
    assert any(
        v == {"type": "volume", "target": "/data", "volume": {}}
        for s in services.values()
        for v in s.get("volumes", [])
    )


def test_empty_file() -> None:
    with pytest.raises(ComposeError, match="empty compose file"):
        load(TESTDATA / "empty.yaml")


@pytest.mark.parametrize(
    ("directory", "expected"),
    [("simple", "simple"), ("UNNORMALIZED PATH", "unnormalizedpath")],
)
def test_project_name_from_directory(directory: str, expected: str) -> None:
    assert load(CLI / directory / "compose.yaml", name=None).project.name == expected


def test_project_name_from_environment_and_dotenv() -> None:
    compose = CLI / "simple" / "compose.yaml"
    env = {"COMPOSE_PROJECT_NAME": "my_project_from_env"}
    assert load(compose, name=None, environ=env).project.name == "my_project_from_env"
    env_dir = CLI / "env-file"
    files = sorted(env_dir.glob("compose-with-env-file*.yaml"))
    loaded = load(files[0], name=None)
    assert loaded.project.name == "my_project_from_dot_env"


def test_explicit_name_wins_over_environment() -> None:
    compose = CLI / "simple" / "compose.yaml"
    env = {"COMPOSE_PROJECT_NAME": "from_env"}
    assert load(compose, name="explicit", environ=env).project.name == "explicit"


def test_legacy_boolean_and_dotted_service_names(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(
        "services:\n  test.a.b.c:\n    image: x\n    init: yes\n    ports: []\n    x-foo: bar\n"
    )
    loaded = load(path)
    service = loaded.project.services["test.a.b.c"]
    assert service.init is True
    assert service.extensions == {"x-foo": "bar"}
