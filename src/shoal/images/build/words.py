"""Variable substitution and word splitting, as the Dockerfile reference defines them.

`$VAR` and `${VAR}` expand to the variable (empty when unset); `${VAR:-word}` gives `word` when
VAR is unset or empty, `${VAR:+word}` gives `word` when VAR is set and not empty (the forms
without the colon test only set/unset); `${VAR:?msg}` fails. Single quotes keep their content
literally, double quotes keep spaces but expand variables, and the escape character (`\\` or the
`# escape=` one) makes the next character literal. Quotes are removed from the result.
"""

from __future__ import annotations

from collections.abc import Mapping

from shoal.model.errors import Invalid

_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME = _NAME_START + "0123456789"


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text, self.env, self.escape = text, env, escape
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def words(self, split: bool) -> list[str]:
        """All words (or the whole text as one word when `split` is false)."""
        words: list[str] = []
        current: list[str] = []
        quoted = False  # a quoted empty string is a word; an empty expansion is not
        while self.pos < len(self.text):
            ch = self.take()
            if split and ch in " \t\n":
                if quoted or "".join(current):
                    words.append("".join(current))
                current, quoted = [], False
                continue
            quoted = quoted or ch in "'\""
            if ch == self.escape:
                nxt = self.take()
                current.append(nxt if nxt else ch)
            elif ch == "'":
                current.append(self.until_quote("'"))
            elif ch == '"':
                current.append(self.double_quoted())
            elif ch == "$":
                current.append(self.variable())
            else:
                current.append(ch)
        if quoted or "".join(current):
            words.append("".join(current))
        return words

    def until_quote(self, quote: str) -> str:
        end = self.text.find(quote, self.pos)
        if end < 0:
            raise Invalid(f"unmatched {quote} in {self.text!r}", hint="close the quote")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            ch = self.take()
            if not ch:
                raise Invalid(f'unmatched " in {self.text!r}', hint="close the quote")
            if ch == '"':
                return "".join(out)
            if ch == self.escape:
                nxt = self.take()
                out.append(nxt if nxt in ('"', "$", self.escape) else ch + nxt)
            elif ch == "$":
                out.append(self.variable())
            else:
                out.append(ch)

    def name(self) -> str:
        start = self.pos
        if self.peek().isdigit():  # `$1`: a one-character name, as in the shell
            self.pos += 1
        elif self.peek() and self.peek() in _NAME_START:
            while self.peek() and self.peek() in _NAME:
                self.pos += 1
        return self.text[start : self.pos]

    def variable(self) -> str:
        if self.peek() == "{":
            self.pos += 1
            return self.braced()
        name = self.name()
        if not name:
            return "$"  # a lone `$` stays literal
        return self.env.get(name, "")

    def braced(self) -> str:
        name = self.name()
        if not name:
            raise Invalid(f"bad substitution in {self.text!r}", hint="use ${NAME} or $NAME")
        ch = self.take()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.take()
        if ch not in ("-", "+", "?"):
            raise Invalid(
                f"unsupported modifier in ${{{name}...}} of {self.text!r}",
                hint="supported: ${VAR}, ${VAR:-default}, ${VAR:+alternative}, ${VAR:?error}",
            )
        word = self.word_until_brace()
        value = self.env.get(name)
        present = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if present and value is not None else word
        if ch == "+":
            return word if present else ""
        if not present:
            raise Invalid(f"{name}: {word or 'is not set'}", hint=f"pass --build-arg {name}=...")
        return value or ""

    def word_until_brace(self) -> str:
        out: list[str] = []
        depth = 0
        while True:
            ch = self.take()
            if not ch:
                raise Invalid(f"missing }} in {self.text!r}", hint="close the ${...}")
            if ch == "}" and depth == 0:
                return "".join(out)
            if ch == self.escape:
                out.append(self.take())
            elif ch == "$":
                out.append(self.variable())
            elif ch == "'":
                out.append(self.until_quote("'"))
            elif ch == '"':
                out.append(self.double_quoted())
            else:
                out.append(ch)


def split_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand variables and split on unquoted whitespace, removing quotes."""
    return _Lexer(text, env, escape).words(split=True)


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables in `text` and remove quotes, keeping it one word (spaces kept)."""
    words = _Lexer(text.strip(), env, escape).words(split=False)
    return words[0] if words else ""


def key_values(text: str, env: Mapping[str, str], escape: str = "\\") -> list[tuple[str, str]]:
    """`K=V K2="v 2"` pairs (ENV, LABEL, ARG); the old `K V…` form when the first word has no =."""
    first = text.strip().split(None, 1)
    if first and not any(c in first[0] for c in "=\"'"):
        key = first[0]
        return [(key, expand(first[1], env, escape) if len(first) > 1 else "")]
    pairs: list[tuple[str, str]] = []
    for word in split_words(text, env, escape):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise Invalid(f"expected KEY=VALUE, got {word!r}", hint='quote spaces: K="a b"')
        pairs.append((key, value))
    return pairs
