from l7proxy.pipeline.routing import (
    AgentRoute,
    LocalEndpoint,
    Misdirected,
    Route,
    connection_of_host,
    route,
)


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


def test_the_state_api_is_local_under_its_prefix() -> None:
    for path in ("/l7proxy/v1/", "/l7proxy/v1/locks", "/l7proxy/v1/access-requests/r1/approve"):
        assert route(path) is LocalEndpoint.STATE_API


def test_anything_else_is_not_found() -> None:
    for path in ("/", "/api/v1/pods", "/k8s/", "/k8s", "/healthz/x", "/l7proxy/v1", "/l7proxy/"):
        assert route(path) is LocalEndpoint.NOT_FOUND


SUFFIX = ".k8s.example.com"


def test_host_names_its_connection_and_the_path_goes_from_the_root() -> None:
    assert route("/version", host="dev.k8s.example.com", host_suffix=SUFFIX) == Route(
        "dev", "/version"
    )
    assert route("/api", host="Dev.K8s.Example.Com.:8443", host_suffix=SUFFIX) == Route(
        "dev", "/api"
    )
    # Every path goes to the connection, the gateway's own endpoint names too.
    assert route("/healthz", host="dev.k8s.example.com", host_suffix=SUFFIX) == Route(
        "dev", "/healthz"
    )


def test_server_name_comes_before_the_host_header() -> None:
    # Reached by IP address with `tls-server-name`: Host is the IP, SNI names the connection.
    assert route(
        "/api", server_name="prod.k8s.example.com", host="10.0.0.5:8443", host_suffix=SUFFIX
    ) == Route("prod", "/api")


def test_server_name_and_host_naming_different_connections_is_misdirected() -> None:
    target = route(
        "/api",
        server_name="dev.k8s.example.com",
        host="prod.k8s.example.com",
        host_suffix=SUFFIX,
    )
    assert isinstance(target, Misdirected)
    assert '"dev"' in target.message and '"prod"' in target.message


def test_other_hosts_keep_routing_by_path() -> None:
    for host in (
        "gw.example.com",
        "k8s.example.com",
        "a.b.k8s.example.com",
        "10.0.0.5",
        "[::1]:8443",
    ):
        assert route("/k8s/dev/api", host=host, host_suffix=SUFFIX) == Route("dev", "/api")
        assert route("/healthz", host=host, host_suffix=SUFFIX) is LocalEndpoint.HEALTHZ
    # A server name outside the suffix leaves Host out of it: routed by path.
    assert route(
        "/k8s/dev/api",
        server_name="gw.example.com",
        host="prod.k8s.example.com",
        host_suffix=SUFFIX,
    ) == Route("dev", "/api")


def test_without_a_suffix_hosts_are_not_read() -> None:
    assert route("/version", host="dev.k8s.example.com") is LocalEndpoint.NOT_FOUND
    assert route("/version", server_name="dev.k8s.example.com") is LocalEndpoint.NOT_FOUND


def test_connection_of_host_is_one_label_before_the_suffix() -> None:
    assert connection_of_host("dev.k8s.example.com", SUFFIX) == "dev"
    assert connection_of_host("k8s.example.com", SUFFIX) == ""
    assert connection_of_host(".k8s.example.com", SUFFIX) == ""
    assert connection_of_host("x.dev.k8s.example.com", SUFFIX) == ""
    assert connection_of_host("devk8s.example.com", SUFFIX) == ""


def test_the_mcp_endpoint_and_its_metadata_route_by_connection() -> None:
    assert route("/mcp/dev") == AgentRoute("dev")
    assert route("/.well-known/oauth-protected-resource/mcp/dev") == AgentRoute("dev", True)
    # before host routing: a host naming a connection does not send /mcp/ to its cluster
    assert route("/mcp/dev", host="prod" + SUFFIX, host_suffix=SUFFIX) == AgentRoute("dev")
    for path in ("/mcp/", "/mcp", "/mcp/dev/x", "/.well-known/oauth-protected-resource/mcp/"):
        assert route(path) is LocalEndpoint.NOT_FOUND
