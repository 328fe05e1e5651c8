"""What kube-controller-manager, the scheduler and the kubelet do after a write, done at once.

The store calls `Controllers.react` after every stored change (never for a dry run). A
Deployment owns one ReplicaSet per pod template (`<name>-<pod-template-hash>`), scaled to
the Deployment's replicas while the older ones go to 0; a ReplicaSet owns as many pods as
its replicas; a new pod is scheduled and started at once. Each step writes the Event its
controller would (`ScalingReplicaSet`, `SuccessfulCreate`, `Scheduled`, `Started`, …) and
the owner's status. Deleting an owner deletes what it owns, as the garbage collector does.
Every write converges: a status that did not change is not written again.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from typing import Any

from l7proxy.tools.sandbox.defaults import NODE_NAME
from l7proxy.tools.sandbox.resources import DEPLOYMENTS, EVENTS, PODS, REPLICA_SETS, ResourceType
from l7proxy.tools.sandbox.selectors import Selector
from l7proxy.tools.sandbox.status import ApiError
from l7proxy.tools.sandbox.store import GENERATED_CHARS, Store, rfc3339

Obj = dict[str, Any]

TEMPLATE_HASH = "pod-template-hash"
_EVERYTHING = Selector()
_RS = "replicaset-controller"


def template_hash(template: Any) -> str:
    """A stable 10-character name suffix for a pod template, in kube's alphabet."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(GENERATED_CHARS[b % len(GENERATED_CHARS)] for b in digest[:10])


def _owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned_by(obj: Obj, owner_uid: str) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(isinstance(r, dict) and r.get("uid") == owner_uid for r in refs)


def _replicas(obj: Obj) -> int:
    value = obj.get("spec", {}).get("replicas", 1)
    return value if isinstance(value, int) else 1


class Controllers:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def react(self, rtype: ResourceType, kind: str, obj: Obj) -> None:
        if rtype is DEPLOYMENTS:
            if kind == "DELETED":
                self._delete_owned(REPLICA_SETS, obj)
            else:
                self._sync_deployment(obj)
        elif rtype is REPLICA_SETS:
            if kind == "DELETED":
                self._delete_owned(PODS, obj)
            else:
                self._sync_replica_set(obj)
        elif rtype is PODS and kind == "ADDED":
            self._start_pod(obj)

    def _owned(self, rtype: ResourceType, owner: Obj) -> list[Obj]:
        namespace, uid = owner["metadata"]["namespace"], owner["metadata"]["uid"]
        return [o for o in self._store.list(rtype, namespace, _EVERYTHING) if _owned_by(o, uid)]

    def _delete_owned(self, rtype: ResourceType, owner: Obj) -> None:
        for child in self._owned(rtype, owner):
            meta = child["metadata"]
            if self._store.exists(rtype, meta["namespace"], meta["name"]):
                self._store.delete(rtype, meta["namespace"], meta["name"])

    def _event(
        self,
        about: Obj,
        reason: str,
        message: str,
        component: str,
        type_: str = "Normal",
        **involved_extra: Any,
    ) -> None:
        """Record an Event as client-go's recorder does; kube names it after the time in
        nanoseconds, the sandbox after the next resourceVersion (unique and increasing)."""
        meta = about["metadata"]
        now = rfc3339(self._clock())
        involved = {
            "kind": about["kind"],
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": about["apiVersion"],
            "resourceVersion": meta.get("resourceVersion", ""),
            **involved_extra,
        }
        event = {
            "metadata": {"name": f"{meta['name']}.{self._store.resource_version + 1:016x}"},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": component}
            | ({"host": NODE_NAME} if component == "kubelet" else {}),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": NODE_NAME if component == "kubelet" else "",
        }
        self._store.create(EVENTS, meta["namespace"], event)

    def _set_status(self, rtype: ResourceType, obj: Obj, status: Obj) -> None:
        meta = obj["metadata"]
        current = self._store.get(rtype, meta["namespace"], meta["name"])
        if current.get("status") != status:
            self._store.update(
                rtype, meta["namespace"], meta["name"], {**current, "status": status}
            )

    def _scale(self, deployment: Obj, rs: Obj, replicas: int) -> None:
        before = _replicas(rs)
        if before == replicas:
            return
        meta = rs["metadata"]
        body = {**rs, "spec": {**rs["spec"], "replicas": replicas}}
        self._store.update(REPLICA_SETS, meta["namespace"], meta["name"], body)
        direction = "up" if replicas > before else "down"
        message = f"Scaled {direction} replica set {meta['name']} from {before} to {replicas}"
        self._event(deployment, "ScalingReplicaSet", message, "deployment-controller")

    def _sync_deployment(self, deployment: Obj) -> None:
        meta, spec = deployment["metadata"], deployment.get("spec", {})
        namespace, desired = meta["namespace"], _replicas(deployment)
        template = spec.get("template") or {}
        suffix = template_hash(template)
        name = f"{meta['name']}-{suffix}"
        for old in self._owned(REPLICA_SETS, deployment):
            if old["metadata"]["name"] != name:
                self._scale(deployment, old, 0)
        if not self._store.exists(REPLICA_SETS, namespace, name):
            selector = spec.get("selector") or {}
            labels = {**(selector.get("matchLabels") or {}), TEMPLATE_HASH: suffix}
            pod_meta = template.get("metadata") or {}
            pod_labels = {**(pod_meta.get("labels") or {}), TEMPLATE_HASH: suffix}
            rs = {
                "metadata": {
                    "name": name,
                    "labels": pod_labels,
                    "ownerReferences": [_owner_ref(deployment)],
                },
                "spec": {
                    "replicas": 0,
                    "selector": {**selector, "matchLabels": labels},
                    "template": {**template, "metadata": {**pod_meta, "labels": pod_labels}},
                },
            }
            self._store.create(REPLICA_SETS, namespace, rs)
        self._scale(deployment, self._store.get(REPLICA_SETS, namespace, name), desired)
        since = meta["creationTimestamp"]  # fixed, so the status converges
        conditions = [
            ("Available", "MinimumReplicasAvailable", "Deployment has minimum availability."),
            (
                "Progressing",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.',
            ),
        ]
        self._set_status(
            DEPLOYMENTS,
            deployment,
            {
                "observedGeneration": meta.get("generation", 1),
                "replicas": desired,
                "updatedReplicas": desired,
                "readyReplicas": desired,
                "availableReplicas": desired,
                "conditions": [
                    {
                        "type": kind,
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastUpdateTime": since,
                        "lastTransitionTime": since,
                    }
                    for kind, reason, message in conditions
                ],
            },
        )

    def _sync_replica_set(self, rs: Obj) -> None:
        meta, spec = rs["metadata"], rs.get("spec", {})
        namespace, desired = meta["namespace"], _replicas(rs)
        pods = self._owned(PODS, rs)
        template = spec.get("template") or {}
        for _ in range(desired - len(pods)):
            suffix = "".join(random.choices(GENERATED_CHARS, k=5))
            pod_meta = template.get("metadata") or {}
            pod = {
                "metadata": {
                    **pod_meta,
                    "name": f"{meta['name']}-{suffix}",
                    "ownerReferences": [_owner_ref(rs)],
                },
                "spec": template.get("spec") or {},
            }
            try:
                created = self._store.create(PODS, namespace, pod)
            except ApiError as err:  # as kube's: the failure is an event, the write stands
                self._event(rs, "FailedCreate", f"Error creating: {err.message}", _RS, "Warning")
                break
            self._event(rs, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", _RS)
        for extra in sorted(pods, key=lambda p: p["metadata"]["name"])[desired:]:
            self._store.delete(PODS, namespace, extra["metadata"]["name"])
            self._event(rs, "SuccessfulDelete", f"Deleted pod: {extra['metadata']['name']}", _RS)
        count = len(self._owned(PODS, rs))
        status = {
            "replicas": count,
            "fullyLabeledReplicas": count,
            "observedGeneration": meta.get("generation", 1),
        }
        if count:
            status |= {"readyReplicas": count, "availableReplicas": count}
        self._set_status(REPLICA_SETS, rs, status)

    def _start_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        node = pod.get("spec", {}).get("nodeName", NODE_NAME)
        self._event(
            pod,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            "default-scheduler",
        )
        for container in pod.get("spec", {}).get("containers") or []:
            name, image = container.get("name", ""), container.get("image", "")
            path = {"fieldPath": f"spec.containers{{{name}}}"}
            pulled = f'Container image "{image}" already present on machine'
            self._event(pod, "Pulled", pulled, "kubelet", **path)
            self._event(pod, "Created", f"Created container {name}", "kubelet", **path)
            self._event(pod, "Started", f"Started container {name}", "kubelet", **path)
