"""Messages a person spreads over several lines (pretty-printed JSON).

Maelstrom sends one message per line, and that stays the fast path: a line is
decoded on its own first. Only a line that fails to decode and could begin a
JSON object opens a *fragment*; the lines after it are added to it until the
object is complete. A tokenizer run line by line says, without decoding the
whole fragment again at every line (which would cost time quadratic in its
size), whether the fragment is still the beginning of a JSON object, is one,
or can no longer be one.

Resynchronisation: while a fragment is open, a line that is a whole message on
its own (a JSON object with a "body") is taken as one, and the fragment is
dropped; so is a fragment that a line turns into something no JSON object
starts with, and that line is then read afresh. A fragment holds at most
`max_bytes`; past that its text is dropped and the rest of the message skipped.
One nested deeper than MAX_NESTING is dropped too: what it holds stays bounded.
"""

from __future__ import annotations

import re
from enum import Enum

# One JSON token, or whitespace, or (last) any character no token starts with.
# A string cannot span lines (a raw newline in one is not JSON), so each line
# is tokenized on its own.
_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<str>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
  | (?P<atom>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![0-9A-Za-z.+-])|true|false|null)
  | (?P<punct>[{}\[\],:])
  | (?P<bad>.)
""", re.VERBOSE | re.DOTALL)


class Shape(Enum):
    OPEN = "open"  # the beginning of a JSON object, not yet its end
    WHOLE = "whole"  # one JSON object, complete
    BROKEN = "broken"  # nothing a JSON object starts with


# Nesting past which a fragment is no message: Python's parser could not decode it
# (its recursion limit), and following it would hold a stack entry per bracket, so
# a never-closed run of `[` lines would hold memory without bound.
MAX_NESTING = 1000

# What the tokenizer expects next.
_START, _KEY_OR_END, _KEY, _COLON, _VALUE, _VALUE_OR_END, _COMMA_OR_END, _DONE = range(8)


class JsonPrefix:
    """Follows a JSON object's text as it comes, line by line."""

    __slots__ = ("stack", "expect", "broken")

    def __init__(self) -> None:
        self.stack: list[str] = []  # the open containers, "{" or "["
        self.expect = _START
        self.broken = False

    def feed(self, text: str) -> Shape:
        if not self.broken:
            for match in _TOKEN.finditer(text):
                kind = match.lastgroup
                if kind == "ws":
                    continue
                token = "s" if kind == "str" else "v" if kind == "atom" else match.group()
                if kind == "bad" or not self._take(token):
                    self.broken = True
                    break
        if self.broken or self.expect == _START:  # (nothing at all is not the beginning of an object)
            return Shape.BROKEN
        return Shape.WHOLE if self.expect == _DONE else Shape.OPEN

    def _take(self, token: str) -> bool:
        """One token: "s" a string, "v" a number or literal, else the punctuation itself."""
        expect, stack = self.expect, self.stack
        if expect == _START:
            if token != "{":
                return False
            stack.append("{")
            self.expect = _KEY_OR_END
        elif expect in (_KEY_OR_END, _KEY):
            if token == "s":
                self.expect = _COLON
            elif token == "}" and expect == _KEY_OR_END:
                self._close()
            else:
                return False
        elif expect == _COLON:
            if token != ":":
                return False
            self.expect = _VALUE
        elif expect in (_VALUE, _VALUE_OR_END):
            if token in ("s", "v"):
                self._after_value()
            elif token in ("{", "["):
                if len(stack) >= MAX_NESTING:
                    return False
                stack.append(token)
                self.expect = _KEY_OR_END if token == "{" else _VALUE_OR_END
            elif token == "]" and expect == _VALUE_OR_END:
                self._close()
            else:
                return False
        elif expect == _COMMA_OR_END:
            top = stack[-1]
            if token == ",":
                self.expect = _KEY if top == "{" else _VALUE
            elif (token == "}" and top == "{") or (token == "]" and top == "["):
                self._close()
            else:
                return False
        else:  # _DONE: anything after the object's end
            return False
        return True

    def _close(self) -> None:
        self.stack.pop()
        self._after_value()

    def _after_value(self) -> None:
        self.expect = _COMMA_OR_END if self.stack else _DONE


class Fragment:
    """The lines of one message being spread over several, and how far it has come."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.lines: list[str] = []
        self.size = 0
        self.skipping = False  # past max_bytes: the rest of the message is read and dropped
        self.prefix: JsonPrefix | None = None

    @property
    def open(self) -> bool:
        return self.prefix is not None

    def begin(self, text: str) -> bool:
        """Open a fragment with this line if it is the beginning of a JSON object (and no more)."""
        prefix = JsonPrefix()
        if len(text) > self.max_bytes or prefix.feed(text) is not Shape.OPEN:  # (a long line is not tokenized)
            return False
        self.prefix, self.lines, self.size, self.skipping = prefix, [text], len(text), False
        self._bound()
        return True

    def add(self, text: str) -> Shape:
        """One more line. WHOLE: `take()` the message's text; BROKEN: the fragment is dropped."""
        assert self.prefix is not None
        if len(text) > self.max_bytes:  # no line of a message a person wrote: not worth tokenizing
            self.drop()
            return Shape.BROKEN
        shape = self.prefix.feed(text)
        if shape is Shape.BROKEN:
            self.drop()
        elif not self.skipping:
            self.lines.append(text)
            self.size += len(text) + 1
            self._bound()
        return shape

    def _bound(self) -> None:
        if self.size > self.max_bytes:
            self.lines, self.size, self.skipping = [], 0, True

    def take(self) -> str | None:
        """The whole message's text (None if it was skipped for its size), and the fragment closed."""
        text = None if self.skipping else "\n".join(self.lines)
        self.drop()
        return text

    def drop(self) -> None:
        self.prefix, self.lines, self.size, self.skipping = None, [], 0, False
