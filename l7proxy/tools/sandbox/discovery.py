"""Legacy (unaggregated) discovery documents.

client-go ≥1.30 asks /api and /apis for the aggregated `APIGroupDiscoveryList` first, but
decides what it got from the response Content-Type (`ContentTypeIsGVK` in
discovery_client.go): plain `application/json` makes it parse `APIVersions` /
`APIGroupList` and then fetch each group-version's `APIResourceList`. So legacy documents
alone are enough for kubectl.
"""

from __future__ import annotations

from typing import Any

from l7proxy.tools.sandbox.resources import ResourceType, group_versions

Obj = dict[str, Any]


def version_info(major: int, minor: int) -> Obj:
    return {
        "major": str(major),
        "minor": str(minor),
        "gitVersion": f"v{major}.{minor}.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "go1.22.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions() -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def _group(name: str) -> Obj:
    versions = [
        {"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == name
    ]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> Obj:
    names = dict.fromkeys(g for g, _ in group_versions() if g)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(n) for n in names]}


def api_group(name: str) -> Obj | None:
    if not name or all(g != name for g, _ in group_versions()):
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def _entries(rtype: ResourceType) -> list[Obj]:
    main: Obj = {
        "name": rtype.name,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        main["categories"] = list(rtype.categories)
    entries = [main]
    for sub in rtype.subresources:
        entry: Obj = {
            "name": f"{rtype.name}/{sub.name}",
            "singularName": "",
            "namespaced": rtype.namespaced,
            "kind": sub.kind,
            "verbs": list(sub.verbs),
        }
        if sub.group:
            entry["group"], entry["version"] = sub.group, sub.version
        entries.append(entry)
    return entries


def api_resource_list(group: str, version: str) -> Obj | None:
    rtypes = group_versions().get((group, version))
    if rtypes is None:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": rtypes[0].api_version,
        "resources": [e for r in rtypes for e in _entries(r)],
    }
