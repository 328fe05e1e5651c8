from l7proxy.pipeline.routing import LocalEndpoint, Route, route


def test_connection_prefix_is_stripped_and_query_kept_for_the_cluster() -> None:
    target = route("/k8s/dev/api/v1/namespaces/default/pods")
    assert target == Route("dev", "/api/v1/namespaces/default/pods")
    assert isinstance(target, Route)
    assert target.upstream_target("watch=1&labelSelector=a%3Db") == (
        "/api/v1/namespaces/default/pods?watch=1&labelSelector=a%3Db"
    )


def test_connection_root_maps_to_cluster_root() -> None:
    assert route("/k8s/dev") == Route("dev", "/")
    assert route("/k8s/dev/") == Route("dev", "/")


def test_gateway_endpoints_are_local() -> None:
    assert route("/healthz") is LocalEndpoint.HEALTHZ
    assert route("/readyz") is LocalEndpoint.READYZ
    assert route("/metrics") is LocalEndpoint.METRICS


def test_anything_else_is_not_found() -> None:
    for path in ("/", "/api/v1/pods", "/k8s/", "/k8s", "/healthz/x"):
        assert route(path) is LocalEndpoint.NOT_FOUND
