"""`bastion serve --demo`: the demo organisation, its bank and its policy, so that an altered copy of a sample
submitted with the demo key is removed, with the rule and the evidence, in the request."""

from __future__ import annotations

from fastapi.testclient import TestClient
from PIL import Image

from bastion.accounts.bootstrap import DEMO_ORGANISATION, DEMO_SCOPES, ensure_organisation_key
from bastion.api.app import create_app
from bastion.demo import DEMO_BANK, sample_images, seed_demo_bank, seed_demo_policy
from bastion.samples import altered_copies, encode, generate_image


def _seed(db) -> str:
    key = ensure_organisation_key(db, DEMO_ORGANISATION, DEMO_SCOPES, "demo")
    seed_demo_bank(db, actor="test", organisation=DEMO_ORGANISATION)
    assert seed_demo_policy(db, actor="test") == 1
    assert seed_demo_policy(db, actor="test") is None  # idempotent
    return key


def test_demo_removes_an_altered_copy_and_allows_an_unrelated_image(db, settings):
    key = _seed(db)
    headers = {"Authorization": f"Bearer {key}"}
    with Image.open(sample_images()[0]) as img:
        img.load()
        name, altered = next((n, a) for n, a in altered_copies(img) if n != "original")
    with TestClient(create_app(db, settings)) as client:
        r = client.post("/v1/content", files={"file": ("copy.jpg", encode(altered, quality=80), "image/jpeg")},
                        data={"content_id": "demo-1", "jurisdictions": "FR"}, headers=headers)
        assert r.status_code == 201, r.text
        decision = r.json()["content"]["decision"]
        assert decision["outcome"] == "remove", (name, decision)
        assert decision["rule"] == "remove-demo-bank-match" and decision["policy_version"] == 1
        assert decision["evidence"]["matches"][0]["bank"] == DEMO_BANK
        r = client.post("/v1/content", files={"file": ("other.jpg", encode(generate_image(4242)), "image/jpeg")},
                        data={"content_id": "demo-2"}, headers=headers)
        assert r.json()["content"]["decision"]["outcome"] == "allow"
