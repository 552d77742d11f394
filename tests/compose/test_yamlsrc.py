"""The YAML reader: YAML 1.2 scalars, locations, tags, merge keys, and its errors."""

from __future__ import annotations

import pytest

from shoal.compose.tags import Override, Reset
from shoal.compose.yamlsrc import load_documents, resolve_plain
from shoal.model.errors import ComposeError


def load(text: str) -> object:
    return load_documents(text, "compose.yaml")[0].data


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("0440", 0o440),
        ("0o440", 0o440),
        ("0x1F", 31),
        ("12", 12),
        ("-3", -3),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("1.5G", "1.5G"),
        ("10s", "10s"),
        ("2001-12-14", "2001-12-14"),
        ("1_000", "1_000"),
        ("190:20:30", "190:20:30"),
        ("089", 89.0),
    ],
)
def test_plain_scalars_follow_yaml_1_2(text: str, expected: object) -> None:
    assert load(f"v: {text}\n") == {"v": expected}
    assert resolve_plain(text) == expected


def test_quoted_scalars_stay_strings() -> None:
    assert load("a: '12'\nb: \"true\"\nc: |\n  x\n") == {"a": "12", "b": "true", "c": "x\n"}


def test_anchors_aliases_and_merge_keys() -> None:
    data = load(
        "x-base: &base\n  image: busybox\n  environment: {A: '1'}\n"
        "x-more: &more\n  image: other\n  init: true\n"
        "services:\n  web:\n    <<: [*base, *more]\n    image: nginx\n"
    )
    assert data["services"]["web"] == {  # type: ignore[index]
        "image": "nginx",
        "environment": {"A": "1"},
        "init": True,
    }


def test_reset_and_override_tags() -> None:
    data = load("services:\n  web:\n    ports: !reset []\n    networks: !override {a: {}}\n")
    web = data["services"]["web"]  # type: ignore[index]
    assert web["ports"] == Reset()
    assert web["networks"] == Override({"a": {}})


def test_locations_are_recorded_for_every_key_and_item() -> None:
    doc = load_documents("services:\n  web:\n    ports:\n      - 80\n      - 81\n", "c.yml")[0]
    loc = doc.source.locate(("services", "web", "ports", 1))
    assert (loc.file, loc.line, loc.column) == ("c.yml", 5, 9)  # type: ignore[union-attr]
    # unknown deeper paths fall back to the nearest ancestor
    loc = doc.source.locate(("services", "web", "ports", 1, "target"))
    assert loc is not None and loc.line == 5


def test_several_documents() -> None:
    docs = load_documents("a: 1\n---\na: 2\n", "f.yml")
    assert [d.data for d in docs] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "empty compose file", 1),
        ("# only a comment\n", "empty compose file", 1),
        ("1", "top-level object must be a mapping", 1),
        ('"hello"', "top-level object must be a mapping", 1),
        ("- hello", "top-level object must be a mapping", 1),
        ("123: x", "non-string key at top level: 123", 1),
        ("services:\n  123:\n    image: x", "non-string key in services: 123", 2),
        (
            "services:\n  dict-env:\n    environment:\n      1: FOO",
            "non-string key in services.dict-env.environment: 1",
            4,
        ),
        ("a:\n\tb: 1", "found a tab character that violates indentation", 2),
        ("a: 1\na: 2", 'mapping key "a" already defined at line 1', 2),
        ("a: &a [*a]", "recursive alias", 1),
        ("a: !foo 1", "unknown YAML tag !foo", 1),
        ("a: [1, 2", "invalid YAML", 2),
        ("a: !!int x", "cannot read 'x' as int", 1),
    ],
)
def test_errors_name_file_and_line(text: str, message: str, line: int) -> None:
    with pytest.raises(ComposeError) as info:
        load_documents(text, "compose.yaml")
    err = info.value
    assert message in str(err)
    assert err.location is not None
    assert err.location.file == "compose.yaml"
    assert err.location.line == line


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(ComposeError, match="aliases nested too deep"):
        load_documents("\n".join(lines), "bomb.yml")


def test_explicit_tags() -> None:
    assert load("a: !!str 123\nb: !!float 1\nc: !!int '7'\n") == {"a": "123", "b": 1.0, "c": 7}
