"""Read Compose YAML into plain Python values plus a map of where each value was written.

libyaml composes the node graph; we construct values ourselves so that
- plain scalars follow YAML 1.2's core schema, as the reference loader does (`yes` stays a string,
  `0o440` and `0440` are octal ints),
- every key path gets a `(line, column)` so later errors can point at the file,
- `!reset` / `!override` become `Reset` / `Override` markers for the merge step,
- merge keys (`<<`) and aliases work, and alias bombs are refused instead of eating memory,
- duplicate keys and non-string keys are errors, as in `docker compose`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from shoal.compose.tags import Override, Reset
from shoal.model.errors import ComposeError, KeyPath, Location, format_path

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml is present in the pinned wheel
    _Loader = yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

_INT_RE = re.compile(r"[-+]?(0|[1-9][0-9]*)\Z")
_OCT_RE = re.compile(r"[-+]?0o?[0-7]+\Z")
_HEX_RE = re.compile(r"[-+]?0x[0-9a-fA-F]+\Z")
_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF_RE = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN_RE = re.compile(r"\.(nan|NaN|NAN)\Z")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUES = frozenset({"true", "True", "TRUE"})
_FALSES = frozenset({"false", "False", "FALSE"})

# Alias expansion budget: far above any real Compose file, far below a "billion laughs".
MAX_NODES = 200_000


@dataclass
class SourceMap:
    """Where each key path of one document was written (1-based line and column)."""

    file: str
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> Location | None:
        """The location of `path`, or of its nearest ancestor that was written down."""
        p = tuple(path)
        while True:
            pos = self.positions.get(p)
            if pos is not None:
                return Location(self.file, pos[0], pos[1])
            if not p:
                return None
            p = p[:-1]


@dataclass
class Document:
    data: Any
    source: SourceMap


def resolve_plain(text: str) -> Any:
    """A plain (unquoted) scalar under YAML 1.2's core schema, octal as Go's yaml.v3 reads it."""
    if text in _NULLS:
        return None
    if text in _TRUES:
        return True
    if text in _FALSES:
        return False
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT_RE.match(text):
            return int(text)
        if _OCT_RE.match(text):
            sign = -1 if text[0] == "-" else 1
            digits = text.lstrip("+-")
            digits = digits[2:] if digits.startswith("0o") else digits[1:]
            return sign * int(digits, 8)
        if _HEX_RE.match(text):
            return int(text, 16)
        if _FLOAT_RE.match(text):
            return float(text)
        if _INF_RE.match(text):
            return float("-inf") if text[0] == "-" else float("inf")
        if _NAN_RE.match(text):
            return float("nan")
    return text


class _Builder:
    def __init__(self, source: SourceMap, text: str) -> None:
        self.source = source
        self.text = text
        self.budget = MAX_NODES
        self.active: set[int] = set()

    def error(self, message: str, node: yaml.Node, path: KeyPath) -> ComposeError:
        mark = node.start_mark
        return ComposeError(
            message,
            path=path,
            location=Location(self.source.file, mark.line + 1, mark.column + 1),
        )

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.error(
                f"document expands to more than {MAX_NODES} values (aliases nested too deep)",
                node,
                path,
            )
        tag = node.tag
        if tag == "!reset":
            return Reset()
        if tag == "!override":
            node.tag = _MAP if isinstance(node, yaml.MappingNode) else _SEQ
            try:
                return Override(self.build(node, path))
            finally:
                node.tag = "!override"
        if tag.startswith("!") and not tag.startswith("!!"):
            raise self.error(
                f"unknown YAML tag {tag} at {format_path(path) or 'top level'}", node, path
            )
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            raise self.error("recursive alias: a node refers to itself", node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                out = []
                for i, item in enumerate(node.value):
                    item_path = (*path, i)
                    self.record(item_path, item)
                    out.append(self.build(item, item_path))
                return out
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def record(self, path: KeyPath, node: yaml.Node) -> None:
        if path not in self.source.positions:
            mark = node.start_mark
            self.source.positions[path] = (mark.line + 1, mark.column + 1)

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        text: str = node.value
        tag = node.tag
        if node.style:  # quoted or block scalar: a string unless explicitly tagged
            if tag == _STR or not tag.startswith("tag:yaml.org,2002:"):
                return text
            return self.explicit(text, tag, node, path)
        index = node.start_mark.index
        if self.text.startswith("!", index):  # an explicit tag such as `!!str 123`
            return self.explicit(text, tag, node, path)
        # libyaml resolved the plain scalar under YAML 1.1; resolve it again under 1.2.
        return resolve_plain(text)

    def explicit(self, text: str, tag: str, node: yaml.Node, path: KeyPath) -> Any:
        if tag == _STR or not tag.startswith("tag:yaml.org,2002:"):
            return text
        value = resolve_plain(text)
        ok = {
            _INT: isinstance(value, int) and not isinstance(value, bool),
            _FLOAT: isinstance(value, (int, float)) and not isinstance(value, bool),
            _BOOL: isinstance(value, bool),
            _NULL: value is None,
        }.get(tag)
        if ok is None:
            return text
        if ok:
            return float(value) if tag == _FLOAT else value
        raise self.error(f"cannot read {text!r} as {tag.rsplit(':', 1)[-1]}", node, path)

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(
                    f"non-string key {_where(path)}: keys must be plain strings", key_node, path
                )
            key = self.scalar(key_node, path)
            if not isinstance(key, str):
                raise self.error(f"non-string key {_where(path)}: {key_node.value}", key_node, path)
            if key in seen:
                raise self.error(
                    f'mapping key "{key}" already defined at line {seen[key]}', key_node, path
                )
            seen[key] = key_node.start_mark.line + 1
            child = (*path, key)
            self.record(child, key_node)
            out[key] = self.build(value_node, child)
        for merge_node in merges:
            self.merge_into(out, merge_node, path)
        return out

    def merge_into(self, out: dict[str, Any], merge_node: yaml.Node, path: KeyPath) -> None:
        """`<<: *a` or `<<: [*a, *b]`: explicit keys win, then earlier sources over later."""
        sources = merge_node.value if isinstance(merge_node, yaml.SequenceNode) else [merge_node]
        for src in sources:
            if not isinstance(src, yaml.MappingNode):
                raise self.error("merge key << needs a mapping or a list of mappings", src, path)
            merged = self.build(src, path)
            for key, value in merged.items():
                out.setdefault(key, value)


def _where(path: KeyPath) -> str:
    return f"in {format_path(path)}" if path else "at top level"


def _translate(exc: yaml.YAMLError, text: str, filename: str) -> ComposeError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    at_tab = mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t"
    if at_tab or "'\\t'" in problem:
        message = "found a tab character that violates indentation"
    else:
        message = f"{context}, {problem}" if context else str(problem)
    if mark is not None:
        loc = Location(filename, mark.line + 1, mark.column + 1)
    else:
        position = getattr(exc, "position", 0) or 0  # ReaderError: bad characters
        before = text[:position]
        loc = Location(filename, before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)
        if isinstance(exc, yaml.reader.ReaderError):
            message = f"unacceptable character {exc.character!r}: {exc.reason}"
    return ComposeError(f"invalid YAML: {message}", location=loc)


def iter_documents(text: str, filename: str) -> Iterator[Document]:
    """Every YAML document in `text` (a file may hold several, separated by `---`)."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise _translate(exc, text, filename) from None
    except (ValueError, RecursionError) as exc:  # e.g. lone surrogates, absurd nesting
        raise ComposeError(f"invalid YAML: {exc}", location=Location(filename, 1, 1)) from None
    for node in nodes:
        if node is None:
            continue
        source = SourceMap(filename)
        source.positions[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
        builder = _Builder(source, text)
        try:
            data = builder.build(node, ())
        except RecursionError:
            raise ComposeError(
                "invalid YAML: nested too deep", location=Location(filename, 1, 1)
            ) from None
        yield Document(data, source)


def load_documents(text: str, filename: str) -> list[Document]:
    """Parse a Compose file into documents whose top level is a mapping."""
    docs = list(iter_documents(text, filename))
    if not docs:
        raise ComposeError("empty compose file", location=Location(filename, 1, 1))
    for doc in docs:
        if not isinstance(doc.data, dict):
            line, col = doc.source.positions.get((), (1, 1))
            raise ComposeError(
                "top-level object must be a mapping", location=Location(filename, line, col)
            )
    return docs
