"""The HMA-compatible routes (api/hma.py): OpenMediaMatch's request and response shapes over Bastion's banks.

Auth (401 without a key, 403 without the scope) is covered for every /h, /m and /c route by the route matrix in
tests/test_api_auth.py.
"""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from bastion import samples
from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.content import Content
from bastion.signals import compute_all


@pytest.fixture
def client(db, settings):
    with TestClient(create_app(db, settings)) as c:
        yield c


@pytest.fixture
def headers(db):
    svc = AccountService(db)
    svc.create_organisation("platform")
    key = svc.create_api_key("platform", "hma", ["submit", "curate"])[1]
    return {"Authorization": f"Bearer {key}"}


def _jpeg(seed: int) -> bytes:
    return samples.encode(samples.generate_image(seed))


def _pdq(data: bytes) -> str:
    return next(s.value for s in compute_all(Content.from_bytes(data)) if s.type == "pdq")


def test_status_is_public_text(client):
    r = client.get("/status")
    assert (r.status_code, r.text) == (200, "I-AM-ALIVE")


def test_hash_upload_returns_signal_type_to_hash(client, headers):
    data = _jpeg(1)
    r = client.post("/h/hash", files={"photo": ("a.jpg", data, "image/jpeg")}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pdq"] == _pdq(data) and body["md5"] == hashlib.md5(data).hexdigest()
    assert all(isinstance(v, str) for v in body.values())
    only = client.post("/h/hash?types=pdq", files={"photo": ("a.jpg", data)}, headers=headers).json()
    assert only == {"pdq": body["pdq"]}


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ({"photo": ("a.jpg", b"not an image at all, just text", "text/plain")}, "content_type_mismatch"),
        ({"document": ("a.jpg", b"x", "image/jpeg")}, "unknown_content_type"),
        (None, "missing_file"),
    ],
)
def test_hash_upload_errors(client, headers, files, code):
    r = client.post("/h/hash", files=files, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, code)


def test_hash_by_url_is_disabled(client, headers):
    r = client.get("/h/hash", params={"url": "https://example.org/a.jpg"}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "url_fetch_disabled")
    r = client.get("/m/lookup", params={"url": "https://example.org/a.jpg"}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "url_fetch_disabled")
    r = client.get("/h/hash", headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "missing_parameter")


def test_bank_lifecycle_shapes(client, headers):
    r = client.post("/c/banks", json={"name": "HMA_BANK"}, headers=headers)
    assert r.status_code == 201 and r.json() == {"name": "HMA_BANK", "matching_enabled_ratio": 1.0}
    r = client.post("/c/banks", json={"name": "OFF_BANK", "enabled": False}, headers=headers)
    assert r.json() == {"name": "OFF_BANK", "matching_enabled_ratio": 0.0}
    assert client.get("/c/banks", headers=headers).json() == [
        {"name": "HMA_BANK", "matching_enabled_ratio": 1.0},
        {"name": "OFF_BANK", "matching_enabled_ratio": 0.0},
    ]
    r = client.put("/c/bank/OFF_BANK", json={"enabled_ratio": 1.0}, headers=headers)
    assert r.json() == {"name": "OFF_BANK", "matching_enabled_ratio": 1.0}
    assert client.get("/c/bank/OFF_BANK", headers=headers).json()["matching_enabled_ratio"] == 1.0
    r = client.put("/c/bank/OFF_BANK", json={"enabled_ratio": 0.5}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "unsupported_enabled_ratio")
    r = client.put("/c/bank/OFF_BANK", json={"name": "RENAMED"}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "rename_unsupported")
    r = client.post("/c/banks", json={"name": "HMA_BANK"}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "bank_exists")
    assert client.delete("/c/bank/OFF_BANK", headers=headers).json() == {"message": "Done"}
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(method, "/c/bank/OFF_BANK", json={}, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), method
    r = client.post("/c/bank/NOPE/signal", json={"md5": "0" * 32}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")


def test_banked_image_is_found_by_raw_lookup_and_lookup(client, headers):
    client.post("/c/banks", json={"name": "IMAGES"}, headers=headers)
    img = samples.generate_image(7)
    data = samples.encode(img)
    r = client.post("/c/bank/IMAGES/content", files={"photo": ("x.jpg", data, "image/jpeg")}, headers=headers)
    assert r.status_code == 200, r.text
    added = r.json()
    content_id = added["id"]
    assert isinstance(content_id, int) and added["signals"]["pdq"] == _pdq(data)
    assert added["signals"]["md5"] == hashlib.md5(data).hexdigest()

    q = {"signal_type": "pdq", "signal": _pdq(data)}
    assert client.get("/m/raw_lookup", params=q, headers=headers).json() == {"matches": [content_id]}
    with_d = client.get("/m/raw_lookup", params=q | {"include_distance": "true"}, headers=headers).json()
    assert with_d == {"matches": [{"bank_content_id": content_id, "distance": "0"}]}

    resized = samples.encode(dict(samples.altered_copies(img))["resized"])
    near = _pdq(resized)
    assert near != _pdq(data)
    r = client.get(
        "/m/raw_lookup", params={"signal_type": "pdq", "signal": near, "include_distance": "true"}, headers=headers
    )
    [match] = r.json()["matches"]
    assert match["bank_content_id"] == content_id and 0 < int(match["distance"]) <= 31

    other = _pdq(_jpeg(99))
    assert client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": other}, headers=headers).json() == {
        "matches": []
    }
    r = client.get("/m/raw_lookup", params=q | {"banks": "OTHER"}, headers=headers)
    assert r.json() == {"matches": []}

    r = client.get("/m/lookup", params={"signal_type": "pdq", "signal": near}, headers=headers)
    assert list(r.json()) == ["IMAGES"] and r.json()["IMAGES"][0]["bank_content_id"] == content_id

    r = client.post("/m/lookup", files={"photo": ("r.jpg", resized, "image/jpeg")}, headers=headers)
    body = r.json()
    assert body["pdq"]["IMAGES"][0]["bank_content_id"] == content_id
    assert body["md5"] == {}  # a resized copy has another md5

    # disabling the bank (HMA's enabled_ratio 0) stops matching
    client.put("/c/bank/IMAGES", json={"enabled": False}, headers=headers)
    assert client.get("/m/raw_lookup", params=q, headers=headers).json() == {"matches": []}

    r = client.post("/c/bank/IMAGES/content", files={"photo": ("x.jpg", data)}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "already_banked")


def test_add_signal_then_lookup_by_md5(client, headers):
    client.post("/c/banks", json={"name": "HASHES"}, headers=headers)
    md5 = hashlib.md5(b"some banked file").hexdigest()
    r = client.post("/c/bank/HASHES/signal", json={"md5": md5.upper()}, headers=headers)
    assert r.status_code == 200 and r.json()["signals"] == {"md5": md5}
    entry = r.json()["id"]
    r = client.get("/m/lookup", params={"signal_type": "md5", "signal": md5}, headers=headers)
    assert r.json() == {"HASHES": [{"bank_content_id": entry, "distance": "0"}]}
    for body, code in (({"md5": "xyz"}, "invalid_signal"), ({"nope": "1"}, "unknown_signal_type"), ({}, "no_signals")):
        r = client.post("/c/bank/HASHES/signal", json=body, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), body


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"signal_type": "pdq", "signal": "zz"}, "invalid_signal"),
        ({"signal_type": "nope", "signal": "ab"}, "unknown_signal_type"),
        ({"signal_type": "pdq"}, "missing_parameter"),
    ],
)
def test_raw_lookup_bad_input(client, headers, params, code):
    r = client.get("/m/raw_lookup", params=params, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, code)


def test_compare(client, headers):
    a, b, c = _pdq(_jpeg(3)), _pdq(samples.encode(samples.generate_image(3).resize((320, 240)))), _pdq(_jpeg(4))
    r = client.post("/m/compare", json={"pdq": [a, b]}, headers=headers)
    [is_match, info] = r.json()["pdq"]
    assert is_match is True and 0 <= info["distance"] <= 31
    [is_match, info] = client.post("/m/compare", json={"pdq": [a, c]}, headers=headers).json()["pdq"]
    assert is_match is False and info["distance"] > 31
    assert client.post("/m/compare", json={"pdq": [a, a]}, headers=headers).json() == {"pdq": [True, {"distance": 0}]}
    r = client.post("/m/compare", json={"pdq": [a]}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_compare_pair")
    r = client.post("/m/compare", json={"pdq": [a, "zz"]}, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_signal")
