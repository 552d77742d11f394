"""Containerfile parsing, variable substitution and the config-only instructions (no I/O)."""

from __future__ import annotations

import pytest

from shoal.images.build import config_steps
from shoal.images.build.parser import Instruction, parse_containerfile, parse_instructions
from shoal.images.build.state import StageState
from shoal.images.build.words import expand, key_values, split_words
from shoal.model.errors import Invalid


def one(text: str) -> Instruction:
    _escape, instructions = parse_instructions(text, "Containerfile")
    assert len(instructions) == 1
    return instructions[0]


@pytest.mark.parametrize(
    ("text", "name", "args", "flags", "json_args"),
    [
        ("FROM busybox AS base", "FROM", "busybox AS base", (), None),
        ("from --platform=linux/amd64 x", "FROM", "x", (("platform", "linux/amd64"),), None),
        ("ARG A=1", "ARG", "A=1", (), None),
        ("ENV A=1 B=2", "ENV", "A=1 B=2", (), None),
        ("LABEL a=b", "LABEL", "a=b", (), None),
        ("WORKDIR /app", "WORKDIR", "/app", (), None),
        ("USER nobody", "USER", "nobody", (), None),
        (
            "COPY --from=b --chown=1:2 a /b/",
            "COPY",
            "a /b/",
            (("from", "b"), ("chown", "1:2")),
            None,
        ),
        ('COPY ["a b", "/c/"]', "COPY", '["a b", "/c/"]', (), ("a b", "/c/")),
        ("ADD x.tar /", "ADD", "x.tar /", (), None),
        ("RUN echo hi", "RUN", "echo hi", (), None),
        ('RUN ["/bin/echo", "hi"]', "RUN", '["/bin/echo", "hi"]', (), ("/bin/echo", "hi")),
        ("RUN [not json", "RUN", "[not json", (), None),
        ('CMD ["sh"]', "CMD", '["sh"]', (), ("sh",)),
        ("ENTRYPOINT top -b", "ENTRYPOINT", "top -b", (), None),
        ("EXPOSE 80/udp", "EXPOSE", "80/udp", (), None),
        (
            'HEALTHCHECK --retries=2 CMD ["true"]',
            "HEALTHCHECK",
            'CMD ["true"]',
            (("retries", "2"),),
            ("true",),
        ),
        ("STOPSIGNAL SIGQUIT", "STOPSIGNAL", "SIGQUIT", (), None),
    ],
)
def test_each_instruction(
    text: str, name: str, args: str, flags: tuple[tuple[str, str], ...], json_args: object
) -> None:
    inst = one(text)
    assert (inst.name, inst.args, inst.flags, inst.json_args) == (name, args, flags, json_args)


def test_continuations_comments_and_line_numbers() -> None:
    text = "# a comment\n\nFROM x\nRUN echo a \\\n  && echo b \\\n# inside\n  && echo c\n\nCMD sh\n"
    escape, insts = parse_instructions(text, "Containerfile")
    assert escape == "\\"
    assert [(i.name, i.line) for i in insts] == [("FROM", 3), ("RUN", 4), ("CMD", 9)]
    assert insts[1].args == "echo a   && echo b   && echo c"


def test_escape_directive_backtick() -> None:
    text = "# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo ok\n"
    escape, insts = parse_instructions(text, "Containerfile")
    assert escape == "`"
    assert insts[1].args == "dir c:\\   && echo ok"
    assert split_words("a` b c", {}, "`") == ["a b", "c"]


def test_directive_only_at_top() -> None:
    escape, _ = parse_instructions("FROM x\n# escape=`\nRUN a\n", "Containerfile")
    assert escape == "\\"
    with pytest.raises(Invalid, match=r"Containerfile:1: invalid escape"):
        parse_instructions("# escape=x\nFROM a\n", "Containerfile")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$A", {"A": "1"}, ["1"]),
        ("${A}b", {"A": "1"}, ["1b"]),
        ("${A:-x} ${B:-y}", {"A": "1", "B": ""}, ["1", "y"]),
        ("${B-y}", {"B": ""}, []),
        ("${A:+set} ${B:+set}", {"A": "1", "B": ""}, ["set"]),
        ("${U:-${A}x}", {"A": "1"}, ["1x"]),
        ("'$A' \"$A b\"", {"A": "1"}, ["$A", "1 b"]),
        ("\\$A a\\ b", {"A": "1"}, ["$A", "a b"]),
        ("$ $1 ${U} ''", {}, ["$", ""]),
    ],
)
def test_substitution(text: str, env: dict[str, str], expected: list[str]) -> None:
    assert split_words(text, env) == expected


def test_substitution_errors() -> None:
    with pytest.raises(Invalid, match="A: need it"):
        expand("${A:?need it}", {})
    with pytest.raises(Invalid, match="unmatched"):
        split_words("'abc", {})
    with pytest.raises(Invalid, match="unsupported modifier"):
        expand("${A/x/y}", {"A": "1"})


def test_key_values_both_forms() -> None:
    assert key_values('A=1 B="two words" C=$A', {"A": "0"}) == [
        ("A", "1"),
        ("B", "two words"),
        ("C", "0"),
    ]
    assert key_values("NAME some value $X", {"X": "x"}) == [("NAME", "some value x")]
    with pytest.raises(Invalid, match="KEY=VALUE"):
        key_values("A=1 B", {})


def test_stages_and_global_args() -> None:
    parsed = parse_containerfile(
        "ARG BASE=busybox\nFROM $BASE AS Build\nRUN true\nFROM scratch\nCOPY --from=build / /\n",
        "Containerfile",
    )
    assert [a.args for a in parsed.global_args] == ["BASE=busybox"]
    assert [(s.index, s.name, len(s.body)) for s in parsed.stages] == [
        (0, "build", 1),
        (1, None, 1),
    ]
    assert parsed.stage_index("BUILD") == 0
    with pytest.raises(Invalid, match="no build stage named 'nope'"):
        parsed.stage_index("nope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\nFROBNICATE y\n", r"Containerfile:2: unknown instruction 'FROBNICATE'"),
        ("RUN true\n", r"Containerfile:1: RUN true: only ARG may come before"),
        ("# nothing\n", r"Containerfile: no FROM"),
        ("FROM a AS b\nFROM c AS b\n", r"Containerfile:2: .*duplicate stage name"),
        ("FROM a b c d\n", r"Containerfile:1: .*FROM takes an image"),
        ("FROM a\n\nRUN\n", r"Containerfile:3: RUN: RUN needs arguments"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message) as caught:
        parse_containerfile(text, "Containerfile")
    assert caught.value.hint


def apply(state: StageState, text: str) -> StageState:
    inst = one(text)
    config_steps.HANDLERS[inst.name](state, inst, "\\")
    return state


def test_config_instructions() -> None:
    state = StageState(key="scratch")
    apply(state, "ENV A=1 B=${A}2")
    apply(state, "ENV C the rest")
    assert state.config.Env == ["A=1", "B=2", "C=the rest"]
    apply(state, 'LABEL "x y"=z version=$A')
    assert state.config.Labels == {"x y": "z", "version": "1"}
    apply(state, "USER nobody:nogroup")
    assert state.config.User == "nobody:nogroup"
    apply(state, "CMD echo $A")
    assert state.config.Cmd == ["/bin/sh", "-c", "echo $A"]
    apply(state, 'ENTRYPOINT ["/bin/tini"]')
    assert state.config.Entrypoint == ["/bin/tini"] and state.config.Cmd is not None
    apply(state, "EXPOSE 80 53/udp 8000-8001")
    assert set(state.config.ExposedPorts or {}) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}
    apply(state, "STOPSIGNAL SIGQUIT")
    assert state.config.StopSignal == "SIGQUIT"
    apply(state, "VOLUME /data /logs")
    assert set(state.config.Volumes or {}) == {"/data", "/logs"}
    apply(state, 'SHELL ["/bin/sh", "-ec"]')
    apply(state, "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s --retries=4 CMD x")
    check = state.config.Healthcheck
    assert check is not None and check.Test == ["CMD-SHELL", "x"]
    assert (check.Interval, check.Timeout, check.StartPeriod, check.Retries) == (
        90 * 10**9,
        500 * 10**6,
        2 * 10**9,
        4,
    )
    apply(state, 'HEALTHCHECK CMD ["wget", "-q", "localhost"]')
    assert state.config.Healthcheck and state.config.Healthcheck.Test == [
        "CMD",
        "wget",
        "-q",
        "localhost",
    ]
    apply(state, "HEALTHCHECK NONE")
    assert state.config.Healthcheck and state.config.Healthcheck.Test == ["NONE"]


def test_inherited_cmd_dropped_by_entrypoint() -> None:
    state = StageState(key="x")
    state.config.Cmd = ["sh"]
    apply(state, "ENTRYPOINT ls")
    assert state.config.Cmd is None and state.config.Entrypoint == ["/bin/sh", "-c", "ls"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EXPOSE http", "invalid port"),
        ("EXPOSE 0", "invalid port range"),
        ("STOPSIGNAL 'kill me'", "invalid signal"),
        ("HEALTHCHECK --interval=soon CMD x", "invalid duration"),
        ("HEALTHCHECK --bogus=1 CMD x", "unknown HEALTHCHECK option"),
        ("HEALTHCHECK x", "needs CMD command or NONE"),
        ("SHELL sh -c", "needs the JSON form"),
    ],
)
def test_config_errors(text: str, message: str) -> None:
    with pytest.raises(Invalid, match=f"Containerfile:1: .*{message}"):
        apply(StageState(key="x"), text)
