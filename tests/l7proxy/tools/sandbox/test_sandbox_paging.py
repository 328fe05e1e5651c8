"""Lists in pages: `limit` and `continue`, as kube-apiserver serves them."""

from __future__ import annotations

from tests.l7proxy.tools.sandbox.sandbox_fakes import Call

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


async def _make(call: Call, *names: str) -> None:
    for name in names:
        response = await call("POST", CONFIGMAPS, {"metadata": {"name": name}, "data": {}})
        assert response.status == 201


def _names(document: dict[str, object]) -> list[str]:
    return [i["metadata"]["name"] for i in document["items"]]  # type: ignore[attr-defined,index]


async def test_pages_follow_continue_to_the_last_and_together_are_the_whole_list(
    call: Call,
) -> None:
    await _make(call, "c-1", "c-2", "c-3", "c-4")
    whole = _names((await call("GET", CONFIGMAPS)).json())
    pages, token = [], ""
    while True:
        query = f"?limit=2&continue={token}" if token else "?limit=2"
        document = (await call("GET", CONFIGMAPS + query)).json()
        pages.append(_names(document))
        token = document["metadata"].get("continue", "")
        if not token:
            assert "remainingItemCount" not in document["metadata"]
            break
        assert document["metadata"]["remainingItemCount"] == len(whole) - sum(map(len, pages))
    assert [len(p) for p in pages] == [2, 2, 1]  # four made, one seeded
    assert [n for p in pages for n in p] == whole


async def test_a_page_with_a_selector_has_continue_but_no_remaining_count(call: Call) -> None:
    await _make(call, "c-1", "c-2")
    document = (
        await call("GET", CONFIGMAPS + "?limit=1&fieldSelector=metadata.namespace=default")
    ).json()
    assert document["metadata"]["continue"] and "remainingItemCount" not in document["metadata"]


async def test_a_later_page_shows_objects_made_after_the_first_past_its_key(call: Call) -> None:
    await _make(call, "a-1", "m-1")
    first = (await call("GET", CONFIGMAPS + "?limit=1")).json()
    assert _names(first) == ["a-1"]
    await _make(call, "b-1")
    rest = (await call("GET", CONFIGMAPS + "?continue=" + first["metadata"]["continue"])).json()
    assert _names(rest)[:2] == ["b-1", "m-1"]


async def test_limit_zero_or_absent_is_the_whole_list(call: Call) -> None:
    assert (await call("GET", CONFIGMAPS + "?limit=0")).json() == (
        await call("GET", CONFIGMAPS)
    ).json()


async def test_bad_limit_and_continue_are_400(call: Call) -> None:
    for query in ("?limit=-1", "?limit=two", "?continue=not-a-token", "?continue=e30="):
        response = await call("GET", CONFIGMAPS + query)
        assert response.status == 400, query
        assert response.json()["reason"] == "BadRequest"


async def test_a_table_page_carries_continue(call: Call) -> None:
    await _make(call, "c-1")
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io"
    document = (await call("GET", CONFIGMAPS + "?limit=1", accept=accept)).json()
    assert document["kind"] == "Table" and len(document["rows"]) == 1
    assert document["metadata"]["continue"]
