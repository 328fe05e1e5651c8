import pytest

from l7proxy.tools.explain import ExplainError, Question, attributes_for


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
