"""A small in-memory kube-apiserver: the upstream cluster for end-to-end tests and the demo."""

from l7proxy.tools.sandbox.app import SandboxCluster, SeenRequest

__all__ = ["SandboxCluster", "SeenRequest"]
