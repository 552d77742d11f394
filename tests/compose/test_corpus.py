"""Every real Compose file of the corpus loads, and what `shoal config` prints is schema-valid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from shoal.compose.loader import LoadOptions, load_project
from shoal.model.compose import to_compose_dict
from tests.corpus import CORPUS, SAMPLE_DOTENV, SCHEMA

AWESOME = sorted((CORPUS / "awesome").glob("*.yaml"))
CONFORMANCE = sorted((CORPUS / "conformance" / "tests").glob("*/compose.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))


def _load_in_copy(source: Path, tmp_path: Path, dotenv: str | None) -> object:
    target = tmp_path / source.name
    shutil.copy(source, target)
    for extra in source.parent.iterdir():  # secret/config files next to conformance tests
        if extra.is_file() and extra.suffix == ".txt":
            shutil.copy(extra, tmp_path / extra.name)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    return load_project(LoadOptions(files=[target], project_name="corpus", environ={}))


@pytest.mark.parametrize("path", AWESOME, ids=lambda p: p.name)
def test_awesome_file_loads_and_output_is_schema_valid(
    path: Path, tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    loaded = _load_in_copy(path, tmp_path, SAMPLE_DOTENV.get(path.name))
    out = to_compose_dict(loaded.project)  # type: ignore[attr-defined]
    errors = sorted(validator.iter_errors(out), key=str)
    assert not errors, errors[0].message
    assert set(out["services"]) == set(loaded.document["services"])  # type: ignore[attr-defined]


def test_wireguard_dotenv_inline_comment(tmp_path: Path) -> None:
    path = CORPUS / "awesome" / "wireguard.yaml"
    loaded = _load_in_copy(path, tmp_path, SAMPLE_DOTENV["wireguard.yaml"])
    env = loaded.document["services"]["wireguard"]["environment"]  # type: ignore[attr-defined]
    assert env["SERVERURL"] == "your-domain.dyndns.com"
    assert env["TZ"] == "Europe/Paris"


@pytest.mark.parametrize("path", CONFORMANCE, ids=lambda p: p.parent.name)
def test_conformance_file_loads(
    path: Path, tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    loaded = _load_in_copy(path, tmp_path, None)
    out = to_compose_dict(loaded.project)  # type: ignore[attr-defined]
    errors = sorted(validator.iter_errors(out), key=str)
    assert not errors, errors[0].message


def test_corpus_is_present() -> None:
    assert len(AWESOME) == 39
    assert len(CONFORMANCE) == 8
