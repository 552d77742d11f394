"""Reading `.env` and `env_file` files by the Compose dotenv rules.

The format is the one Docker Compose reads (compose-go's fork of godotenv): `KEY=VALUE`,
`export KEY=VALUE`, `KEY: VALUE`, `#` comments, single quotes taken literally, double quotes with
backslash escapes and line breaks, `${VAR}` interpolation in unquoted and double-quoted values,
and a bare `KEY` that takes its value from the lookup.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable
from pathlib import Path

from shoal.compose.interpolate import InterpolationError, Lookup, substitute
from shoal.model.errors import ComposeError, Location

__all__ = ["EnvFileNotFoundError", "parse_dotenv", "read_env_file"]

# Blanks inside a line. Not "\n", which ends a statement; the last two are NEL and NBSP, which
# compose-go also treats as blanks.
_BLANKS = " \t\v\f\r\x85\xa0"
_KEY_PUNCTUATION = frozenset("_.-[]")
# An inline comment in an unquoted value starts at a `#` that follows a blank.
_INLINE_COMMENT = re.compile(r"[ \t]#")
# Backslash escapes in double-quoted values: the POSIX `echo` set plus `\"`, `\\` and `\$`.
_ESCAPE = re.compile(r"\\(0[0-9]{0,3}|[\s\S])")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
    # `\$` must survive interpolation as a literal dollar, which `$$` does.
    "$": "$$",
}


class EnvFileNotFoundError(ComposeError, FileNotFoundError):
    """The env file does not exist.

    Also a FileNotFoundError, so callers can skip an optional (`required: false`) env file with
    `except FileNotFoundError` while everyone else gets a ComposeError naming the file.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"env file {path} not found: {reason}")
        self.errno = errno.ENOENT
        self.strerror = reason
        self.filename = str(path)


def _no_lookup(_: str) -> str | None:
    return None


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _unescape_double(match: re.Match[str]) -> str:
    seq = match.group(1)
    if seq[0] == "0" and len(seq) == 4 and all(c in "01234567" for c in seq[1:]):
        code = int(seq[1:], 8)
        if code <= 0xFF:
            return chr(code)
    if len(seq) == 1 and seq in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[seq]
    # Anything else (`\x07`, `\u12e4`, `\q`) keeps its backslash.
    return match.group(0)


class _Parser:
    def __init__(self, text: str, filename: str, lookup: Lookup) -> None:
        self.text = text
        self.filename = filename
        self.lookup = lookup
        self.out: dict[str, str | None] = {}

    def error(self, message: str, pos: int) -> ComposeError:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return ComposeError(message, location=Location(self.filename, line, column))

    def line_at(self, pos: int) -> str:
        end = self.text.find("\n", pos)
        return self.text[pos:] if end < 0 else self.text[pos:end]

    def resolve(self, name: str) -> str | None:
        # The environment wins over the file's own earlier definitions, as in compose-go.
        value = self.lookup(name)
        return self.out.get(name) if value is None else value

    def expand(self, key: str, value: str, pos: int) -> str:
        try:
            return substitute(value, self.resolve)
        except InterpolationError as err:
            raise self.error(f"invalid value for {key}: {err.message}", pos) from None

    def skip_blanks(self, pos: int) -> int:
        text, n = self.text, len(self.text)
        while pos < n and text[pos] in _BLANKS:
            pos += 1
        return pos

    def parse(self) -> dict[str, str | None]:
        text, n = self.text, len(self.text)
        pos = 0
        while True:
            while pos < n and text[pos].isspace():
                pos += 1
            if pos >= n:
                return self.out
            if text[pos] == "#":
                end = text.find("\n", pos)
                if end < 0:
                    return self.out
                pos = end
                continue
            pos = self.statement(pos)

    def statement(self, start: int) -> int:
        text, n = self.text, len(self.text)
        pos = start
        if text.startswith("export", pos) and pos + 6 < n and text[pos + 6] in _BLANKS:
            after = self.skip_blanks(pos + 6)
            # `export = 1` and a lone `export` name a variable called "export".
            if after < n and text[after] not in "=:\n":
                pos = after
        key_start = pos
        while pos < n:
            c = text[pos]
            if c in "=:\n":
                break
            if not (c in _BLANKS or c.isalnum() or c in _KEY_PUNCTUATION):
                raise self.error(
                    f"unexpected character {_quote(c)} in variable name "
                    f"{_quote(self.line_at(start))}",
                    pos,
                )
            pos += 1
        key = text[key_start:pos].strip(_BLANKS)
        if not key:
            raise self.error(f"missing variable name in {_quote(self.line_at(start))}", key_start)
        if any(c in _BLANKS for c in key):
            raise self.error(f"variable name {_quote(key)} cannot contain a space", key_start)
        if pos >= n or text[pos] == "\n":
            # A bare name takes its value from the environment; None when it is not set there.
            self.out[key] = self.lookup(key)
            return pos
        return self.value(key, pos + 1)

    def value(self, key: str, after_separator: int) -> int:
        text, n = self.text, len(self.text)
        pos = self.skip_blanks(after_separator)
        if pos < n and text[pos] in "'\"":
            return self.quoted(key, pos)
        end = text.find("\n", pos)
        if end < 0:
            end = n
        raw = text[after_separator:end]
        comment = _INLINE_COMMENT.search(raw)
        if comment is not None:
            raw = raw[: comment.start()]
        raw = raw.strip(_BLANKS).rstrip()
        self.out[key] = self.expand(key, raw, pos) if "$" in raw else raw
        return end

    def quoted(self, key: str, start: int) -> int:
        text, n = self.text, len(self.text)
        quote = text[start]
        chars: list[str] = []
        pos = start + 1
        while True:
            stop = text.find(quote, pos)
            backslash = text.find("\\", pos, stop if stop >= 0 else n)
            if backslash >= 0:
                chars.append(text[pos:backslash])
                if backslash + 1 >= n:
                    break
                escaped = text[backslash + 1]
                # An escaped quote loses its backslash; other escapes are kept for later.
                chars.append(escaped if escaped == quote else text[backslash : backslash + 2])
                pos = backslash + 2
                continue
            if stop < 0:
                break
            chars.append(text[pos:stop])
            value = "".join(chars)
            if quote == '"':
                value = _ESCAPE.sub(_unescape_double, value)
                if "$" in value:
                    value = self.expand(key, value, start)
            self.out[key] = value
            return self.after_quote(stop + 1)
        raise self.error(f"unterminated quoted value for {key}: {self.line_at(start)}", start)

    def after_quote(self, pos: int) -> int:
        text, n = self.text, len(self.text)
        pos = self.skip_blanks(pos)
        if pos >= n or text[pos] == "\n":
            return pos
        if text[pos] == "#":
            end = text.find("\n", pos)
            return n if end < 0 else end
        raise self.error(f"unexpected {_quote(self.line_at(pos))} after the closing quote", pos)


def parse_dotenv(
    text: str, *, filename: str = "<env>", lookup: Lookup = _no_lookup
) -> dict[str, str | None]:
    """Parse dotenv text into `{name: value}`, in file order; later definitions win.

    `lookup` resolves bare `KEY` lines (None when unset) and variables in values, ahead of the
    names defined earlier in the file. Syntax errors raise ComposeError with the location.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    return _Parser(text, filename, lookup).parse()


def read_env_file(
    path: Path | str, lookup: Callable[[str], str | None] = _no_lookup
) -> dict[str, str | None]:
    """Read and parse an env file (UTF-8, a byte-order mark is allowed)."""
    try:
        # Universal newlines: CRLF files give the same values as LF ones.
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise EnvFileNotFoundError(path, err.strerror or "no such file") from None
    except IsADirectoryError:
        raise ComposeError(f"env file {path} is a directory") from None
    except UnicodeDecodeError as err:
        raise ComposeError(f"env file {path} is not valid UTF-8: {err.reason}") from None
    except OSError as err:
        raise ComposeError(f"env file {path} cannot be read: {err.strerror}") from None
    return parse_dotenv(text, filename=str(path), lookup=lookup)
