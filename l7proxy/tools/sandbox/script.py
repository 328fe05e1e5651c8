"""The sandbox shell's grammar: sh's lists, pipelines, redirections and `for` loops.

    list     := and_or ((';' | newline) and_or)*
    and_or   := pipeline (('&&' | '||') pipeline)*
    pipeline := command ('|' command)*
    command  := 'for' NAME 'in' word* sep 'do' list 'done' | (word | redirect)+
    redirect := [digit] ('>' | '>>' | '<') word | [digit] '>&' digit

Words keep their `$NAME`, `${NAME}` and `$?` parts for the shell to expand when it runs
them (a loop's variable changes between runs); expansion never splits a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_NAME_START: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_CHARS: Final = _NAME_START + "0123456789"
_OPERATORS: Final = ("&&", "||", ">>", ">&", ";", "|", ">", "<", "\n")
_UNSUPPORTED: Final = "&()`"


class ScriptError(Exception):
    """A script this shell cannot parse (sh's exit status 2)."""


@dataclass(frozen=True, slots=True)
class Word:
    parts: tuple[tuple[bool, str], ...]  # (is a variable, literal text or variable name)

    @property
    def keyword(self) -> str:
        return self.parts[0][1] if len(self.parts) == 1 and not self.parts[0][0] else ""


@dataclass(frozen=True, slots=True)
class Redirect:
    fd: int
    op: str  # ">", ">>", "<" or ">&"
    target: Word | int


@dataclass(frozen=True, slots=True)
class Simple:
    words: tuple[Word, ...]
    redirects: tuple[Redirect, ...]


@dataclass(frozen=True, slots=True)
class For:
    name: str
    items: tuple[Word, ...]
    body: tuple[AndOr, ...]


@dataclass(frozen=True, slots=True)
class AndOr:
    first: tuple[Simple | For, ...]  # a pipeline
    rest: tuple[tuple[str, tuple[Simple | For, ...]], ...]


Token = Word | str  # a str is an operator


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0
        self.tokens: list[Token] = []
        self.parts: list[tuple[bool, str]] = []
        self.started = False  # a word is open, even an empty quoted one

    def _literal(self, text: str) -> None:
        self.started = True
        if self.parts and not self.parts[-1][0]:
            self.parts[-1] = (False, self.parts[-1][1] + text)
        else:
            self.parts.append((False, text))

    def _end_word(self) -> None:
        if self.started:
            self.tokens.append(Word(tuple(self.parts)))
        self.parts, self.started = [], False

    def _variable(self) -> None:
        text, at = self.text, self.at + 1
        if text.startswith("{", at):
            end = text.find("}", at)
            if end < 0 or not _is_name(text[at + 1 : end]):
                raise ScriptError("syntax error: bad substitution")
            name, self.at = text[at + 1 : end], end + 1
        elif text.startswith("?", at):
            name, self.at = "?", at + 1
        elif at < len(text) and text[at] in _NAME_START:
            end = at
            while end < len(text) and text[end] in _NAME_CHARS:
                end += 1
            name, self.at = text[at:end], end
        else:
            self._literal("$")
            self.at = at
            return
        self.started = True
        self.parts.append((True, name))

    def _double_quoted(self) -> None:
        self.started = True
        self.at += 1
        while self.at < len(self.text):
            char = self.text[self.at]
            if char == '"':
                self.at += 1
                return
            if char == "\\" and self.text[self.at + 1 : self.at + 2] in ('"', "\\", "$", "`"):
                self._literal(self.text[self.at + 1])
                self.at += 2
            elif char == "$":
                self._variable()
            else:
                self._literal(char)
                self.at += 1
        raise ScriptError("syntax error: No closing quotation")

    def _operator(self) -> bool:
        for op in _OPERATORS:
            if self.text.startswith(op, self.at):
                fd = self._fd_prefix() if op in (">", ">>", "<", ">&") else None
                self._end_word()
                if fd is not None:
                    self.tokens.append(str(fd))
                self.tokens.append(op)
                self.at += len(op)
                return True
        return False

    def _fd_prefix(self) -> int | None:
        """`2` in `2>&1`: an unquoted one-digit word right before a redirection."""
        if self.parts == [(False, self.text[self.at - 1])] and self.text[self.at - 1].isdigit():
            self.parts, self.started = [], False
            return int(self.text[self.at - 1])
        return None

    def lex(self) -> list[Token]:
        text = self.text
        while self.at < len(text):
            char = text[self.at]
            if char in " \t":
                self._end_word()
                self.at += 1
            elif char == "#" and not self.started:
                end = text.find("\n", self.at)
                self.at = len(text) if end < 0 else end
            elif self._operator():
                pass
            elif char in _UNSUPPORTED:
                raise ScriptError(f"syntax error: {char!r} is not supported here")
            elif char == "'":
                end = text.find("'", self.at + 1)
                if end < 0:
                    raise ScriptError("syntax error: No closing quotation")
                self._literal(text[self.at + 1 : end])
                self.at = end + 1
            elif char == '"':
                self._double_quoted()
            elif char == "\\":
                self._literal(text[self.at + 1 : self.at + 2])
                self.at += 2
            elif char == "$":
                self._variable()
            else:
                self._literal(char)
                self.at += 1
        self._end_word()
        return self.tokens


def _is_name(text: str) -> bool:
    return bool(text) and text[0] in _NAME_START and all(c in _NAME_CHARS for c in text)


_SEPARATORS: Final = (";", "\n")


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens, self.at = tokens, 0

    def _peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> Token | None:
        token = self._peek()
        self.at += 1
        return token

    def _is_keyword(self, name: str) -> bool:
        token = self._peek()
        return isinstance(token, Word) and token.keyword == name

    def _expect(self, keyword: str) -> None:
        if not self._is_keyword(keyword):
            raise ScriptError(f"syntax error: expected {keyword!r}")
        self.at += 1

    def script(self, *, until: str = "") -> tuple[AndOr, ...]:
        items: list[AndOr] = []
        while True:
            while self._peek() == "\n":
                self.at += 1
            token = self._peek()
            if token is None or (until and self._is_keyword(until)):
                return tuple(items)
            if isinstance(token, str):
                raise ScriptError(f"syntax error near unexpected token {token!r}")
            items.append(self._and_or())
            after = self._peek()
            if after in _SEPARATORS:
                self.at += 1
            elif after is not None and not (until and self._is_keyword(until)):
                raise ScriptError(f"syntax error near unexpected token {after!r}")

    def _and_or(self) -> AndOr:
        first = self._pipeline()
        rest: list[tuple[str, tuple[Simple | For, ...]]] = []
        while (op := self._peek()) in ("&&", "||"):
            self.at += 1
            if self._peek() is None or self._peek() in _SEPARATORS:
                raise ScriptError(f"syntax error: {op!r} at the end of a line")
            rest.append((str(op), self._pipeline()))
        return AndOr(first, tuple(rest))

    def _pipeline(self) -> tuple[Simple | For, ...]:
        commands = [self._command()]
        while self._peek() == "|":
            self.at += 1
            while self._peek() == "\n":
                self.at += 1
            commands.append(self._command())
        return tuple(commands)

    def _command(self) -> Simple | For:
        if self._is_keyword("for"):
            return self._for()
        words: list[Word] = []
        redirects: list[Redirect] = []
        while True:
            token = self._peek()
            if isinstance(token, Word) and not (words == [] and token.keyword in ("do", "done")):
                words.append(token)
                self.at += 1
            elif isinstance(token, str) and (token.isdigit() or token in (">", ">>", "<", ">&")):
                redirects.append(self._redirect())
            else:
                break
        if not words and not redirects:
            token = self._peek()
            shown = "end of file" if token is None else token if isinstance(token, str) else ""
            raise ScriptError(f"syntax error near unexpected token {shown or 'word'!r}")
        return Simple(tuple(words), tuple(redirects))

    def _redirect(self) -> Redirect:
        token = str(self._take())
        fd = int(token) if token.isdigit() else None
        op = str(self._take()) if fd is not None else token
        target = self._take()
        if op == ">&":
            if not (isinstance(target, Word) and target.keyword in ("1", "2")):
                raise ScriptError("syntax error: '>&' takes 1 or 2")
            return Redirect(1 if fd is None else fd, op, int(target.keyword))
        if not isinstance(target, Word):
            raise ScriptError(f"syntax error: {op!r} needs a file name")
        return Redirect((0 if op == "<" else 1) if fd is None else fd, op, target)

    def _for(self) -> For:
        self.at += 1
        name = self._take()
        if not (isinstance(name, Word) and _is_name(name.keyword)):
            raise ScriptError("syntax error: bad for loop variable")
        items: list[Word] = []
        if self._is_keyword("in"):
            self.at += 1
            while isinstance(token := self._peek(), Word):
                items.append(token)
                self.at += 1
        while self._peek() in _SEPARATORS:
            self.at += 1
        self._expect("do")
        body = self.script(until="done")
        self._expect("done")
        return For(name.keyword, tuple(items), body)


def parse_script(script: str) -> tuple[AndOr, ...]:
    return _Parser(_Lexer(script).lex()).script()
