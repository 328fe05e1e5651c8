"""`l7proxy config-schema`: the JSON Schema editors validate `gateway.yaml` with."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from l7proxy.config.loader import ConfigError, load_config
from l7proxy.tools.cli import main
from tests.l7proxy.config.test_config import BASE, variant

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """As the command prints it."""
    with pytest.MonkeyPatch.context() as patch:
        printed: list[str] = []
        patch.setattr("builtins.print", lambda text: printed.append(text))
        assert main(["config-schema"]) == 0
    document: dict[str, Any] = json.loads("".join(printed))
    return document


def valid(schema: dict[str, Any], text: str) -> bool:
    validator = jsonschema.Draft202012Validator(schema)
    return validator.is_valid(yaml.safe_load(text))


def test_the_printed_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"listen", "identity", "connections", "policies"}
    assert schema["additionalProperties"] is False


def test_a_file_the_loader_accepts_passes_the_schema(schema: dict[str, Any]) -> None:
    assert valid(schema, BASE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("workers: 2", "wokers: 2"),  # an unknown key
        ("workers: 2", "workers: two"),  # a wrong type
        ("workers: 2", "workers: 0"),  # out of range
        ("    type: static\n", "    type: kind\n"),  # an unknown connection type
        ("      audiences: [l7proxy]\n", ""),  # a missing required key
        ("    type: eks\n", "    type: eks\n    token_file: token\n"),  # a key of the other type
    ],
)
def test_mistakes_the_loader_refuses_fail_the_schema_too(
    schema: dict[str, Any], tmp_path: Path, old: str, new: str
) -> None:
    text = variant(old, new)
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path)
    assert not valid(schema, text)


def test_the_shipped_configurations_pass_the_schema(schema: dict[str, Any]) -> None:
    shipped = [ROOT / "deploy/base/gateway.yaml", ROOT / "deploy/overlays/eks/gateway.yaml"]
    readme = (ROOT / "README.md").read_text()
    examples = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", readme, re.S)
        if block.startswith(("listen:", "# yaml-language-server"))
    ]
    assert examples, "the README's configuration example"
    for text in [path.read_text() for path in shipped] + examples:
        jsonschema.validate(yaml.safe_load(text), schema, jsonschema.Draft202012Validator)


def test_the_readme_example_carries_the_editor_schema_line() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "# yaml-language-server: $schema=gateway.schema.json" in readme
    assert "l7proxy config-schema > gateway.schema.json" in readme
