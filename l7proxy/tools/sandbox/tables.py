"""Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for when it prints columns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from l7proxy.tools.sandbox.resources import (
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    NODES,
    PODS,
    REPLICA_SETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    ResourceType,
)

Obj = dict[str, Any]
Cells = Callable[[Obj, float], list[Any]]

INCLUDE_OBJECT = ("None", "Metadata", "Object")  # `includeObject`; kube's default is Metadata


def _column(name: str, kind: str, description: str, priority: int = 0) -> Obj:
    fmt = "name" if name == "Name" else ""
    return {
        "name": name,
        "type": kind,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


_NAME = _column("Name", "string", "Name must be unique within a namespace.")
_AGE = _column("Age", "string", "CreationTimestamp is the time this object was created.")


def human_duration(seconds: float) -> str:
    """kube's `duration.HumanDuration`, which is what the AGE column shows."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    if h < 24 * 365 * 8:
        return f"{d // 365}y{d % 365}d" if d % 365 else f"{d // 365}y"
    return f"{d // 365}y"


def _age(obj: Obj, now: float) -> str:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration(now - datetime.fromisoformat(created).timestamp())


def _pod_cells(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status", {})
    containers = status.get("containerStatuses") or []
    ready = sum(1 for c in containers if c.get("ready"))
    total = len(obj.get("spec", {}).get("containers") or [])
    phase = "Terminating" if obj["metadata"].get("deletionTimestamp") else status.get("phase", "")
    return [
        obj["metadata"]["name"],
        f"{ready}/{total}",
        status.get("reason") or phase,
        str(sum(int(c.get("restartCount", 0)) for c in containers)),
        _age(obj, now),
        status.get("podIP") or "<none>",
        obj.get("spec", {}).get("nodeName") or "<none>",
    ]


def _deployment_cells(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status", {})
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{obj.get('spec', {}).get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj, now),
    ]


def _node_cells(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status", {})
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )
    version = status.get("nodeInfo", {}).get("kubeletVersion", "")
    return [
        obj["metadata"]["name"],
        "Ready" if ready else "NotReady",
        "<none>",
        _age(obj, now),
        version,
    ]


def _service_cells(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec", {})
    ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports", []))
    return [
        obj["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports or "<none>",
        _age(obj, now),
    ]


def _replica_set_cells(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status", {})
    return [
        obj["metadata"]["name"],
        obj.get("spec", {}).get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(obj, now),
    ]


def _job_cells(obj: Obj, now: float) -> list[Any]:
    succeeded = obj.get("status", {}).get("succeeded", 0)
    completions = obj.get("spec", {}).get("completions", 1)
    state = "Complete" if succeeded >= completions else "Running"
    return [obj["metadata"]["name"], state, f"{succeeded}/{completions}", _age(obj, now)]


def _service_account_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], len(obj.get("secrets") or []), _age(obj, now)]


def _event_cells(obj: Obj, now: float) -> list[Any]:
    involved = obj.get("involvedObject", {})
    return [
        _age(obj, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{involved.get('kind', '').lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _default_cells(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], _age(obj, now)]


_LAYOUTS: dict[str, tuple[list[Obj], Cells]] = {
    PODS.key: (
        [
            _NAME,
            _column("Ready", "string", "Readiness of the pod's containers."),
            _column("Status", "string", "The aggregate status of the pod's containers."),
            _column("Restarts", "string", "Container restarts."),
            _AGE,
            _column("IP", "string", "IP address allocated to the pod.", 1),
            _column("Node", "string", "Name of the node this pod runs on.", 1),
        ],
        _pod_cells,
    ),
    DEPLOYMENTS.key: (
        [
            _NAME,
            _column("Ready", "string", "Ready pods out of desired."),
            _column("Up-to-date", "integer", "Pods with the desired template."),
            _column("Available", "integer", "Pods available to serve."),
            _AGE,
        ],
        _deployment_cells,
    ),
    NODES.key: (
        [
            _NAME,
            _column("Status", "string", "The status of the node."),
            _column("Roles", "string", "The roles of the node."),
            _AGE,
            _column("Version", "string", "Kubelet version reported by the node."),
        ],
        _node_cells,
    ),
    SERVICES.key: (
        [
            _NAME,
            _column("Type", "string", "The type of the service."),
            _column("Cluster-IP", "string", "The IP address of the service."),
            _column("External-IP", "string", "External IPs of the service."),
            _column("Port(s)", "string", "The ports the service exposes."),
            _AGE,
        ],
        _service_cells,
    ),
    REPLICA_SETS.key: (
        [
            _NAME,
            _column("Desired", "integer", "Desired replicas."),
            _column("Current", "integer", "Current replicas."),
            _column("Ready", "integer", "Ready replicas."),
            _AGE,
        ],
        _replica_set_cells,
    ),
    JOBS.key: (
        [
            _NAME,
            _column("Status", "string", "Whether the job has completed."),
            _column("Completions", "string", "Successful pods out of desired completions."),
            _AGE,
        ],
        _job_cells,
    ),
    SERVICE_ACCOUNTS.key: (
        [_NAME, _column("Secrets", "string", "Number of secrets."), _AGE],
        _service_account_cells,
    ),
    EVENTS.key: (
        [
            _column("Last Seen", "string", "Time of the event."),
            _column("Type", "string", "Type of the event."),
            _column("Reason", "string", "Why the event happened."),
            _column("Object", "string", "The object the event is about."),
            _column("Message", "string", "What happened."),
        ],
        _event_cells,
    ),
}  # fmt: skip


def _row(obj: Obj, cells: Cells, now: float, include: str) -> Obj:
    row: Obj = {"cells": cells(obj, now)}
    if include == "Object":
        row["object"] = obj
    elif include == "Metadata":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }
    return row


def table(
    rtype: ResourceType,
    objects: list[Obj],
    *,
    now: float,
    include: str,
    metadata: dict[str, Any],
    columns: bool = True,
) -> Obj:
    """A Table of `objects` with the list's `metadata` (resourceVersion, and `continue`
    for a page). Watch events after the first leave `columns` out, as kube does: kubectl
    reuses the definitions it already has."""
    definitions, cells = _LAYOUTS.get(rtype.key, ([_NAME, _AGE], _default_cells))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions if columns else [],
        "rows": [_row(o, cells, now, include) for o in objects],
    }
