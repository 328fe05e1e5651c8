"""What kube's registry strategies and controllers would do to an object, done at once.

`validate` rejects the malformed shapes the sandbox would otherwise trip over. A pod is
Running the moment it is created, a service gets a cluster IP (the controllers that own
deployments' and replica sets' pods and status are in `controllers`). That is what a demo and an
end-to-end test need to see from `kubectl get`, `wait` and `rollout status`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from l7proxy.tools.sandbox.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    REPLICA_SETS,
    SECRETS,
    SERVICES,
    ResourceType,
)
from l7proxy.tools.sandbox.status import FieldError, invalid

Obj = dict[str, Any]

NODE_NAME = "sandbox-node-1"
_STRINGS = "must map strings to strings"
MAX_REPLICAS = 50
_HOST_IP = "10.0.0.10"


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def validate(rtype: ResourceType, obj: Obj) -> None:
    """422 for the shapes kube's validation rejects and the sandbox reads: string maps for
    labels and annotations, objects for spec/status/data, named containers for pods."""
    meta = obj["metadata"]
    name = str(meta.get("name", ""))
    for key in ("labels", "annotations"):
        if meta.get(key) is not None and not _string_map(meta[key]):
            raise invalid(rtype, name, FieldError(f"metadata.{key}", "Invalid", _STRINGS))
    for key in ("spec", "status", "data"):
        if obj.get(key, {}) is None:
            del obj[key]  # JSON null is absent
        elif not isinstance(obj.get(key, {}), dict):
            raise invalid(rtype, name, FieldError(key, "Invalid", "must be an object"))
    if rtype in (CONFIGMAPS, SECRETS):
        for key in ("data", "stringData"):
            if obj.get(key) is not None and not _string_map(obj[key]):
                raise invalid(rtype, name, FieldError(key, "Invalid", _STRINGS))
    if rtype is PODS:
        containers = obj.get("spec", {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise invalid(rtype, name, FieldError("spec.containers", "Required"))
        unnamed = [
            FieldError(f"spec.containers[{i}].name", "Required")
            for i, c in enumerate(containers)
            if not isinstance(c, dict) or not c.get("name")
        ]
        if unnamed:
            raise invalid(rtype, name, *unnamed)
    if rtype in (DEPLOYMENTS, REPLICA_SETS):
        replicas = obj.get("spec", {}).get("replicas", 0)
        why = None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            why = "must be greater than or equal to 0"
        elif replicas > MAX_REPLICAS:  # each replica is a pod and its events, written at once
            why = f"the sandbox runs at most {MAX_REPLICAS} replicas"
        if why is not None:
            error = FieldError("spec.replicas", "Invalid", why, json.dumps(replicas))
            raise invalid(rtype, name, error)


def _pod_status(obj: Obj, now: str, ordinal: int) -> Obj:
    containers = obj.get("spec", {}).get("containers") or []
    ready = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
    ]
    return {
        "phase": "Running",
        "conditions": [
            *ready,
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now,
            },
        ],
        "hostIP": _HOST_IP,
        "podIP": f"10.244.{ordinal // 250 % 250}.{ordinal % 250 + 2}",
        "startTime": now,
        "qosClass": "BestEffort",
        "containerStatuses": [_container_status(c, now, ordinal) for c in containers],
    }


def _container_status(container: Obj, now: str, ordinal: int) -> Obj:
    """A container the kubelet has started: running since `now`."""
    name, image = container.get("name", ""), container.get("image", "")
    return {
        "name": name,
        "image": image,
        "imageID": f"sandbox://{image}",
        "containerID": f"sandbox://{ordinal}-{name}",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": now}},
    }


def _start_ephemeral(obj: Obj, now: str, ordinal: int) -> None:
    """Ephemeral containers start as soon as they are added, as the kubelet starts them."""
    status = obj.setdefault("status", {})
    started = status.get("ephemeralContainerStatuses") or []
    names = {s.get("name") for s in started}
    new = [
        {**_container_status(c, now, ordinal), "ready": False}
        for c in obj["spec"].get("ephemeralContainers") or []
        if c.get("name") not in names
    ]
    if new:
        status["ephemeralContainerStatuses"] = [*started, *new]


def _generation(obj: Obj, old: Obj | None) -> None:
    """metadata.generation: 1 on create, one more for each change of spec."""
    generation = 1 if old is None else int(old["metadata"].get("generation", 1))
    if old is not None and old.get("spec") != obj.get("spec"):
        generation += 1
    obj["metadata"]["generation"] = generation


def prepare(rtype: ResourceType, obj: Obj, old: Obj | None, *, now: str, ordinal: int) -> None:
    """Fill defaults into `obj` (in place) before it is stored; `old` is None on create.

    On update the caller has already carried `status` over from `old` (or `spec`, for a
    status subresource write), as kube's update strategies do."""
    if rtype in (DEPLOYMENTS, REPLICA_SETS):
        obj.setdefault("spec", {}).setdefault("replicas", 1)
        _generation(obj, old)
    elif rtype is PODS:
        spec = obj.setdefault("spec", {})
        spec.setdefault("nodeName", NODE_NAME)
        spec.setdefault("restartPolicy", "Always")
        if old is None:
            obj["status"] = _pod_status(obj, now, ordinal)
        _start_ephemeral(obj, now, ordinal)
    elif rtype is SERVICES:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if old is not None:
            spec["clusterIP"] = old.get("spec", {}).get("clusterIP")
        spec.setdefault("clusterIP", f"10.96.{ordinal // 250 % 250}.{ordinal % 250 + 2}")
        spec["clusterIPs"] = [spec["clusterIP"]]
        obj.setdefault("status", {"loadBalancer": {}})
    elif rtype is NAMESPACES:
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    elif rtype is SECRETS:
        obj.setdefault("type", "Opaque")
        plain = obj.pop("stringData", None) or {}  # write-only: kube stores it in data
        data = obj.setdefault("data", {})
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in plain.items()})
