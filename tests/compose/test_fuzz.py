"""Property: for any input the loader returns a model or raises ComposeError with a location.

Random YAML-ish text and random mutations of the corpus files; never any other exception.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.compose.loader import LoadOptions, load_project
from shoal.model.errors import ComposeError
from tests.corpus import CORPUS

SOURCES = sorted((CORPUS / "awesome").glob("*.yaml")) + sorted(
    (CORPUS / "conformance" / "tests").glob("*/compose.yaml")
)
TEXTS = [p.read_text() for p in SOURCES]
TOKENS = [
    "services:",
    "image:",
    "ports:",
    "- ",
    "  ",
    "\n",
    ":",
    "${",
    "}",
    "$$",
    "$X",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<:",
    "!reset ",
    "!override ",
    "'",
    '"',
    "#",
    "-",
    "80:80",
    "1.5G",
    "10s",
    "true",
    "null",
    "~",
    "0o7",
    "build:",
    "extends:",
    "depends_on:",
    "networks:",
    "volumes:",
    "secrets:",
    "x-",
    "deploy:",
    "replicas:",
    "---",
    "\t",
    "\\",
    "é",
    "\x00",
]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _check(text: str, tmp: Path) -> None:
    path = tmp / "compose.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_project(LoadOptions(files=[path], project_name="fuzz", environ={"X": "1"}))
    except ComposeError as exc:
        assert exc.location is not None or exc.path, f"no location for: {exc}"
        assert str(exc)


def _mutate(text: str, rnd: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        i = rnd.randrange(len(lines)) if lines else 0
        if op == 0 and lines:
            del lines[i]
        elif op == 1 and lines:
            lines.insert(rnd.randrange(len(lines) + 1), lines[i])
        elif op == 2 and lines:
            pos = rnd.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rnd.choice(TOKENS) + lines[i][pos:]
        elif op == 3 and lines:
            lines[i] = lines[i].replace(":", rnd.choice([": ", "::", ": -", ""]), 1)
        else:
            lines[i:i] = [rnd.choice(TOKENS) + "\n"]
    return "".join(lines)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(TEXTS) - 1))
def test_mutated_corpus_files(seed: int, which: int, tmp: Path) -> None:
    _check(_mutate(TEXTS[which], random.Random(seed)), tmp)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(st.sampled_from(TOKENS) | st.text(max_size=5), max_size=40).map("".join))
def test_random_token_soup(text: str, tmp: Path) -> None:
    _check(text, tmp)


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["80:80", "1.5G", "10s", "${X}", "./a:/b", "CMD"]),
)
yaml_keys = st.sampled_from(
    [
        "services",
        "web",
        "image",
        "ports",
        "volumes",
        "networks",
        "deploy",
        "replicas",
        "environment",
        "healthcheck",
        "test",
        "build",
        "depends_on",
        "secrets",
        "x-a",
        "name",
    ]
) | st.text(min_size=1, max_size=6)
yaml_trees = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(yaml_keys, children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(yaml_keys, yaml_trees, max_size=4))
def test_random_structures(tree: dict[str, object], tmp: Path) -> None:
    import yaml

    _check(yaml.safe_dump(tree, allow_unicode=True), tmp)
