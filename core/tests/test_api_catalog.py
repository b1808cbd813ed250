"""Catalog models and datasets through the REST API, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def create_model(client: TestClient, api: str, name: str, **fields: object) -> dict[str, object]:
    response = client.post(f"{api}/catalog/models", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_model_lifecycle_create_get_update_delete(client: TestClient, api: str) -> None:
    model = create_model(client, api, "tiny-gpt", task="text-generation", tags=["small"])
    assert model["status"] == "registered"
    assert set(model) >= {"id", "createdAt", "updatedAt", "framework"}

    got = client.get(f"{api}/catalog/models/{model['id']}").json()
    assert {key: got[key] for key in model} == model  # one model shows its files too
    assert got["files"] == []
    assert got["exports"] == []

    patched = client.patch(
        f"{api}/catalog/models/{model['id']}", json={"description": "d", "status": "ready"}
    )
    assert patched.status_code == 200
    assert patched.json()["description"] == "d"
    assert patched.json()["status"] == "ready"

    assert client.delete(f"{api}/catalog/models/{model['id']}").status_code == 204
    missing = client.get(f"{api}/catalog/models/{model['id']}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM


def test_duplicate_model_name_is_a_conflict_and_changes_nothing(
    client: TestClient, api: str
) -> None:
    create_model(client, api, "dup")
    again = client.post(f"{api}/catalog/models", json={"name": "dup", "description": "x"})
    assert again.status_code == 409
    assert again.json()["type"].endswith("/conflict")
    items = client.get(f"{api}/catalog/models").json()["items"]
    assert [m["description"] for m in items] == [""]


def test_bad_model_bodies_are_refused_with_field_errors(client: TestClient, api: str) -> None:
    for body in (
        {"name": "../etc"},
        {"name": "ok", "unknownField": 1},
        {"name": "ok", "tags": "not-a-list"},
        {},
    ):
        response = client.post(f"{api}/catalog/models", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"]
    assert client.get(f"{api}/catalog/models").json()["items"] == []


def test_model_list_filters_sorts_and_walks_every_page_once(client: TestClient, api: str) -> None:
    for i in range(23):
        create_model(client, api, f"m{i:02d}", task="chat" if i % 2 else "embedding")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 5, "sort": "name", **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{api}/catalog/models", params=params).json()
        seen += [m["name"] for m in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"m{i:02d}" for i in range(23)]

    desc = client.get(f"{api}/catalog/models", params={"sort": "-name", "limit": 3}).json()
    assert [m["name"] for m in desc["items"]] == ["m22", "m21", "m20"]
    chat = client.get(f"{api}/catalog/models", params={"task": "chat", "limit": 100}).json()
    assert len(chat["items"]) == 11
    found = client.get(f"{api}/catalog/models", params={"q": "m1"}).json()
    assert {m["name"] for m in found["items"]} == {f"m1{i}" for i in range(10)}


def test_list_refuses_a_forged_cursor_and_bad_sort(client: TestClient, api: str) -> None:
    assert client.get(f"{api}/catalog/models", params={"cursor": "garbage"}).status_code == 422
    assert client.get(f"{api}/catalog/models", params={"sort": "secret"}).status_code == 422
    assert client.get(f"{api}/catalog/models", params={"limit": 0}).status_code == 422


def test_search_text_with_like_wildcards_is_literal(client: TestClient, api: str) -> None:
    create_model(client, api, "a_b")
    create_model(client, api, "axb")
    found = client.get(f"{api}/catalog/models", params={"q": "a_b"}).json()["items"]
    assert [m["name"] for m in found] == ["a_b"]


# -- datasets -------------------------------------------------------------------------


def create_dataset(client: TestClient, api: str, name: str = "prompts") -> str:
    response = client.post(f"{api}/catalog/datasets", json={"name": name})
    assert response.status_code == 201, response.text
    dataset_id: str = response.json()["id"]
    return dataset_id


def test_dataset_search_looks_in_names_and_descriptions(client: TestClient, api: str) -> None:
    create_dataset(client, api, "prompts")
    described = client.post(
        f"{api}/catalog/datasets", json={"name": "d2", "description": "Support chat PROMPTS"}
    )
    assert described.status_code == 201
    create_dataset(client, api, "images")

    found = client.get(f"{api}/catalog/datasets", params={"q": "prompts"}).json()["items"]

    assert sorted(d["name"] for d in found) == ["d2", "prompts"]


def storage_files(client: TestClient) -> list[str]:
    root: Path = client.app.state.platform.settings.storage_dir  # type: ignore[attr-defined]
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_uploaded_file_is_stored_and_counted(client: TestClient, api: str) -> None:
    ds = create_dataset(client, api)
    content = b'{"prompt": "hi"}\n' * 100
    response = client.post(
        f"{api}/catalog/datasets/{ds}/files", files={"file": ("train.jsonl", content)}
    )
    assert response.status_code == 201, response.text
    assert response.json()["written"] == ["train.jsonl"]
    detail = client.get(f"{api}/catalog/datasets/{ds}").json()
    assert detail["fileCount"] == 1
    assert detail["sizeBytes"] == len(content)
    assert detail["files"] == [{"path": "train.jsonl", "sizeBytes": len(content)}]


def test_upload_over_the_limit_is_413_and_leaves_nothing(
    make_settings: object, api: str, authenticate: Callable[..., str]
) -> None:
    from llmops.api.app import create_app

    settings = make_settings(max_upload_bytes=1000)  # type: ignore[operator]
    with TestClient(create_app(settings)) as client:
        authenticate(client)
        ds = create_dataset(client, api)
        response = client.post(
            f"{api}/catalog/datasets/{ds}/files", files={"file": ("big.bin", b"x" * 5000)}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
        assert storage_files(client) == []
        assert client.get(f"{api}/catalog/datasets/{ds}").json()["sizeBytes"] == 0

        huge = client.post(
            f"{api}/catalog/datasets/{ds}/files",
            content=b"x" * (2 * 1024 * 1024),
            headers={"content-type": "application/octet-stream"},
        )
        assert huge.status_code == 413


def test_path_traversal_in_a_file_name_stays_inside_the_dataset(
    client: TestClient, api: str
) -> None:
    ds = create_dataset(client, api)
    response = client.post(
        f"{api}/catalog/datasets/{ds}/files", files={"file": ("../../../etc/passwd", b"x")}
    )
    assert response.status_code == 201
    assert response.json()["written"] == ["passwd"]
    assert storage_files(client) == [f"datasets/{ds}/files/passwd"]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_archive_is_checked_then_extracted(client: TestClient, api: str) -> None:
    ds = create_dataset(client, api)
    archive = zip_bytes({"train/a.txt": b"a", "test/b.txt": b"bb"})
    response = client.post(
        f"{api}/catalog/datasets/{ds}/files",
        params={"extract": "true"},
        files={"file": ("data.zip", archive)},
    )
    assert response.status_code == 201, response.text
    assert sorted(response.json()["written"]) == ["test/b.txt", "train/a.txt"]
    assert client.get(f"{api}/catalog/datasets/{ds}").json()["fileCount"] == 2


def test_archive_escaping_the_dataset_is_refused_whole(client: TestClient, api: str) -> None:
    ds = create_dataset(client, api)
    archive = zip_bytes({"ok.txt": b"fine", "../../evil.txt": b"evil"})
    response = client.post(
        f"{api}/catalog/datasets/{ds}/files",
        params={"extract": "true"},
        files={"file": ("data.zip", archive)},
    )
    assert response.status_code == 422
    assert "outside" in response.json()["detail"]
    assert storage_files(client) == []


def test_archive_with_a_symlink_is_refused(client: TestClient, api: str) -> None:
    ds = create_dataset(client, api)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        link = tarfile.TarInfo("passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    response = client.post(
        f"{api}/catalog/datasets/{ds}/files",
        params={"extract": "true"},
        files={"file": ("data.tar.gz", buffer.getvalue())},
    )
    assert response.status_code == 422
    assert "link" in response.json()["detail"]
    assert storage_files(client) == []


def test_extract_of_a_non_archive_is_refused(client: TestClient, api: str) -> None:
    ds = create_dataset(client, api)
    response = client.post(
        f"{api}/catalog/datasets/{ds}/files",
        params={"extract": "true"},
        files={"file": ("plain.txt", b"x")},
    )
    assert response.status_code == 422
    assert storage_files(client) == []


def test_deleting_a_dataset_removes_its_files(client: TestClient, api: str) -> None:
    ds = create_dataset(client, api)
    client.post(f"{api}/catalog/datasets/{ds}/files", files={"file": ("a.txt", b"a")})
    assert client.delete(f"{api}/catalog/datasets/{ds}").status_code == 204
    assert storage_files(client) == []
    assert client.get(f"{api}/catalog/datasets/{ds}").status_code == 404


def test_walking_pages_by_creation_time_sees_every_model_once(client: TestClient, api: str) -> None:
    """Timestamps in the cursor: every sort by time pages through all rows, both ways."""
    names = [create_model(client, api, f"t{i:02d}")["name"] for i in range(12)]
    for sort, expected in (("-createdAt", names[::-1]), ("createdAt", names)):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 5, "sort": sort, **({"cursor": cursor} if cursor else {})}
            response = client.get(f"{api}/catalog/models", params=params)
            assert response.status_code == 200, response.text
            seen += [m["name"] for m in response.json()["items"]]
            cursor = response.json()["nextCursor"]
            if cursor is None:
                break
        assert seen == expected


def test_a_cursor_from_another_sort_order_is_refused(client: TestClient, api: str) -> None:
    for i in range(3):
        create_model(client, api, f"c{i}")
    page = client.get(f"{api}/catalog/models", params={"limit": 1, "sort": "name"}).json()
    other = client.get(
        f"{api}/catalog/models",
        params={"limit": 1, "sort": "-createdAt", "cursor": page["nextCursor"]},
    )
    assert other.status_code == 422
