"""Exchange datasets and files: JSON Lines and STIX 2.1 round trips (validated by ``stix2``), ThreatExchange's CSV and
signal files, TAT and HMA files as exchanges; labels kept; bad input refused with a code."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import stix2

from bastion.errors import InvalidInput, InvalidSignal
from bastion.exchanges import jsonl, stix
from bastion.exchanges.base import ExchangedSignal
from bastion.exchanges.files import FileExchange, read_signals
from bastion.exchanges.threatexchange import read_te_csv, read_te_signals, write_te_csv
from bastion.signals.pdq import PDQSignal
from bastion.signals.text import TextMinHashSignal, normalize_text

DATA = Path(__file__).parent / "data"
PDQ = PDQSignal.examples()


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def dataset() -> list[ExchangedSignal]:
    when = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    return [
        ExchangedSignal(
            "pdq",
            PDQ[0],
            {"category": "propaganda", "ideology": "violent_islamist", "tat_ideology": "islamist", "tat_id": "101"},
            source_id="tat:101",
            contributor="tech_against_terrorism",
            created_at=when,
        ),
        ExchangedSignal(
            "md5",
            md5("benign 1"),
            {"category": "livestreamed_attack", "te_tags": "a b"},
            source_id="c-2",
            contributor="platform-a",
            incident="inc-7",
            extra={"consensus": "agreed"},
        ),
        ExchangedSignal("sha256", hashlib.sha256(b"benign").hexdigest(), {}, source_id="c-3", retracted=True),
        ExchangedSignal("url", "example.org/it's/a/page", {"entity": "Example"}, source_id="c-4"),
        ExchangedSignal("text_minhash", TextMinHashSignal.examples()[0], {"note": "x"}, source_id="c-5"),
    ]


def test_jsonl_round_trip_keeps_every_field() -> None:
    out = io.StringIO()
    assert jsonl.write_jsonl(dataset(), out) == 5
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0])["labels"]["tat_ideology"] == "islamist"
    assert list(jsonl.read_jsonl(io.StringIO(out.getvalue()))) == dataset()


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("{not json", "malformed_jsonl"),
        ('["a list"]', "not_an_object"),
        ('{"signal_type": "pdq"}', "missing_field"),
        ('{"signal_type": "pdq", "value": "abc"}', "invalid_signal"),
        ('{"signal_type": "nope", "value": "abc"}', "unknown_signal_type"),
        ('{"signal_type": "md5", "value": "' + "a" * 32 + '", "labels": [1]}', "labels_not_object"),
        ('{"signal_type": "md5", "value": "' + "a" * 32 + '", "created_at": "yesterday"}', "invalid_time"),
    ],
)
def test_jsonl_bad_lines_are_refused_with_their_line(line: str, code: str) -> None:
    good = json.dumps({"signal_type": "md5", "value": md5("ok")})
    with pytest.raises(InvalidInput) as err:
        list(jsonl.read_jsonl(io.StringIO(good + "\n\n" + line + "\n")))
    assert err.value.code == code
    assert "line 3" in err.value.message


def test_stix_round_trip_is_valid_stix_and_keeps_labels() -> None:
    out = io.StringIO()
    assert stix.write_stix(dataset(), out) == 5
    bundle = stix2.parse(out.getvalue(), allow_custom=True)  # the whole bundle validates
    indicators = [o for o in bundle.objects if o.type == "indicator"]
    assert [i.pattern for i in indicators[:4]] == [
        f"[file:hashes.PDQ = '{PDQ[0]}']",
        f"[file:hashes.MD5 = '{md5('benign 1')}']",
        f"[file:hashes.'SHA-256' = '{hashlib.sha256(b'benign').hexdigest()}']",
        "[url:value = 'example.org/it\\'s/a/page']",
    ]
    assert indicators[4].pattern.startswith("[x-bastion-signal:signal_type = 'text_minhash' AND")
    assert indicators[0].labels == ["category:propaganda", "ideology:violent_islamist"]
    assert indicators[0].x_bastion_labels["tat_ideology"] == "islamist"
    assert indicators[2].revoked is True
    back = list(stix.read_stix(io.BytesIO(out.getvalue().encode())))
    original = dataset()
    assert [(s.signal_type, s.value, s.labels, s.source_id, s.contributor, s.retracted, s.incident) for s in back] == [
        (s.signal_type, s.value, s.labels, s.source_id, s.contributor, s.retracted, s.incident) for s in original
    ]
    assert back[0].created_at == original[0].created_at
    assert back[1].extra == {"consensus": "agreed"}
    again = io.StringIO()
    stix.write_stix(dataset(), again)
    assert [o.id for o in stix2.parse(again.getvalue(), allow_custom=True).objects] == [i.id for i in indicators]


def test_stix_from_another_tool() -> None:
    sha = hashlib.sha256(b"benign other tool").hexdigest()
    other = stix2.v21.Bundle(
        objects=[
            stix2.v21.Identity(name="Other platform", identity_class="organization"),
            stix2.v21.Indicator(
                pattern=f"[file:hashes.'SHA-256' = '{sha}']",
                pattern_type="stix",
                labels=["category:recruitment", "tlp-green"],
            ),
            stix2.v21.Indicator(pattern="[url:value = 'https://example.org/x']", pattern_type="stix"),
        ]
    )
    got = list(stix.read_stix(io.BytesIO(other.serialize().encode())))
    assert [(s.signal_type, s.value) for s in got] == [("sha256", sha), ("url", "example.org/x")]
    assert got[0].labels == {"category": "recruitment", "stix_labels": "tlp-green"}
    assert got[0].source_id.startswith("indicator--")


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        (
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2026-11-25T20:00:00Z",
                "modified": "2026-11-25T20:00:00Z",
                "valid_from": "2026-11-25T20:00:00Z",
                "pattern": "[ipv4-addr:value = '198.51.100.1']",
                "pattern_type": "stix",
            },
            "stix_unsupported_pattern",
        ),
        (
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2026-11-25T20:00:00Z",
                "modified": "2026-11-25T20:00:00Z",
                "valid_from": "2026-11-25T20:00:00Z",
                "pattern": "[file:hashes.PDQ = 'zz'",
                "pattern_type": "stix",
            },
            "stix_invalid",
        ),
        (
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2026-11-25T20:00:00Z",
                "modified": "2026-11-25T20:00:00Z",
                "valid_from": "2026-11-25T20:00:00Z",
                "pattern": "[file:hashes.PDQ = 'abc']",
                "pattern_type": "stix",
            },
            "invalid_signal",
        ),
    ],
)
def test_stix_bad_indicators_are_refused(obj: dict, code: str) -> None:
    text = json.dumps({"type": "bundle", "id": "bundle--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd30", "objects": [obj]})
    with pytest.raises(InvalidInput) as err:
        list(stix.read_stix(io.BytesIO(text.encode())))
    assert err.value.code == code
    with pytest.raises(InvalidInput) as err:
        list(stix.read_stix(io.BytesIO(b'{"type": "bundle", "objects": [{"type": ')))
    assert err.value.code == "malformed_json"


def test_threatexchange_csv_keeps_its_labels_and_round_trips() -> None:
    with open(DATA / "threatexchange_dataset.csv", encoding="utf-8") as fh:
        got = list(read_te_csv(fh))
    assert [(s.signal_type, s.labels) for s in got] == [
        (
            "pdq",
            {
                "te_collab": "Bastion Test Collab",
                "te_category": "POSITIVE_CLASS",
                "te_tags": "bastion_test benign_sample",
            },
        ),
        ("md5", {"te_collab": "Bastion Test Collab", "te_category": "NEGATIVE_CLASS"}),
        ("text", {"te_collab": "Bastion Test Collab", "te_category": "INVESTIGATION_SEED", "te_tags": "bastion_test"}),
    ]
    assert got[2].value == hashlib.sha256(normalize_text("a benign sample sentence about ferries").encode()).hexdigest()
    out = io.StringIO()
    assert write_te_csv(got[:2], out) == 2
    again = list(read_te_csv(io.StringIO(out.getvalue())))
    assert [(s.signal_type, s.value, s.labels) for s in again] == [(s.signal_type, s.value, s.labels) for s in got[:2]]


def test_threatexchange_signal_file_and_bad_rows() -> None:
    with open(DATA / "threatexchange_signals.txt", encoding="utf-8") as fh:
        got = list(read_te_signals(fh))
    assert [s.signal_type for s in got] == ["pdq", "md5", "url"]
    assert [s.value for s in read_te_signals(io.StringIO(PDQ[0] + "\n"), "pdq")] == [PDQ[0]]
    for text, code in (
        ("trend_query something\n", "unsupported_signal_type"),
        ("pdq\n", "missing_field"),
        ("pdq 1234\n", "invalid_signal"),
    ):
        with pytest.raises(InvalidInput) as err:
            list(read_te_signals(io.StringIO(text)))
        assert err.value.code == code and "line 1" in err.value.message
    with pytest.raises(InvalidInput) as err:
        list(read_te_csv(io.StringIO("hash,value\nx,y\n")))
    assert err.value.code == "missing_column"


def test_tat_and_hma_files_as_exchanges(tmp_path: Path) -> None:
    tat_file = tmp_path / "tat.json"
    tat_file.write_text(
        json.dumps(
            {
                "count": 3,
                "next": None,
                "previous": None,
                "checkpoint": "1,3",
                "results": [
                    {
                        "id": 1,
                        "hash_digest": PDQ[1],
                        "algorithm": "PDQ",
                        "ideology": "islamist",
                        "file_type": "jpg",
                        "deleted": False,
                        "created_on": "2026-11-25T20:00:00Z",
                    },
                    {
                        "id": 2,
                        "hash_digest": "not-a-hash",
                        "algorithm": "PDQ",
                        "ideology": "far-right",
                        "deleted": False,
                    },
                    {"id": 3, "hash_digest": PDQ[2], "algorithm": "PDQ", "ideology": "far-right", "deleted": True},
                    {
                        "id": 4,
                        "hash_digest": md5("benign video"),
                        "algorithm": "MD5",
                        "ideology": "far-right",
                        "file_type": "mp4",
                        "deleted": False,
                    },
                ],
            }
        )
    )
    ex = FileExchange("tat-file", tat_file, "tat")
    first = ex.fetch(None, limit=1)
    assert first.more and first.next_cursor == "1"
    sig = first.signals[0]
    assert (sig.signal_type, sig.value, sig.source_id) == ("pdq", PDQ[1], "tat:1#pdq")
    assert sig.labels["tat_ideology"] == "islamist" and sig.labels["ideology"] == "violent_islamist"
    assert sig.labels["source"] == "tech_against_terrorism"
    second = ex.fetch(first.next_cursor, limit=10)
    assert [s.value for s in second.signals] == [md5("benign video")] and not second.more
    assert [r["code"] for r in ex.rejected] == ["invalid_signal"]
    hma_file = tmp_path / "hma.json"
    hma_file.write_text(
        json.dumps(
            [
                {
                    "id": 5,
                    "bank": "TEST_BANK",
                    "disable_until_ts": 1,
                    "signals": {"pdq": PDQ[0], "video_md5": md5("v")},
                    "metadata": {"content_id": "c-5", "json": {}},
                }
            ]
        )
    )
    got = list(read_signals("hma", open(hma_file, "rb")))  # noqa: SIM115
    assert [(s.signal_type, s.labels["hma_content_id"]) for s in got] == [("pdq", "c-5"), ("md5", "c-5")]
    assert len({s.source_id for s in got}) == 2
    with pytest.raises(InvalidInput) as err:
        FileExchange("x", hma_file, "xml")
    assert err.value.code == "unknown_format"
    with pytest.raises(InvalidInput) as err:
        ex.fetch("not-a-number")
    assert err.value.code == "invalid_cursor"


def test_stix_refuses_a_value_stix_itself_rejects() -> None:
    with pytest.raises(InvalidInput) as err:
        stix.to_indicator(ExchangedSignal("md5", "abc"))
    assert err.value.code == "stix_invalid"
    with pytest.raises(InvalidSignal):
        list(jsonl.read_jsonl(io.StringIO('{"signal_type": "md5", "value": "xyz"}\n')))
