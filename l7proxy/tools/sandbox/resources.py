"""The resource types the sandbox serves: one table that discovery, routing and the store share."""

from __future__ import annotations

from dataclasses import dataclass

_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_SUB_RW = ("get", "patch", "update")
_CONNECT = ("create", "get")


@dataclass(frozen=True, slots=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""  # set where the subresource's kind lives in another group (Scale)
    version: str = ""


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    name: str  # plural, as in URLs
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = _ALL

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Unique across groups: core and events.k8s.io both have `events`."""
        return f"{self.group}/{self.name}"

    def subresource(self, name: str) -> Subresource | None:
        return next((s for s in self.subresources if s.name == name), None)


NAMESPACES = ResourceType(
    "",
    "v1",
    "namespaces",
    "namespace",
    "Namespace",
    namespaced=False,
    short_names=("ns",),
    subresources=(Subresource("status", "Namespace", _SUB_RW),),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
)
PODS = ResourceType(
    "",
    "v1",
    "pods",
    "pod",
    "Pod",
    namespaced=True,
    short_names=("po",),
    categories=("all",),
    subresources=(
        Subresource("attach", "PodAttachOptions", _CONNECT),
        Subresource("ephemeralcontainers", "Pod", _SUB_RW),
        Subresource("exec", "PodExecOptions", _CONNECT),
        Subresource("log", "Pod", ("get",)),
        Subresource("portforward", "PodPortForwardOptions", _CONNECT),
        Subresource("status", "Pod", _SUB_RW),
    ),
)
CONFIGMAPS = ResourceType(
    "", "v1", "configmaps", "configmap", "ConfigMap", namespaced=True, short_names=("cm",)
)
SECRETS = ResourceType("", "v1", "secrets", "secret", "Secret", namespaced=True)
SERVICES = ResourceType(
    "",
    "v1",
    "services",
    "service",
    "Service",
    namespaced=True,
    short_names=("svc",),
    categories=("all",),
    subresources=(Subresource("status", "Service", _SUB_RW),),
)
DEPLOYMENTS = ResourceType(
    "apps",
    "v1",
    "deployments",
    "deployment",
    "Deployment",
    namespaced=True,
    short_names=("deploy",),
    categories=("all",),
    subresources=(
        Subresource("scale", "Scale", _SUB_RW, group="autoscaling", version="v1"),
        Subresource("status", "Deployment", _SUB_RW),
    ),
)

NODES = ResourceType(
    "",
    "v1",
    "nodes",
    "node",
    "Node",
    namespaced=False,
    short_names=("no",),
    subresources=(Subresource("status", "Node", _SUB_RW),),
)
SERVICE_ACCOUNTS = ResourceType(
    "", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, short_names=("sa",)
)
EVENTS = ResourceType("", "v1", "events", "event", "Event", namespaced=True, short_names=("ev",))
REPLICA_SETS = ResourceType(
    "apps",
    "v1",
    "replicasets",
    "replicaset",
    "ReplicaSet",
    namespaced=True,
    short_names=("rs",),
    categories=("all",),
    subresources=(
        Subresource("scale", "Scale", _SUB_RW, group="autoscaling", version="v1"),
        Subresource("status", "ReplicaSet", _SUB_RW),
    ),
)
JOBS = ResourceType(
    "batch",
    "v1",
    "jobs",
    "job",
    "Job",
    namespaced=True,
    categories=("all",),
    subresources=(Subresource("status", "Job", _SUB_RW),),
)
# events.k8s.io/v1 is the same objects under another group in kube; here it is its own store.
EVENTS_V1 = ResourceType(
    "events.k8s.io", "v1", "events", "event", "Event", namespaced=True, short_names=("ev",)
)

ALL: tuple[ResourceType, ...] = (
    NAMESPACES,
    PODS,
    CONFIGMAPS,
    SECRETS,
    SERVICES,
    NODES,
    SERVICE_ACCOUNTS,
    EVENTS,
    DEPLOYMENTS,
    REPLICA_SETS,
    JOBS,
    EVENTS_V1,
)

# Subresources answered only over a connection upgrade (exec, attach, port-forward).
UPGRADE_SUBRESOURCES = frozenset({"attach", "exec", "portforward"})


def group_versions() -> dict[tuple[str, str], tuple[ResourceType, ...]]:
    """(group, version) → its resource types, in declaration order."""
    out: dict[tuple[str, str], tuple[ResourceType, ...]] = {}
    for rtype in ALL:
        key = (rtype.group, rtype.version)
        out[key] = (*out.get(key, ()), rtype)
    return out


def lookup(group: str, version: str, name: str) -> ResourceType | None:
    return next((r for r in ALL if (r.group, r.version, r.name) == (group, version, name)), None)
