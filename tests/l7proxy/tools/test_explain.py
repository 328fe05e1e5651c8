from pathlib import Path

import pytest

from l7proxy.tools.cli import main
from l7proxy.tools.explain import ExplainError, Question, attributes_for
from tests.l7proxy.config.test_config import BASE, DUMMY_FILES, GRANTS


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("pods", ("", "pods", "")),
        ("pods/log", ("", "pods", "log")),
        ("deployments.apps", ("apps", "deployments", "")),
        ("deployments.apps/scale", ("apps", "deployments", "scale")),
    ],
)
def test_can_i_resource_names_read_as_rbac_reads_them(
    resource: str, expected: tuple[str, str, str]
) -> None:
    a = attributes_for(Question("u", (), "get", resource, namespace="ns"))
    assert (a.api_group, a.resource, a.subresource) == expected
    assert (a.is_resource_request, a.namespace) == (True, "ns")


def test_a_path_is_a_non_resource_request() -> None:
    a = attributes_for(Question("u", (), "get", "/version"))
    assert (a.is_resource_request, a.path) == (False, "/version")


def test_an_empty_resource_is_refused() -> None:
    with pytest.raises(ExplainError):
        attributes_for(Question("u", (), "get", ".apps"))


def test_explain_with_grant_decides_as_if_the_access_request_were_approved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, content in DUMMY_FILES.items():
        (tmp_path / name).write_text(content)
    config = tmp_path / "gw.yaml"
    config.write_text(
        BASE.replace("  - name: agents-readonly", WRITER + "  - name: agents-readonly")
        + GRANTS.replace("policy: agents-readonly", "policy: writers")
    )
    ask = ["explain", "--config", str(config), "--connection", "prod-eks", "--user", "u"]
    ask += ["--group", "sre", "create", "configmaps", "-n", "default"]
    assert main(ask) == 1
    refused = capsys.readouterr().out
    assert "lifted by: l7proxy request create --grant prod-write" in refused
    assert main([*ask, "--with-grant", "prod-write"]) == 0
    assert capsys.readouterr().out.startswith(
        'allow: allowed by policy "writers (access request assumed by --with-grant prod-write)"'
    )
    assert main([*ask, "--with-grant", "nope"]) == 1
    assert "unknown grant 'nope' (known: prod-write)" in capsys.readouterr().err


WRITER = """\
  - name: writers
    groups: [platform-admins]
    connection: prod-eks
    binding_user_role: eks-readonly
    allow:
      - {verbs: ["*"], api_groups: ["*"], resources: ["*"]}
"""
