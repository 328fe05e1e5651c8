"""The JSON Schema subset the tools' input schemas use, checked before a tool runs.

Tools declare `object` schemas whose properties are strings, integers, booleans or arrays
of strings, with `required`, `enum`, `minimum`/`maximum`, `maxLength`, `maxItems` and
`additionalProperties: false`. That subset is checked here with messages a model can act
on; nothing else is accepted in a tool's schema (a test walks every schema).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "description",
        "enum",
        "minimum",
        "maximum",
        "maxLength",
        "minLength",
        "items",
        "maxItems",
        "minItems",
        "default",
    }
)
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class InvalidArguments(ValueError):
    pass


def check(schema: Schema, value: Any, where: str = "arguments") -> None:
    """Raise `InvalidArguments` naming the first place `value` breaks `schema`."""
    kind = schema["type"]
    typed = isinstance(value, _TYPES[kind]) and not (kind == "integer" and isinstance(value, bool))
    if not typed:
        raise InvalidArguments(f"{where}: expected {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidArguments(f"{where}: one of {', '.join(map(str, schema['enum']))}")
    if kind == "integer":
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise InvalidArguments(
                f"{where}: between {schema.get('minimum')} and {schema.get('maximum')}"
            )
    elif kind == "string":
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            raise InvalidArguments(
                f"{where}: length {schema.get('minLength', 0)} to {schema.get('maxLength')}"
            )
    elif kind == "array":
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            raise InvalidArguments(
                f"{where}: {schema.get('minItems', 0)} to {schema.get('maxItems')} items"
            )
        for index, item in enumerate(value):
            check(schema["items"], item, f"{where}[{index}]")
    elif kind == "object":
        properties: dict[str, Schema] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise InvalidArguments(f"{where}: {name} is required")
        for name, item in value.items():
            if name not in properties:
                raise InvalidArguments(f"{where}: unknown argument {name}")
            check(properties[name], item, f"{where}.{name}")
