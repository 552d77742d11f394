"""compose-go's normalisation fixtures: `__1` input, `__2` expected, compared structurally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.compose.canonical import canonicalize
from shoal.compose.normalize import normalize
from tests.corpus import CORPUS

FIXTURES = CORPUS / "compose-go" / "inline" / "loader" / "normalize"
ENV = {"FOO": "BAR", "BAR": "bar"}


def _canon(doc: dict[str, Any]) -> dict[str, Any]:
    return canonicalize(doc, lookup=ENV.get)


def _no_env_files(path: str) -> dict[str, str | None]:
    raise AssertionError(f"no env_file expected, asked for {path}")


@pytest.mark.parametrize(
    "given", sorted(FIXTURES.glob("*__1.yaml")), ids=lambda p: Path(p).name.split("__")[0]
)
def test_normalize_fixture(given: Path) -> None:
    source = yaml.safe_load(given.read_text())
    expected = _canon(yaml.safe_load(given.with_name(given.name.replace("__1", "__2")).read_text()))
    result = normalize(_canon(source), source["name"], ENV.get, _no_env_files)
    assert result == expected
