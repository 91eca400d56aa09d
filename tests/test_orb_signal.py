"""The ORB signal (Bastion's robust image signal): every edit family PDQ misses is matched on a small fixed set,
distinct images never match each other, matches reach the policy as their own signal type with their evidence,
and bad signal strings are refused with a code. (The contract every signal type keeps is tested in
test_signal_contract.py; recall over hundreds of real photos is bench/bench_robustness.py's job.)"""

from __future__ import annotations

import base64
import io
import textwrap

import numpy as np
import pytest
from PIL import Image

from bastion import signals
from bastion.banks.service import BankService
from bastion.content import Content
from bastion.errors import InvalidSignal
from bastion.matching.matcher import open_matcher
from bastion.matching.orb_index import ORBIndex
from bastion.policy import Evidence
from bastion.policy.engine import compile_policy, decide, default_policy
from bastion.samples import edits, encode, generate_image
from bastion.signals import orb
from bastion.signals.pdq import PDQSignal, hamming

BANK_SEEDS = (201, 202, 203)


def _compute(img: Image.Image) -> signals.Signal:
    (sig,) = orb.ORBSignal.compute(Content.from_bytes(encode(img)))
    return sig


@pytest.fixture(scope="module")
def bank_images() -> list[Image.Image]:
    return [generate_image(seed, 800, 600) for seed in BANK_SEEDS]


@pytest.fixture(scope="module")
def index(bank_images) -> ORBIndex:
    index = ORBIndex()
    for i, img in enumerate(bank_images):
        index.add(i, orb.decode(_compute(img).value))
    return index


def _found(index: ORBIndex, img: Image.Image) -> dict[int, orb.Verified]:
    settings_radius, settings_inliers = 40, 12
    return dict(index.query(_compute(img).meta["_query"], settings_radius, settings_inliers))


@pytest.mark.parametrize("family", list(edits.FAMILIES))
def test_each_edit_family_matches_its_own_bank_image_and_no_other(family, bank_images, index):
    background = generate_image(299, 800, 600)
    for i, img in enumerate(bank_images):
        rng = np.random.default_rng(i)
        edited = edits.FAMILIES[family](img, rng, background) if family == "picture_in_picture" else (
            edits.FAMILIES[family](img, rng))  # fmt: skip
        found = _found(index, edited)
        assert set(found) == {i}, f"{family} copy of image {i} matched {sorted(found)}"
        assert found[i].inliers >= 12


def test_pdq_misses_what_orb_finds(bank_images, index):
    """The point of the signal: a 12 % crop a side and a phone screenshot are beyond PDQ's threshold."""
    img = bank_images[0]
    rng = np.random.default_rng(5)
    for edited in (img.crop((96, 72, 704, 528)), edits.phone_screenshot(img, rng)):
        (pdq_bank,) = PDQSignal.compute(Content.from_bytes(encode(img)))
        (pdq_copy,) = PDQSignal.compute(Content.from_bytes(encode(edited)))
        assert hamming(pdq_bank.value, pdq_copy.value) > 31
        assert 0 in _found(index, edited)


def test_distinct_images_never_match_each_other():
    sigs = [_compute(generate_image(seed, 640, 480)) for seed in range(300, 312)]
    index = ORBIndex()
    for i, sig in enumerate(sigs):
        index.add(i, orb.decode(sig.value))
    for i, sig in enumerate(sigs):
        assert set(dict(index.query(sig.meta["_query"], 40, 12))) == {i}


def test_the_evidence_says_where_and_how():
    img = generate_image(210, 800, 600)
    index = ORBIndex()
    index.add(7, orb.decode(_compute(img).value))
    rotated = img.rotate(8, Image.Resampling.BILINEAR, expand=True)
    (sid, verified), = index.query(_compute(rotated).meta["_query"], 40, 12)  # fmt: skip
    detail = verified.detail()
    assert sid == 7 and detail["inliers"] >= 12
    assert abs(abs(detail["rotation_degrees"]) - 8) < 1.5
    assert set(detail) == {"inliers", "scale", "rotation_degrees", "region", "bank_region"}
    # the picture sits inside the bigger rotated canvas: its matched region is inside [0, 1]
    x0, y0, x1, y1 = detail["region"]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_signal_string_round_trips_and_keeps_the_bank_keypoints():
    sig = _compute(generate_image(220))
    kp = orb.decode(sig.value)
    assert len(kp) == orb.BANK_KEYPOINTS == sig.quality
    assert orb.encode(kp) == sig.value == orb.ORBSignal.validate(sig.value)
    assert len(sig.meta["_query"]) > orb.BANK_KEYPOINTS
    assert np.array_equal(sig.meta["_query"].descriptors[: len(kp)], kp.descriptors)
    assert "_query" not in sig.to_dict()


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"", "header"),
        (b"\x00\x02\x00\x02\x01\x00" + b"\x00" * 35, "bytes"),  # one keypoint needs 36 bytes
        (b"\x00\x00\x00\x02\x01\x00" + b"\x00" * 36, "declares"),  # zero width
        (b"\x10\x00\x10\x00\x01\x00" + b"\xff\xff\x00\x00" + b"\x00" * 32, "outside"),  # x beyond a 16 px image
    ],
)
def test_malformed_signals_are_refused_with_a_code(raw, why):
    with pytest.raises(InvalidSignal) as info:
        orb.ORBSignal.validate("orb1:" + base64.b64encode(raw).decode())
    assert info.value.code == "invalid_signal" and why in info.value.message


def test_flat_images_give_no_usable_signal():
    flat = Image.new("RGB", (640, 480), (120, 130, 140))
    sigs = orb.ORBSignal.compute(Content.from_bytes(encode(flat)))
    assert not signals.usable(sigs)


def test_matcher_reports_orb_matches_with_evidence_and_policy_sends_them_to_review(db, tmp_path, settings):
    """End to end on a real database: a banked picture, a cropped copy PDQ misses; the match is an ``orb`` match
    with its inliers and region; the default policy reviews it (never removes), and a rule can single it out."""
    img = generate_image(230, 800, 600)
    path = tmp_path / "known.jpg"
    path.write_bytes(encode(img))
    service = BankService(db)
    service.create_bank("known")
    service.add_files("known", [path], labels={"category": "propaganda"})
    matcher = open_matcher(db, settings)
    copy = img.crop((100, 60, 690, 540))
    buf = io.BytesIO()
    copy.save(buf, "JPEG", quality=80)
    result = matcher.match(signals.compute_all(Content.from_bytes(buf.getvalue())))
    assert [m.signal_type for m in result.matches] == ["orb"], "PDQ misses this crop; ORB alone finds it"
    match = result.matches[0].to_dict()
    assert match["inliers"] >= settings.orb_min_inliers and len(match["region"]) == 4
    assert match["distance"] == max(0, orb.DISTANCE_CAP - match["inliers"])
    evidence = Evidence(organisation_id=1, source="upload", matches=[{**match, "bank_kind": "block", "bank_id": 1}])
    verdict = decide(default_policy(), evidence)
    assert verdict.outcome == "review"
    own = compile_policy(textwrap.dedent("""\
        rules:
          - name: robust-image-match
            when: {any_match: {signal_type: orb}}
            outcome: review
            queue: robust-image
          - name: pdq-match
            when: {any_match: {signal_type: pdq}}
            outcome: remove
        """))  # fmt: skip
    assert decide(own, evidence).queue == "robust-image"
