"""A reader for protobuf text format (`.pbtxt`, OD API `pipeline.config`, label maps).

No protobuf dependency and no schema: `parse` turns the text into a tree of
`Node`s, each with its field name, its value (scalar fields) or children
(messages), and the 1-based line and column where it was written, so that
callers can report `pipeline.config:57: train_config.optimizer.rms_prop_optimizer`.

The syntax read:

    name: value                    # scalar: number, identifier (enum, true) or string
    name: 'it\\'s' "concatenated"  # strings: single or double quotes, C escapes
    name { field: 1 }              # message; also `name: { ... }` and `name < ... >`
    name: [1, 2, 3]                # list of values (or of messages)
    name: 1, other: 2; last: 3     # optional `,` or `;` after a field

A repeated field is simply given several times; `Node.fields(name)` returns
its values in order, with lists expanded. `#` starts a comment. Syntax errors
raise TextProtoError with the source, line and column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from train_lib.errors import UserError

__all__ = ["LIST", "MESSAGE", "SCALAR_KINDS", "Node", "TextProtoError", "parse", "scalar_value"]

MESSAGE = "message"
LIST = "list"
SCALAR_KINDS = ("string", "number", "identifier")


class TextProtoError(UserError, ValueError):
    """A syntax error in protobuf text; the message is `source:line:column: problem`."""

    def __init__(self, source: str, line: int, column: int, problem: str):
        super().__init__(f"{source}:{line}:{column}: {problem}")
        self.source = source
        self.line = line
        self.column = column
        self.problem = problem


@dataclass
class Node:
    """One field as written in the text.

    Attributes:
        name: the field name (for list items, the list's field name).
        kind: MESSAGE (`children` are its fields), LIST (`children` are the items
            of `name: [...]`), or a scalar kind: "string" (`value` is the decoded
            text), "number" or "identifier" (`value` is the text as written,
            e.g. "0x1F", "-2.5e3", "true", "FREQUENT").
        line: the 1-based line of the field name (of the value, for list items).
        column: the 1-based column, likewise.
        path: the dotted field names from the top, e.g. "train_config.optimizer".
        value: the scalar value; "" for messages and lists.
        children: the fields of a message or the items of a list, in text order.
    """

    name: str
    kind: str
    line: int
    column: int
    path: str
    value: str = ""
    children: list[Node] = field(default_factory=list)

    @property
    def is_message(self) -> bool:
        return self.kind == MESSAGE

    def fields(self, name: str) -> list[Node]:
        """The values of field `name` of this message, in order, list items expanded."""
        out: list[Node] = []
        for child in self.children:
            if child.name == name:
                out.extend(child.children if child.kind == LIST else [child])
        return out


def scalar_value(node: Node) -> int | float | bool | str:
    """A scalar node's value as Python: numbers as int (decimal, hex, octal) or float
    (`1.0f` allowed), `true`/`false` as bool, strings and other identifiers (enum
    names) as str."""
    if node.kind == "number":
        return _number_value(node.value)
    if node.kind == "identifier" and node.value in ("true", "True", "false", "False"):
        return node.value in ("true", "True")
    return node.value


# Identifiers protobuf's text format reads as float values; refused, with numbers beyond
# a float's range: no field of a config or a label map means NaN or infinity.
_NON_FINITE = ("inf", "infinity", "nan")


def _number_value(text: str) -> int | float:
    """A number token's value: int (decimal, hex, octal) or float (`1.0f` allowed)."""
    if not text.lower().lstrip("+-").startswith("0x"):
        text = text.rstrip("fF")
    try:
        return int(text, 0)
    except ValueError:  # a float, or a decimal integer of more digits than Python reads
        return float(text)


# ---------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class _Token:
    kind: str  # identifier | number | string | punct | eof
    text: str  # raw text; for strings the decoded value
    line: int
    column: int


_TOKEN_RE = re.compile(
    r"""
    (?P<newline>\n)
    | (?P<space>[ \t\r\f\v]+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
    | (?P<identifier>[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<punct>[{}<>\[\]:,;])
    """,
    re.VERBOSE,
)

_SIMPLE_ESCAPES = {
    "a": b"\a", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v",
    "\\": b"\\", "'": b"'", '"': b'"', "?": b"?",
}


class _EscapeError(Exception):
    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset = offset  # of the backslash in the string body; -1: the opening quote
        self.problem = problem


def _unescape(body: str) -> str:
    """Decodes the C-style escapes of a string body; _EscapeError on a bad one."""
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        start, esc = i, body[i + 1]  # the tokenizer guarantees a character after a backslash
        i += 2
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc]
        elif esc in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i - 1 :]).group(0)
            out.append(int(digits, 8) & 0xFF)
            i += len(digits) - 1
        elif esc in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i:])
            if not m:
                raise _EscapeError(start, "invalid \\x escape in string")
            out.append(int(m.group(0), 16))
            i += len(m.group(0))
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            m = re.match(rf"[0-9a-fA-F]{{{width}}}", body[i:])
            if not m:
                raise _EscapeError(start, f"invalid \\{esc} escape in string")
            try:
                out += chr(int(m.group(0), 16)).encode("utf-8")
            except (ValueError, UnicodeEncodeError):
                raise _EscapeError(start, f"invalid \\{esc} escape in string") from None
            i += width
        else:
            raise _EscapeError(start, f"unknown escape '\\{esc}' in string")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise _EscapeError(-1, "string escapes do not form valid UTF-8") from None


def _tokenize(text: str, source: str) -> list[_Token]:
    """The tokens of `text`, ending with an eof token; TextProtoError on a lexical error."""
    tokens: list[_Token] = []
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        column = pos - line_start + 1
        m = _TOKEN_RE.match(text, pos)
        if not m:
            signed = re.match(r"[-+](inf|infinity|nan)\b", text[pos:], re.IGNORECASE)
            problem = (
                "unterminated string (strings must close on their line)"
                if text[pos] in "'\"" else
                f"{signed.group(0)!r} is not a finite number; write a finite value"
                if signed else f"unexpected character {text[pos]!r}")
            raise TextProtoError(source, line, column, problem)
        kind, raw = m.lastgroup, m.group(0)
        if kind == "newline":
            line, line_start = line + 1, m.end()
        elif kind == "string":
            try:
                tokens.append(_Token("string", _unescape(raw[1:-1]), line, column))
            except _EscapeError as e:
                raise TextProtoError(source, line, column + 1 + e.offset, e.problem) from None
        elif kind == "number" and m.end() < len(text) and (
                text[m.end()].isalnum() or text[m.end()] == "_"):
            bad = re.match(r"[\w.+-]+", text[pos:]).group(0)
            raise TextProtoError(source, line, column, f"invalid number {bad!r}")
        elif kind in ("number", "identifier", "punct"):
            tokens.append(_Token(kind, raw, line, column))
        pos = m.end()
    tokens.append(_Token("eof", "", line, pos - line_start + 1))
    return tokens


# ---------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the tokens; each method consumes what it parses."""

    def __init__(self, tokens: list[_Token], source: str):
        self._tokens = tokens
        self._pos = 0
        self._source = source

    def _peek(self) -> _Token:
        return self._tokens[self._pos]

    def _next(self) -> _Token:
        tok = self._tokens[self._pos]
        if tok.kind != "eof":
            self._pos += 1
        return tok

    def _accept(self, text: str) -> bool:
        tok = self._peek()
        if tok.kind == "punct" and tok.text == text:
            self._pos += 1
            return True
        return False

    def _error(self, tok: _Token, problem: str) -> TextProtoError:
        return TextProtoError(self._source, tok.line, tok.column, problem)

    @staticmethod
    def _describe(tok: _Token) -> str:
        return "end of file" if tok.kind == "eof" else repr(tok.text)

    def message_fields(self, closing: str | None, path: str) -> list[Node]:
        """The fields up to `closing` (consumed), or to the end of the text if None."""
        fields: list[Node] = []
        while True:
            tok = self._peek()
            if closing is None and tok.kind == "eof":
                return fields
            if closing is not None and tok.kind == "punct" and tok.text == closing:
                self._next()
                return fields
            if tok.kind == "eof":
                raise self._error(tok, f"missing '{closing}' before end of file")
            if tok.kind != "identifier":
                raise self._error(tok, f"expected a field name, found {self._describe(tok)}")
            fields.append(self._field(path))
            if not self._accept(","):
                self._accept(";")

    def _field(self, parent_path: str) -> Node:
        name_tok = self._next()
        name = name_tok.text
        path = f"{parent_path}.{name}" if parent_path else name
        has_colon = self._accept(":")
        tok = self._peek()
        if tok.kind == "punct" and tok.text in "{<":
            return self._message(name, path, name_tok)
        if not has_colon:
            raise self._error(tok, f"expected ':' or '{{' after field name {name!r}, "
                                   f"found {self._describe(tok)}")
        if self._accept("["):
            items = self._list_items(name, path)
            return Node(name, LIST, name_tok.line, name_tok.column, path, children=items)
        return self._scalar(name, path, name_tok)

    def _message(self, name: str, path: str, at: _Token) -> Node:
        """The message whose opening `{` or `<` is the next token; `at` is where it starts."""
        opening = self._next()
        children = self.message_fields("}" if opening.text == "{" else ">", path)
        return Node(name, MESSAGE, at.line, at.column, path, children=children)

    def _list_items(self, name: str, path: str) -> list[Node]:
        """The items after an opening `[`, through the closing `]`."""
        items: list[Node] = []
        if self._accept("]"):
            return items
        while True:
            tok = self._peek()
            if tok.kind == "punct" and tok.text in "{<":
                items.append(self._message(name, path, tok))
            else:
                items.append(self._scalar(name, path, tok))
            if self._accept("]"):
                return items
            if not self._accept(","):
                bad = self._peek()
                raise self._error(bad, f"expected ',' or ']' in list, found {self._describe(bad)}")

    def _check_finite(self, tok: _Token, path: str) -> None:
        """Raises TextProtoError at `tok` if it is nan, inf, infinity or a number beyond a
        float's range (every comparison with NaN is false: it would pass any check)."""
        if tok.kind == "identifier":
            bad = tok.text.lower() in _NON_FINITE
        else:
            value = _number_value(tok.text)
            bad = isinstance(value, float) and not math.isfinite(value)
        if bad:
            raise self._error(tok, f"`{path}` is {tok.text!r:.40}, not a finite number; "
                                   "write a finite value")

    def _scalar(self, name: str, path: str, at: _Token) -> Node:
        """The value that is the next token; adjacent strings concatenate, as in protobuf."""
        tok = self._next()
        if tok.kind == "string":
            text = tok.text
            while self._peek().kind == "string":
                text += self._next().text
            return Node(name, "string", at.line, at.column, path, value=text)
        if tok.kind in ("number", "identifier"):
            self._check_finite(tok, path)
            return Node(name, tok.kind, at.line, at.column, path, value=tok.text)
        raise self._error(tok, f"expected a value, found {self._describe(tok)}")


def parse(text: str, source: str = "<text>") -> Node:
    """Parses protobuf text.

    Args:
        text: the text of one message (a whole .pbtxt / pipeline.config file).
        source: how errors name the text, usually its file path.

    Returns:
        The top-level message: a Node with kind MESSAGE, name "" and path "",
        whose children are the fields in text order.

    Raises:
        TextProtoError: a syntax error, with `line`, `column` and `problem`.
    """
    tokens = _tokenize(text, source)
    children = _Parser(tokens, source).message_fields(None, "")
    return Node("", MESSAGE, 1, 1, "", children=children)
