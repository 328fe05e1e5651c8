"""pods/<name>/ephemeralcontainers: ephemeral containers may be added (and start at once),
never changed or removed; the rest of the pod is not written through it."""

from __future__ import annotations

from typing import Any

from tests.l7proxy.tools.sandbox.sandbox_fakes import Call

EPHEMERAL = "/api/v1/namespaces/default/pods/web-1/ephemeralcontainers"
SMP = "application/strategic-merge-patch+json"


def _add(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"ephemeralContainers": list(containers)}}


async def test_an_added_ephemeral_container_is_running_and_the_rest_is_kept(call: Call) -> None:
    debug = {"name": "dbg", "image": "busybox", "targetContainerName": "app"}
    patch = {**_add(debug), "metadata": {"labels": {"ignored": "yes"}}}
    response = await call("PATCH", EPHEMERAL, patch, content_type=SMP)
    assert response.status == 200
    pod = response.json()
    assert pod["spec"]["ephemeralContainers"] == [debug]
    assert "ignored" not in pod["metadata"]["labels"]
    [status] = pod["status"]["ephemeralContainerStatuses"]
    assert (status["name"], list(status["state"])) == ("dbg", ["running"])
    second = {"name": "two", "image": "busybox"}
    again = (await call("PATCH", EPHEMERAL, _add(second), content_type=SMP)).json()
    assert [c["name"] for c in again["spec"]["ephemeralContainers"]] == ["dbg", "two"]


async def test_ephemeral_containers_may_not_change_or_lack_an_image(call: Call) -> None:
    await call("PATCH", EPHEMERAL, _add({"name": "dbg", "image": "busybox"}), content_type=SMP)
    current = (await call("GET", EPHEMERAL)).json()
    current["spec"]["ephemeralContainers"][0]["image"] = "other"
    changed = await call("PUT", EPHEMERAL, current)
    assert changed.status == 422
    assert changed.json()["message"] == (
        'Pod "web-1" is invalid: spec.ephemeralContainers: Forbidden: '
        'existing ephemeral containers "dbg" may not be changed'
    )
    no_image = await call("PATCH", EPHEMERAL, _add({"name": "x"}), content_type=SMP)
    assert no_image.status == 422
    [cause] = no_image.json()["details"]["causes"]
    assert cause == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.ephemeralContainers[1].image",
    }
    clash = await call("PATCH", EPHEMERAL, _add({"name": "app", "image": "b"}), content_type=SMP)
    assert clash.json()["details"]["causes"][-1]["message"] == 'Duplicate value: "app"'
