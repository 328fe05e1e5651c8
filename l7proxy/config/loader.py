"""Load the YAML configuration once, validate all of it, and say exactly where it is wrong.

yaml composes the file into a node tree (with line marks); the loader turns it into plain
values while remembering each value's node, the schema (`schema.py`) validates them, and the
first failure comes back as `gw.yaml:14: connections[1].server: ...`. Nothing downstream
re-checks the values: the frozen `settings` types it returns are trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from l7proxy.config.fields import Loc
from l7proxy.config.schema import ConfigModel
from l7proxy.config.settings import Config

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_CONSTRUCTOR = SafeConstructor()

# pydantic's own failures, in the file's words; `{got}` is the value as the file has it.
_MESSAGES = {
    "string_type": "expected a string, got {got}{hint}",
    "string_too_short": "expected a non-empty string",
    "bool_type": "expected true or false, got {got}",
    "dict_type": "expected a mapping, got {got}",
    "model_attributes_type": "expected a mapping, got {got}",
}


class ConfigError(Exception):
    """A configuration mistake, located (`file:line: key.path: what`) so it can be fixed
    without reading a traceback."""

    def __init__(self, file: str, message: str, *, line: int | None = None, key: str = "") -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def load_config(path: Path) -> Config:
    """Read, parse and validate `path`; every mistake is a `ConfigError`, never a traceback."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, "configuration file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(
            name, f"cannot read the configuration file: {exc.strerror or exc}"
        ) from None
    root = _compose(name, text)
    if root is None:
        raise ConfigError(
            name,
            "the file is empty; expected a mapping with listen, identity, connections and policies",
            line=1,
        )
    source = os.path.abspath(path)
    document = _Document(name)
    values = document.plain(root, ())
    try:
        model = ConfigModel.model_validate(values, context={"base": Path(source).parent})
    except ValidationError as exc:
        raise document.located(exc.errors()[0]) from None
    return model.settings(source)


def _compose(name: str, text: str) -> Node | None:
    """The node tree (with line marks), or yaml's own complaint at yaml's own line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context
        line = None if mark is None else mark.line + 1
        raise ConfigError(name, f"invalid YAML: {problem}", line=line) from None
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError(name, message, line=line) from None
    except RecursionError:
        raise ConfigError(name, "invalid YAML: nested too deeply") from None


class _Opaque:
    """A scalar that no schema type accepts (a timestamp, a mistagged `!!int x`, `!foo`)."""


class _Document:
    """One file's values, with the node each came from (and each mapping key's node)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: dict[Loc, Node] = {}
        self.keys: dict[Loc, Node] = {}

    def fail(self, node: Node, loc: Loc, message: str) -> ConfigError:
        return ConfigError(self.name, message, line=node.start_mark.line + 1, key=_key(loc))

    def plain(self, node: Node, loc: Loc, depth: int = 0) -> Any:
        """Mappings as dicts, lists as tuples, scalars as yaml's core schema reads them."""
        if depth > 100:  # a recursive alias, or absurd nesting
            raise self.fail(node, loc, "nested too deeply")
        self.nodes[loc] = node
        if isinstance(node, ScalarNode):
            return _scalar(node)
        if isinstance(node, SequenceNode):
            return tuple(
                self.plain(item, (*loc, index), depth + 1) for index, item in enumerate(node.value)
            )
        values: dict[str, Any] = {}
        for key, value in node.value:
            if not (isinstance(key, ScalarNode) and key.tag == _STR and key.value):
                raise self.fail(key, loc, f"expected a non-empty string key, got {_describe(key)}")
            if key.value in values:
                first = self.keys[(*loc, key.value)].start_mark.line + 1
                raise self.fail(key, (*loc, key.value), f"duplicate key (first at line {first})")
            self.keys[(*loc, key.value)] = key
            values[key.value] = self.plain(value, (*loc, key.value), depth + 1)
        return values

    def located(self, error: ErrorDetails) -> ConfigError:
        loc: Loc = ()
        for part in error["loc"]:  # parts that name no value are pydantic's (a union's tag)
            if (*loc, part) in self.nodes:
                loc = (*loc, part)
        context = error.get("ctx") or {}
        kind = error["type"]
        if kind == "l7proxy":
            base, loc, message = loc, (*loc, *context["at"]), context["message"]
            node = {"key": self.keys, "value": self.nodes}.get(context["line"], {}).get(loc)
            if node is None:  # the line of the mapping that lacks the key
                node = self.nodes[loc[:-1]]
            if context["first"]:
                first = self.nodes[(*base, *context["first"])]
                message += f" (first at line {first.start_mark.line + 1})"
        elif kind.startswith("union_tag"):
            loc, message = self.connection_type(loc)
            node = self.nodes.get(loc) or self.nodes[loc[:-1]]
        else:
            node = self.nodes[loc]
            message = _MESSAGES.get(kind, error["msg"])
        hint = " (quote it to make it a string)" if node.tag in (_INT, _FLOAT, _BOOL) else ""
        message = message.replace("{got}", _describe(node)).replace("{hint}", hint)
        return self.fail(node, loc, message)

    def connection_type(self, loc: Loc) -> tuple[Loc, str]:
        """A connection's `type` decides which keys the rest of its mapping may have."""
        loc = (*loc, "type")
        node = self.nodes.get(loc)
        if node is None:
            return loc, "missing required key (static or eks)"
        if not (isinstance(node, ScalarNode) and node.tag == _STR):
            return loc, _MESSAGES["string_type"]
        if not node.value:
            return loc, _MESSAGES["string_too_short"]
        return loc, f"expected static or eks, got {node.value!r}"


def _scalar(node: ScalarNode) -> Any:
    try:
        match node.tag:
            case "tag:yaml.org,2002:str":
                return node.value
            case "tag:yaml.org,2002:null":
                return None
            case "tag:yaml.org,2002:int":
                return _CONSTRUCTOR.construct_yaml_int(node)
            case "tag:yaml.org,2002:float":
                return _CONSTRUCTOR.construct_yaml_float(node)
            case "tag:yaml.org,2002:bool":
                return _CONSTRUCTOR.construct_yaml_bool(node)
    except (ValueError, KeyError):  # an explicit tag on something that is not one
        pass
    return _Opaque()


def _key(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _describe(node: Node) -> str:
    """The offending value as the message shows it: short, and quoted when a string."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "null"
    text: str = node.value
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text) if node.tag == _STR else text
