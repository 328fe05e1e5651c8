"""The objects a fresh sandbox cluster starts with (the controllers add their events)."""

from __future__ import annotations

from l7proxy.tools.sandbox.defaults import NODE_NAME as NODE
from l7proxy.tools.sandbox.resources import (
    CONFIGMAPS,
    JOBS,
    NAMESPACES,
    NODES,
    PODS,
    SERVICE_ACCOUNTS,
    SERVICES,
    ResourceType,
)
from l7proxy.tools.sandbox.store import Store

Obj = dict[str, object]


def _pod(name: str) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "nodeName": NODE,
            "containers": [
                {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
            ],
        },
    }


def _node() -> Obj:
    return {
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {
                "kubeletVersion": "v1.31.0",
                "osImage": "sandbox",
                "architecture": "amd64",
            },
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        },
    }


def _service() -> Obj:
    return {
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.1",
            "ports": [{"name": "https", "port": 443, "targetPort": 6443, "protocol": "TCP"}],
        },
    }


def _job() -> Obj:
    return {
        "metadata": {"name": "migrate"},
        "spec": {
            "completions": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "busybox:1.36"}],
                }
            },
        },
        "status": {"succeeded": 1},
    }


def seed(store: Store) -> None:
    for namespace in ("default", "kube-system"):
        store.create(NAMESPACES, "", {"metadata": {"name": namespace}})
        store.create(SERVICE_ACCOUNTS, namespace, {"metadata": {"name": "default"}})
    store.create(NODES, "", _node())
    objects: list[tuple[ResourceType, Obj]] = [
        (PODS, _pod("web-1")),
        (PODS, _pod("web-2")),
        (SERVICES, _service()),
        (JOBS, _job()),
        (
            CONFIGMAPS,
            {"metadata": {"name": "web-config"}, "data": {"greeting": "hello from the sandbox"}},
        ),
    ]
    for rtype, obj in objects:
        store.create(rtype, "default", obj)
