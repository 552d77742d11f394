"""Tests for shoal.compose.interpolate: compose-go's template cases plus the spec's edge cases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.compose.interpolate import (
    InterpolationError,
    InvalidTemplateError,
    MissingRequiredError,
    interpolate,
    substitute,
)
from shoal.compose.tags import Override, Reset
from shoal.model.errors import ComposeError, Invalid
from tests.corpus import CORPUS

CASES = json.loads((CORPUS / "compose-go" / "cases.json").read_text())


def _corpus(section: str) -> list[Any]:
    mapping = CASES[section]["mapping"]
    return [
        pytest.param(mapping, case, id=f"{section}:{case['input']}")
        for case in CASES[section]["cases"]
    ]


def _run(template: str, mapping: dict[str, str]) -> str:
    return substitute(template, mapping.get)


@pytest.mark.parametrize(
    ("mapping", "case"),
    _corpus("interpolation") + _corpus("interpolation_nested_unset_env"),
)
def test_compose_go_cases(mapping: dict[str, str], case: dict[str, str]) -> None:
    if "expected" in case:
        assert _run(case["input"], mapping) == case["expected"]
    elif "error_contains" in case:
        with pytest.raises(InterpolationError) as info:
            _run(case["input"], mapping)
        assert case["error_contains"] in str(info.value)
    else:
        # The full message is the one interpolate() gives for a value at
        # services.myservice.environment.TESTVAR; compose-go printed the path without "services".
        path = ("services", "myservice", "environment", "TESTVAR")
        with pytest.raises(InterpolationError) as info:
            interpolate(case["input"], mapping.get, path)
        assert str(info.value) == case["error"].replace("myservice.", "services.myservice.", 1)


# Mapping of compose-go's template tests: FOO set, BAR set but empty, JSON holding braces.
ENV = {"FOO": "first", "BAR": "", "JSON": '{"json":2}', "lower": "low", "_U9": "u"}
NO_ENV: dict[str, str] = {}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # plain text and escapes
        ("", ""),
        ("no dollar at all", "no dollar at all"),
        ("$$", "$"),
        ("$$$$", "$$"),
        ("$$FOO", "$FOO"),
        ("$$$FOO", "$first"),
        ("$${FOO:-x}", "${FOO:-x}"),
        ("price: 5$$", "price: 5$"),
        # a `$` that starts no variable is kept
        ("$", "$"),
        ("$ ", "$ "),
        ("$1", "$1"),
        ("$-x", "$-x"),
        ("$.", "$."),
        ("100$", "100$"),
        ("$}", "$}"),
        ("$é", "$é"),
        ("a $ b $", "a $ b $"),
        # names: [_a-zA-Z][_a-zA-Z0-9]*, ASCII, case-sensitive lookups
        ("$FOO", "first"),
        ("$lower", "low"),
        ("${lower}", "low"),
        ("$_U9", "u"),
        ("$foo", ""),
        ("$FOO9", ""),
        ("$FOO.bar", "first.bar"),
        ("$FOO/$FOO", "first/first"),
        ("$FOOé", "firsté"),
        ("${FOO}bar", "firstbar"),
        ("${FOO}}", "first}"),
        ("{${FOO}}", "{first}"),
        ("$FOO$FOO", "firstfirst"),
        # :- and -
        ("${UNSET:-}", ""),
        ("${UNSET-}", ""),
        ("${BAR-}", ""),
        ("${FOO:-x}", "first"),
        ("${FOO-x}", "first"),
        ("${UNSET:-a b  c}", "a b  c"),
        ("${UNSET:-a:b-c?d+e}", "a:b-c?d+e"),
        ("${UNSET-a:-b}", "a:-b"),
        ("${UNSET:-$$}", "$"),
        ("${UNSET:-$}", "$"),
        ("${UNSET:-a}b}", "ab}"),
        ("${UNSET:-line1\nline2}", "line1\nline2"),
        ("${UNSET:-é ü}", "é ü"),
        # :+ and +
        ("${FOO:+yes}", "yes"),
        ("${FOO+yes}", "yes"),
        ("${BAR:+yes}", ""),
        ("${BAR+yes}", "yes"),
        ("${UNSET:+yes}", ""),
        ("${UNSET+yes}", ""),
        ("${FOO:+}", ""),
        ("${FOO:+-$FOO-}", "-first-"),
        # :? and ? pass through a value
        ("${FOO:?must}", "first"),
        ("${FOO?must}", "first"),
        ("${BAR?must}", ""),
        # nesting, any depth, in defaults and replacements
        ("${UNSET:-${FOO}}", "first"),
        ("${UNSET:-${ALSO_UNSET:-${FOO}}}", "first"),
        ("${A:-${B:-${C:-${D:-deep}}}}", "deep"),
        ("${UNSET:-${BAR:-${FOO:+[${FOO}]}}}", "[first]"),
        ("${UNSET:-x${FOO}y}z", "xfirstyz"),
        ("${FOO:+${UNSET:-d}}", "d"),
        ("${UNSET-$FOO}-$FOO", "first-first"),
        # defaults are expanded only when used
        ("${FOO:-${UNSET:?not needed}}", "first"),
        ("${UNSET:+${ALSO_UNSET?not needed}}", ""),
        ("${FOO?${UNSET:?not needed}}", "first"),
        # braces balance inside defaults
        ('${UNSET:-{"a":{"b":1}}}', '{"a":{"b":1}}'),
        ('${JSON:-{"a":{"b":1}}}', '{"json":2}'),
        ("${UNSET:-{}}", "{}"),
        ("${UNSET:-{}}}", "{}}"),
        # unbalanced: the last `}` closes, as compose-go reads it
        ("${UNSET:-{x}", "{x"),
        ("${UNSET:-{}", "{"),
        ("${FOO:-{}", "first"),
        ("${FOO:-{}}{}", "first{}"),
        # only the first operator after the name counts
        ("${UNSET-a?b}", "a?b"),
        ("${UNSET:-a:?b}", "a:?b"),
        ("${FOO?a-b}", "first"),
        ("${UNSET+a-b}", ""),
        ("${FOO+a:-b}", "a:-b"),
    ],
)
def test_substitute(template: str, expected: str) -> None:
    assert _run(template, ENV) == expected


@pytest.mark.parametrize(
    "template",
    [
        "${",
        "${}",
        "${ }",
        "${ foo}",
        "${foo }",
        "${foo!}",
        "${FOO",
        "${FOO:-x",
        "${1}",
        "${1abc}",
        "${-}",
        "${:-x}",
        "${FOO:x}",
        "${FOO:}",
        "${FOO/a/b}",
        "${FOO^^}",
        "${#FOO}",
        "${FOO:0:2}",
        "${FOO=x}",
        "${é}",
        "ok $FOO ${ bad}",
        "$${ok} ${",
        "${FOO:-${}}",
        "${UNSET:-${ nested}}",
    ],
)
def test_invalid_template(template: str) -> None:
    with pytest.raises(InvalidTemplateError) as info:
        _run(template, ENV)
    assert "Invalid template" in str(info.value)
    assert info.value.template == template


def test_invalid_inside_unused_default_is_still_reported() -> None:
    with pytest.raises(InvalidTemplateError):
        _run("${FOO:-${ }}", ENV)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${UNSET:?boom}", "required variable UNSET is missing a value: boom"),
        ("${BAR:?boom}", "required variable BAR is missing a value: boom"),
        ("${UNSET?boom}", "required variable UNSET is missing a value: boom"),
        ("${UNSET:?}", "required variable UNSET is missing a value"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("${BAR:?}", "required variable BAR is missing a value"),
        ("${UNSET:?${UNSET2:-}}", "required variable UNSET is missing a value"),
        ("${UNSET:?need $FOO}", "required variable UNSET is missing a value: need first"),
        ("${UNSET:?a ${FOO:+b}}", "required variable UNSET is missing a value: a b"),
        ("${UNSET:?x:-y}", "required variable UNSET is missing a value: x:-y"),
        ("${UNSET:-${INNER:?deep}}", "required variable INNER is missing a value: deep"),
        ("ok ${FOO} then ${UNSET:?late}", "required variable UNSET is missing a value: late"),
    ],
)
def test_missing_required(template: str, message: str) -> None:
    with pytest.raises(MissingRequiredError) as info:
        _run(template, ENV)
    assert str(info.value) == message
    assert info.value.message == message


def test_error_types() -> None:
    assert issubclass(InterpolationError, Invalid)
    assert issubclass(InterpolationError, ComposeError)
    with pytest.raises(MissingRequiredError) as info:
        _run("${UNSET:?why}", ENV)
    assert (info.value.variable, info.value.reason, info.value.path) == ("UNSET", "why", ())


def test_lookup_is_called_with_names_only_when_needed() -> None:
    seen: list[str] = []

    def lookup(name: str) -> str | None:
        seen.append(name)
        return ENV.get(name)

    assert substitute("plain $$ text", lookup) == "plain $ text"
    assert seen == []
    assert substitute("${FOO:-$BAR}", lookup) == "first"
    assert seen == ["FOO"]


def test_string_without_dollar_is_returned_as_is() -> None:
    text = "a" * 1000

    def lookup(name: str) -> str | None:
        raise AssertionError("no lookup expected")

    assert substitute(text, lookup) is text


@given(st.text())
def test_random_text_gives_str_or_interpolation_error(text: str) -> None:
    try:
        result = substitute(text, ENV.get)
    except InterpolationError:
        return
    assert isinstance(result, str)


@given(st.text(alphabet=st.sampled_from("${}:-?+_aZ9 \n")))
def test_template_alphabet_gives_str_or_interpolation_error(text: str) -> None:
    try:
        result = substitute(text, ENV.get)
    except InterpolationError:
        return
    assert isinstance(result, str)


@given(st.text())
def test_escaped_dollars_round_trip(text: str) -> None:
    assert substitute(text.replace("$", "$$"), ENV.get) == text


@given(st.text().filter(lambda s: "$" not in s))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert substitute(text, ENV.get) == text


# --- interpolate(): the tree walk ------------------------------------------------------------


def test_interpolate_walks_values_not_keys() -> None:
    doc: dict[str, Any] = {
        "services": {
            "web": {
                "image": "nginx:${TAG:-latest}",
                "labels": {"$KEY": "$FOO"},
                "environment": ["A=$FOO", "B=${BAR:-empty}"],
                "ports": [8080, "${PORT-80}:80"],
                "replicas": 2,
                "ratio": 0.5,
                "init": True,
                "command": None,
            },
        },
        "x-list": [["$FOO"], {"deep": ["${FOO}"]}],
    }
    out = interpolate(doc, ENV.get)
    assert out == {
        "services": {
            "web": {
                "image": "nginx:latest",
                "labels": {"$KEY": "first"},
                "environment": ["A=first", "B=empty"],
                "ports": [8080, "80:80"],
                "replicas": 2,
                "ratio": 0.5,
                "init": True,
                "command": None,
            },
        },
        "x-list": [["first"], {"deep": ["first"]}],
    }
    assert doc["services"]["web"]["image"] == "nginx:${TAG:-latest}"  # input untouched
    assert out is not doc
    assert out["services"] is not doc["services"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$FOO", "first"),
        (42, 42),
        (None, None),
        (False, False),
        ([], []),
        ({}, {}),
    ],
)
def test_interpolate_scalars_at_root(value: Any, expected: Any) -> None:
    assert interpolate(value, ENV.get) == expected


def test_interpolate_reset_and_override() -> None:
    reset = Reset()
    doc = {"a": reset, "b": Override(["$FOO", {"c": "${BAR:-d}"}]), "e": Override("$FOO")}
    out = interpolate(doc, ENV.get)
    assert out["a"] is reset
    assert out["b"] == Override(["first", {"c": "d"}])
    assert out["e"] == Override("first")
    assert doc["b"] == Override(["$FOO", {"c": "${BAR:-d}"}])


def test_invalid_template_message_and_path() -> None:
    doc = {"services": {"servicea": {"image": "${"}}}
    with pytest.raises(InvalidTemplateError) as info:
        interpolate(doc, ENV.get)
    assert info.value.path == ("services", "servicea", "image")
    assert str(info.value) == (
        "invalid interpolation format for services.servicea.image.\n"
        "You may need to escape any $ with another $.\n${"
    )


def test_missing_required_message_and_path() -> None:
    doc = {"services": {"myservice": {"environment": {"TESTVAR": "${FOO:?foo} x"}}}}
    with pytest.raises(MissingRequiredError) as info:
        interpolate(doc, NO_ENV.get)
    assert info.value.path == ("services", "myservice", "environment", "TESTVAR")
    assert str(info.value) == (
        "error while interpolating services.myservice.environment.TESTVAR: "
        "required variable FOO is missing a value: foo"
    )
    assert info.value.variable == "FOO"


def test_error_path_with_list_index_and_prefix() -> None:
    doc = {"web": {"ports": ["80:80", "${PORT:?set PORT}:81"]}}
    with pytest.raises(InterpolationError) as info:
        interpolate(doc, ENV.get, ("services",))
    assert info.value.path == ("services", "web", "ports", 1)
    assert str(info.value).startswith("error while interpolating services.web.ports[1]: ")


def test_error_path_inside_override() -> None:
    doc = {"services": {"web": {"ports": Override(["${"])}}}
    with pytest.raises(InvalidTemplateError) as info:
        interpolate(doc, ENV.get)
    assert info.value.path == ("services", "web", "ports", 0)


def test_first_error_in_document_order_wins() -> None:
    doc = {"a": "ok", "b": "${B:?first}", "c": "${"}
    with pytest.raises(MissingRequiredError) as info:
        interpolate(doc, ENV.get)
    assert info.value.path == ("b",)


def test_interpolate_is_fast_on_a_large_document() -> None:
    import time

    service = {
        "image": "registry/app:${TAG:-1.0}",
        "environment": {f"K{i}": f"value-{i}" for i in range(30)},
        "labels": [f"l{i}=$FOO" for i in range(10)],
        "ports": ["80:80", 443],
    }
    doc = {"services": {f"s{i}": service for i in range(200)}}
    start = time.perf_counter()
    out = interpolate(doc, ENV.get)
    assert time.perf_counter() - start < 0.5
    assert out["services"]["s0"]["image"] == "registry/app:1.0"
