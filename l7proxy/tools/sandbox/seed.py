"""The objects a fresh sandbox cluster starts with."""

from __future__ import annotations

from l7proxy.tools.sandbox.resources import CONFIGMAPS, NAMESPACES, PODS
from l7proxy.tools.sandbox.store import Store


def _pod(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]
        },
    }


def seed(store: Store) -> None:
    for namespace in ("default", "kube-system"):
        store.create(NAMESPACES, "", {"metadata": {"name": namespace}})
    for name in ("web-1", "web-2"):
        store.create(PODS, "default", _pod(name))
    store.create(
        CONFIGMAPS,
        "default",
        {"metadata": {"name": "web-config"}, "data": {"greeting": "hello from the sandbox"}},
    )
