"""Containerfile (Dockerfile) syntax: directives, comments, continuations, flags, exec form.

`parse_containerfile(text, name)` turns the file into instructions grouped in stages. It does no
variable substitution (that needs the build's ARG and ENV state, see `words.py`); it only splits
each instruction into its keyword, its leading `--flag=value` options, and its argument text,
and recognises the JSON (exec) form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from shoal.model.errors import Invalid

KNOWN = frozenset(
    [
        "FROM",
        "ARG",
        "ENV",
        "LABEL",
        "WORKDIR",
        "USER",
        "COPY",
        "ADD",
        "RUN",
        "CMD",
        "ENTRYPOINT",
        "EXPOSE",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "SHELL",
        "VOLUME",
        "MAINTAINER",
        "ONBUILD",
    ]
)
# Instructions whose arguments may start with `--name=value` options.
_FLAGGED = frozenset({"FROM", "COPY", "ADD", "RUN", "HEALTHCHECK"})
# Instructions that accept the JSON (exec) form.
_JSON_FORM = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction: `RUN --network=none echo hi` → name RUN, flags, args `echo hi`."""

    name: str
    args: str
    line: int
    file: str
    flags: tuple[tuple[str, str], ...] = ()
    json_args: tuple[str, ...] | None = None  # the exec form, when the args are a JSON list

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def text(self) -> str:
        flags = " ".join(f"--{k}={v}" for k, v in self.flags)
        return " ".join(p for p in (self.name, flags, self.args) if p)

    def flag(self, name: str) -> str | None:
        for key, value in self.flags:
            if key == name:
                return value
        return None

    def error(self, message: str, hint: str | None = None) -> Invalid:
        """An `Invalid` naming the file, the line and the instruction."""
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return Invalid(f"{self.where}: {shown}: {message}", hint=hint)


@dataclass(slots=True)
class Stage:
    index: int
    name: str | None  # the `AS name`, lower-cased
    base: Instruction  # its FROM
    body: list[Instruction] = field(default_factory=list)


@dataclass(slots=True)
class Containerfile:
    file: str
    escape: str
    global_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]

    def stage_index(self, target: str) -> int:
        for stage in self.stages:
            if stage.name == target.lower():
                return stage.index
        names = ", ".join(s.name for s in self.stages if s.name) or "none"
        raise Invalid(
            f"{self.file}: no build stage named {target!r}",
            hint=f"--target names a stage from `FROM image AS name`; stages here: {names}",
        )


def _directives(lines: list[str], file: str) -> tuple[str, int]:
    """The escape character and the index of the first line after the parser directives."""
    escape = "\\"
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if not match:
            return escape, index
        key, value = match.group(1).lower(), match.group(2)
        if key in seen:
            raise Invalid(f"{file}:{index + 1}: parser directive {key!r} given twice")
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise Invalid(
                    f"{file}:{index + 1}: invalid escape directive {value!r}",
                    hint="the escape character must be \\ or `",
                )
            escape = value
    return escape, len(lines)


def _logical_lines(text: str, file: str) -> tuple[str, list[tuple[int, str]]]:
    """Join continued lines, drop comments; yields (first line number, joined text)."""
    lines = text.splitlines()
    escape, start = _directives(lines, file)
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for number, raw in enumerate(lines[start:], start=start + 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comments vanish, even in the middle of a continued instruction
        if not pending and not stripped:
            continue
        if not pending:
            first = number
        body = raw.rstrip()
        if body.endswith(escape):
            pending.append(body[: -len(escape)])
            continue
        if pending and not stripped:
            continue  # an empty line inside a continuation is tolerated, as Docker does
        pending.append(raw)
        out.append((first, "".join(pending).strip()))
        pending = []
    if pending:
        joined = "".join(pending).strip()
        if joined:
            out.append((first, joined))
    return escape, out


def _split_flags(name: str, rest: str) -> tuple[tuple[tuple[str, str], ...], str]:
    if name not in _FLAGGED:
        return (), rest
    flags: list[tuple[str, str]] = []
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        match = _FLAG.fullmatch(word)
        if not match:
            break
        flags.append((match.group(1).lower(), match.group(2) or ""))
        rest = after.lstrip()
    return tuple(flags), rest


def _json_form(args: str) -> tuple[str, ...] | None:
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None  # Docker treats a malformed list as the shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def parse_instructions(text: str, file: str = "Containerfile") -> tuple[str, list[Instruction]]:
    """Every instruction of the file, in order, and the escape character in force."""
    escape, logical = _logical_lines(text, file)
    result: list[Instruction] = []
    for line, content in logical:
        keyword, _, rest = content.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = f"{more} {rest}".strip()
        name = keyword.upper()
        if name not in KNOWN:
            raise Invalid(
                f"{file}:{line}: unknown instruction {keyword!r}",
                hint=f"instructions are: {', '.join(sorted(KNOWN))}",
            )
        flags, args = _split_flags(name, rest.strip())
        json_args = _json_form(args) if name in _JSON_FORM else None
        if name == "HEALTHCHECK":
            json_args = _json_form(args.partition(" ")[2].strip() or args)
        result.append(Instruction(name, args, line, file, flags, json_args))
    return escape, result


def parse_containerfile(text: str, file: str = "Containerfile") -> Containerfile:
    """Parse the whole file into global ARGs and stages; `Invalid` names file:line."""
    escape, instructions = parse_instructions(text, file)
    parsed = Containerfile(file, escape, [], [])
    for inst in instructions:
        if inst.name == "FROM":
            words = inst.args.split()
            name: str | None = None
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
                    raise inst.error(
                        f"invalid stage name {words[2]!r}",
                        hint="a stage name starts with a letter: letters, digits, . _ -",
                    )
                if any(s.name == name for s in parsed.stages):
                    raise inst.error(
                        f"duplicate stage name {name!r}", hint="give each stage its own name"
                    )
            elif len(words) != 1:
                raise inst.error(
                    "FROM takes an image and an optional `AS name`",
                    hint="FROM [--platform=P] IMAGE [AS NAME]",
                )
            parsed.stages.append(Stage(len(parsed.stages), name, inst))
        elif not parsed.stages:
            if inst.name != "ARG":
                raise inst.error(
                    "only ARG may come before the first FROM",
                    hint="start the file with FROM IMAGE (or FROM scratch)",
                )
            parsed.global_args.append(inst)
        else:
            parsed.stages[-1].body.append(inst)
        if not inst.args.strip() and inst.name != "FROM":
            raise inst.error(
                f"{inst.name} needs arguments", hint="see the Dockerfile reference for its form"
            )
    if not parsed.stages:
        raise Invalid(f"{file}: no FROM instruction", hint="a Containerfile starts with FROM")
    return parsed
