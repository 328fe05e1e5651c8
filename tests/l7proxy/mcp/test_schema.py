from __future__ import annotations

from typing import Any

import pytest

from l7proxy.mcp.catalog import TOOLS
from l7proxy.mcp.schema import KEYWORDS, InvalidArguments, Schema, check


def _walk(schema: Schema) -> list[Schema]:
    found = [schema]
    for child in schema.get("properties", {}).values():
        found += _walk(child)
    if "items" in schema:
        found += _walk(schema["items"])
    return found


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_every_input_schema_uses_only_the_checked_subset(tool: Any) -> None:
    schema = tool.input_schema
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for part in _walk(schema):
        assert set(part) <= KEYWORDS, set(part) - KEYWORDS
        assert part["type"] in ("object", "string", "integer", "boolean", "array")
    assert set(schema.get("required", ())) <= set(schema["properties"])


def test_every_output_schema_describes_an_object_with_its_required_fields() -> None:
    for tool in TOOLS:
        schema = tool.output_schema
        assert schema["type"] == "object"
        assert set(schema.get("required", ())) <= set(schema["properties"]), tool.name


SCHEMA: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 3},
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "form": {"type": "string", "enum": ["yaml", "json"]},
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        "flag": {"type": "boolean"},
    },
    "required": ["name"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "arguments: name is required"),
        ({"name": "a", "other": 1}, "arguments: unknown argument other"),
        ({"name": 1}, "arguments.name: expected string"),
        ({"name": ""}, "arguments.name: length 1 to 3"),
        ({"name": "a", "count": True}, "arguments.count: expected integer"),
        ({"name": "a", "count": 9}, "arguments.count: between 1 and 5"),
        ({"name": "a", "form": "xml"}, "arguments.form: one of yaml, json"),
        ({"name": "a", "command": []}, "arguments.command: 1 to 2 items"),
        ({"name": "a", "command": ["ls", 2]}, "arguments.command[1]: expected string"),
        ({"name": "a", "flag": "yes"}, "arguments.flag: expected boolean"),
    ],
)
def test_check_names_the_first_argument_that_breaks_the_schema(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArguments) as caught:
        check(SCHEMA, arguments)
    assert str(caught.value) == message


def test_check_accepts_what_the_schema_allows() -> None:
    check(SCHEMA, {"name": "abc", "count": 5, "form": "json", "command": ["ls"], "flag": False})
