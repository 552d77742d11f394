"""Tests for shoal.compose.dotenv: compose-go's godotenv fixtures and cases, plus the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.compose.dotenv import EnvFileNotFoundError, parse_dotenv, read_env_file
from shoal.model.errors import ComposeError
from tests.corpus import CORPUS

FIXTURES = CORPUS / "compose-go" / "dotenv" / "fixtures"
OS_ENV = {"VAR_TO_BE_LOADED_FROM_OS_ENV": "SOME_RANDOM_VALUE"}


def parse(text: str, env: dict[str, str] | None = None) -> dict[str, str | None]:
    return parse_dotenv(text, lookup=(env or {}).get)


# --- the fixture files (expectations from compose-go dotenv/godotenv_test.go) ----------------

PLAIN = {
    "OPTION_A": "1",
    "OPTION_B": "2",
    "OPTION_C": "3",
    "OPTION_D": "4",
    "OPTION_E": "5",
    # Read() in Go drops names starting with a digit; Compose's own loader keeps them.
    "456": "ABC",
    "OPTION_F": "",
    "OPTION_G": "",
    "OPTION_H": "my string",
}


@pytest.mark.parametrize(
    ("fixture", "env", "expected"),
    [
        ("plain.env", {}, PLAIN),
        ("utf8-bom.env", {}, PLAIN),
        (
            "quoted.env",
            {},
            {
                "OPTION_A": "1",
                "OPTION_B": "2",
                "OPTION_C": "",
                "OPTION_D": "\\n",
                "OPTION_E": "1",
                "OPTION_F": "2",
                "OPTION_G": "",
                "OPTION_H": "\n",
                "OPTION_I": "echo 'asd'",
                "OPTION_J": "first line\nsecond line\nthird line\nand so on",
                "OPTION_K": "Let's go!",
                "OPTION_Z": "last value",
            },
        ),
        ("exported.env", {}, {"OPTION_A": "2", "OPTION_B": "\\n"}),
        (
            "equals.env",
            {},
            {"OPTION_A": "postgres://localhost:5432/database?sslmode=disable"},
        ),
        (
            "unquoted.env",
            {},
            {
                "OPTION_A": "some quoted phrase",
                "OPTION_B": "first one with an unquoted phrase",
                "OPTION_C": "then another one with an unquoted phrase",
                "OPTION_D": "then another one with an unquoted phrase special è char",
                "OPTION_E": "then another one quoted phrase",
            },
        ),
        (
            "special.env",
            {},
            {
                "VAR.WITH.DOTS": "dots",
                "VAR_WITH_UNDERSCORES": "underscores",
                "VAR-WITH-DASHES": "dashes",
            },
        ),
        (
            "substitutions.env",
            {},
            {
                "OPTION_A": "1",
                "OPTION_B": "1",
                "OPTION_C": "1",
                "OPTION_D": "1_1",
                "OPTION_E": "",
            },
        ),
        # the environment wins over the file's own earlier values when expanding
        (
            "substitutions.env",
            {"OPTION_A": "5"},
            {
                "OPTION_A": "1",
                "OPTION_B": "5",
                "OPTION_C": "5",
                "OPTION_D": "5_5",
                "OPTION_E": "",
            },
        ),
        (
            "substitutions-default.env",
            {},
            {
                "OPTION_A": "1",
                "OPTION_B": "1",
                "OPTION_C": "1",
                "OPTION_D": "1_1",
                "OPTION_E": "",
            },
        ),
        (
            "substitutions-default.env",
            {"OPTION_A": "5"},
            {
                "OPTION_A": "5",
                "OPTION_B": "5",
                "OPTION_C": "5",
                "OPTION_D": "5_5",
                "OPTION_E": "",
            },
        ),
        (
            "inherited-multi-var.env",
            OS_ENV,
            {"foo": "bar", "VAR_TO_BE_LOADED_FROM_OS_ENV": "SOME_RANDOM_VALUE", "bar": "baz"},
        ),
        (
            "inherited-single-var.env",
            OS_ENV,
            {"VAR_TO_BE_LOADED_FROM_OS_ENV": "SOME_RANDOM_VALUE"},
        ),
        # a bare name that the environment does not have stays unset (None)
        ("inherited-not-found.env", {}, {"VARIABLE_NOT_FOUND": None}),
        ("custom.format", {}, {"FOO": "BAR", "ZOT": "QIX"}),
    ],
)
def test_fixture(fixture: str, env: dict[str, str], expected: dict[str, str | None]) -> None:
    assert read_env_file(FIXTURES / fixture, lookup=env.get) == expected


def test_fixture_bom_is_really_there() -> None:
    assert (FIXTURES / "utf8-bom.env").read_bytes().startswith(b"\xef\xbb\xbf")


def test_invalid_fixture_reports_line_7() -> None:
    with pytest.raises(ComposeError) as info:
        read_env_file(FIXTURES / "invalid1.env")
    err = info.value
    assert err.location is not None
    assert err.location.file == str(FIXTURES / "invalid1.env")
    assert (err.location.line, err.location.column) == (7, 1)
    assert "INVALID LINE" in err.message
    assert "space" in err.message


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        (
            "cli/testdata/env-file/.env",
            {
                "COMPOSE_FILE": "compose-with-env-file.yaml",
                "COMPOSE_PROJECT_NAME": "my_project_from_dot_env",
                "PORT": "8000",
            },
        ),
        ("cli/testdata/env-file/override.env", {"PORT": "9000"}),
        ("cli/testdata/env-file/simple-env", {"DEFAULT_PORT": "8080"}),
        ("cli/testdata/env-file/second-env", {"DEFAULT_PORT": "9090"}),
        (
            "loader/example1.env",
            {
                "FOO": "foo_from_env_file",
                "ENV.WITH.DOT": "ok",
                "ENV_WITH_UNDERSCORE": "ok",
                "BAR": "bar_from_env_file",
                "BAZ": "baz_from_env_file",
            },
        ),
        (
            "loader/example2.env",
            {"BAR": "bar_from_env_file_2", "QUX": "quz_from_env_file_2"},
        ),
    ],
)
def test_corpus_env_files(relative: str, expected: dict[str, str]) -> None:
    assert read_env_file(CORPUS / "compose-go" / relative) == expected


# --- single statements (compose-go TestParsing, TestExpanding, and the Docker docs) ----------


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("FOO=bar", "FOO", "bar"),
        ("FOO =bar", "FOO", "bar"),
        ("FOO= bar", "FOO", "bar"),
        ("FOO = bar  ", "FOO", "bar"),
        ('FOO="bar"', "FOO", "bar"),
        ("FOO='bar'", "FOO", "bar"),
        ('FOO="escaped\\"bar"', "FOO", 'escaped"bar'),
        ('FOO="\\"quoted\\""', "FOO", '"quoted"'),
        ("FOO=\"'d'\"", "FOO", "'d'"),
        ("FOO='\"d\"'", "FOO", '"d"'),
        ("OPTION_A: 1", "OPTION_A", "1"),
        ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
        ("OPTION_A=1:B", "OPTION_A", "1:B"),
        ("export OPTION_A=2", "OPTION_A", "2"),
        ("export OPTION_B='\\n'", "OPTION_B", "\\n"),
        ("export exportFoo=2", "exportFoo", "2"),
        ("exportFOO=2", "exportFOO", "2"),
        ("export_FOO =2", "export_FOO", "2"),
        ("export.FOO= 2", "export.FOO", "2"),
        ("export\tOPTION_A=2", "OPTION_A", "2"),
        ("  export OPTION_A=2", "OPTION_A", "2"),
        ("\texport OPTION_A=2", "OPTION_A", "2"),
        ('export OPTION_A="export A"', "OPTION_A", "export A"),
        ("export=1", "export", "1"),
        ("export = 1", "export", "1"),
        ('FOO="bar\\nbaz"', "FOO", "bar\nbaz"),
        ("FOO=a\\tb", "FOO", "a\\tb"),
        ('FOO="a\\tb"', "FOO", "a\tb"),
        ("FOO='a\\tb'", "FOO", "a\\tb"),
        (
            'KEY="Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z"',
            "KEY",
            "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ",
        ),
        ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
        ("a[1]=c", "a[1]", "c"),
        (
            "árvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép",
            "árvíztűrő-TÜKÖRFÚRÓGÉP",
            "ÁRVÍZTŰRŐ-tükörfúrógép",
        ),
        ("FOO=foobar=", "FOO", "foobar="),
        ("FOO=bar ", "FOO", "bar"),
        # inline comments: only after a blank in unquoted values, only after the quote otherwise
        ("FOO=bar # this is foo", "FOO", "bar"),
        ("FOO=bar #this is foo", "FOO", "bar"),
        ("FOO=bar #", "FOO", "bar"),
        ("FOO=bar\t# tab before", "FOO", "bar"),
        ("FOO=123#not-an-inline-comment", "FOO", "123#not-an-inline-comment"),
        ("FOO=#starts-with-hash", "FOO", "#starts-with-hash"),
        ("FOO= # only a comment", "FOO", ""),
        ("VAR=VAL # comment", "VAR", "VAL"),
        ("VAR=VAL# not a comment", "VAR", "VAL# not a comment"),
        ('VAR="VAL # not a comment"', "VAR", "VAL # not a comment"),
        ('VAR="VAL" # comment', "VAR", "VAL"),
        ('FOO="bar#baz"', "FOO", "bar#baz"),
        ('FOO="bar#baz"#', "FOO", "bar#baz"),
        ('FOO="bar#baz" # comment', "FOO", "bar#baz"),
        ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
        ('FOO="bar#baz#bang" # comment', "FOO", "bar#baz#bang"),
        ('FOO="ba#r"', "FOO", "ba#r"),
        ("FOO='ba#r'", "FOO", "ba#r"),
        # backslashes in double quotes: known escapes are expanded, others kept
        ('FOO="bar\\n\\ b\\az"', "FOO", "bar\n\\ b\az"),
        ('FOO="bar\\\\\\n\\ b\\az"', "FOO", "bar\\\n\\ b\az"),
        ('FOO="bar\\\\r\\ b\\az"', "FOO", "bar\\r\\ b\az"),
        ('FOO="bar\\nbaz\\\\"', "FOO", "bar\nbaz\\"),
        ('KEY="\\0123"', "KEY", "S"),
        ('KEY="\\012"', "KEY", "\\012"),
        ('KEY="\\x07"', "KEY", "\\x07"),
        ('KEY="\\u12e4"', "KEY", "\\u12e4"),
        ('KEY="\\U00101234"', "KEY", "\\U00101234"),
        ('KEY="it\\\'s"', "KEY", "it\\'s"),
        # single quotes: literal, but an escaped single quote loses its backslash
        ("VAR='Let\\'s go!'", "VAR", "Let's go!"),
        ('VAR="{\\"hello\\": \\"json\\"}"', "VAR", '{"hello": "json"}'),
        ("VAR='some\\tvalue'", "VAR", "some\\tvalue"),
        ("VAR='a\\\\b'", "VAR", "a\\\\b"),
        ("VAR='$OTHER'", "VAR", "$OTHER"),
        ("VAR='${OTHER}'", "VAR", "${OTHER}"),
        # leading blanks are ignored
        (" KEY =value", "KEY", "value"),
        ("   KEY=value", "KEY", "value"),
        ("\tKEY=value", "KEY", "value"),
        ("KEY=value\r\n", "KEY", "value"),
        ("KEY='value'\r\n", "KEY", "value"),
        # a key with nothing after the separator is set and empty
        ("KEY=", "KEY", ""),
        ("KEY:", "KEY", ""),
        ("KEY=''", "KEY", ""),
    ],
)
def test_statement(text: str, key: str, value: str) -> None:
    assert parse(text) == {key: value}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FOO=test\nBAR=$FOO", {"FOO": "test", "BAR": "test"}),
        ("FOO=test\nBAR=${FOO}bar", {"FOO": "test", "BAR": "testbar"}),
        ("BAR=$FOO", {"BAR": ""}),
        ('FOO=test\nBAR="quote $FOO"', {"FOO": "test", "BAR": "quote test"}),
        ("BAR='quote $FOO'", {"BAR": "quote $FOO"}),
        ('FOO="foo\\$BAR"', {"FOO": "foo$BAR"}),
        ('FOO="foo\\${BAR}"', {"FOO": "foo${BAR}"}),
        ('FOO=test\nBAR="foo\\${FOO} ${FOO}"', {"FOO": "test", "BAR": "foo${FOO} test"}),
        ("FOO=a$$b", {"FOO": "a$b"}),
        ('FOO="a$$b"', {"FOO": "a$b"}),
        ("FOO='a$$b'", {"FOO": "a$$b"}),
        ("FOO=cost $ 5", {"FOO": "cost $ 5"}),
        ("A=1\nB=${A:-x}${UNSET:-y}", {"A": "1", "B": "1y"}),
        ("A=\nB=${A-unset}|${A:-empty}", {"A": "", "B": "|empty"}),
        ("A=1\nB=${A:+set}${UNSET+never}", {"A": "1", "B": "set"}),
        ("B=$A\nA=1", {"B": "", "A": "1"}),
        ("A=1\nA=$A$A", {"A": "11"}),
        ('A=x\nB="${A}\n${A}"', {"A": "x", "B": "x\nx"}),
        ('TEST_URLS="a:3333\nb:443"', {"TEST_URLS": "a:3333\nb:443"}),
        ("A=1\nA=2", {"A": "2"}),
    ],
)
def test_expansion(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


def test_expansion_uses_lookup_before_file() -> None:
    env = {"ME": "YES", "A": "from-env"}
    assert parse("TEST=$ME\nA=file\nB=$A", env) == {"TEST": "YES", "A": "file", "B": "from-env"}


def test_lookup_is_not_applied_to_defined_keys() -> None:
    assert parse("A=file", {"A": "env"}) == {"A": "file"}


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("FOO", {"FOO": "x"}, {"FOO": "x"}),
        ("FOO\n", {"FOO": ""}, {"FOO": ""}),
        ("FOO", {}, {"FOO": None}),
        ("  FOO  \n", {"FOO": "x"}, {"FOO": "x"}),
        ("export FOO", {"FOO": "x"}, {"FOO": "x"}),
        ("export", {"export": "x"}, {"export": "x"}),
        ("A=1\nFOO\nB=2", {"FOO": "x"}, {"A": "1", "FOO": "x", "B": "2"}),
    ],
)
def test_bare_name_takes_value_from_lookup(
    text: str, env: dict[str, str], expected: dict[str, str | None]
) -> None:
    assert parse(text, env) == expected


@pytest.mark.parametrize(
    "text",
    ["", "\n", "\r\n", "\t\t ", "# Comment", "\t # comment", "# a\n\n  # b\n", "#!/bin/sh"],
)
def test_lines_to_ignore(text: str) -> None:
    assert parse(text) == {}


def test_comments_and_blank_lines_between_statements() -> None:
    text = "# head\n\nA=1\n   # indented\n\nB=2 # trailing\n#C=3\n"
    assert parse(text) == {"A": "1", "B": "2"}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("lol$wut", 1, 4, 'unexpected character "$"'),
        ("%!(EXTRA string)=foo", 1, 1, 'unexpected character "%"'),
        ("A=1\nB C=2", 2, 1, "cannot contain a space"),
        ("A=1\n\nINVALID LINE\n", 3, 1, "cannot contain a space"),
        ("FOO bar # comment", 1, 9, 'unexpected character "#"'),
        ("=value", 1, 1, "missing variable name"),
        ("A=1\n  : x", 2, 3, "missing variable name"),
        ('KEY="', 1, 5, "unterminated quoted value"),
        ('KEY="value', 1, 5, "unterminated quoted value"),
        ('KEY="value\\"', 1, 5, "unterminated quoted value"),
        ("KEY=\"value'", 1, 5, "unterminated quoted value"),
        ("KEY='", 1, 5, "unterminated quoted value"),
        ("KEY='value", 1, 5, "unterminated quoted value"),
        ("KEY='value\\'", 1, 5, "unterminated quoted value"),
        ("KEY='value\"", 1, 5, "unterminated quoted value"),
        ('A=1\nKEY = "multi\nline', 2, 7, "unterminated quoted value"),
        ('KEY="a" b', 1, 9, "after the closing quote"),
        ("KEY='a''b'", 1, 8, "after the closing quote"),
        ("KEY=${", 1, 5, "Invalid template"),
        ('KEY="${ bad}"', 1, 5, "Invalid template"),
        ("A=1\nKEY=${NEED:?set NEED}", 2, 5, "required variable NEED is missing a value: set NEED"),
    ],
)
def test_syntax_error(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(ComposeError) as info:
        parse_dotenv(text, filename="test.env")
    err = info.value
    assert fragment in err.message
    assert err.location is not None
    assert (err.location.file, err.location.line, err.location.column) == (
        "test.env",
        line,
        column,
    )
    assert str(err).startswith(f"test.env:{line}:{column}: ")


def test_single_quoted_values_are_not_interpolated_even_when_invalid() -> None:
    assert parse("KEY='${'") == {"KEY": "${"}


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    with pytest.raises(ComposeError) as info:
        read_env_file(missing)
    assert str(missing) in str(info.value)
    assert "not found" in str(info.value)
    # Also a FileNotFoundError, so an optional env file can be skipped by the caller.
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, EnvFileNotFoundError)


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="is a directory"):
        read_env_file(tmp_path)


def test_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.env"
    path.write_bytes(b"A=\xe9t\xe9\n")
    with pytest.raises(ComposeError, match="UTF-8"):
        read_env_file(path)


def test_read_env_file_crlf_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "win.env"
    path.write_bytes(b'\xef\xbb\xbfA=1\r\nB="x\r\ny"\r\nC\r\n')
    assert read_env_file(str(path), lookup={"C": "c"}.get) == {"A": "1", "B": "x\ny", "C": "c"}


def test_parse_dotenv_strips_bom() -> None:
    assert parse("\ufeffA=1") == {"A": "1"}


def test_error_location_uses_filename(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("OK=1\nBAD KEY=2\n")
    with pytest.raises(ComposeError) as info:
        read_env_file(path)
    assert info.value.location is not None
    assert info.value.location.file == str(path)
    assert info.value.location.line == 2


def test_wireguard_style_comment() -> None:
    text = "VPN_SERVER_URL=your-domain.dyndns.com # free examples: duckdns.org\n"
    assert parse(text) == {"VPN_SERVER_URL": "your-domain.dyndns.com"}


def test_many_lines() -> None:
    text = "\n".join(f"KEY{i}=VALUE{i}" for i in range(1000))
    out = parse(text)
    assert len(out) == 1000
    assert out["KEY999"] == "VALUE999"
