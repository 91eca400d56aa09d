"""`bastion hash` and `bastion scan`: one JSON line per file, bad files reported with codes, exit status 0."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.samples import encode, generate_image

runner = CliRunner()


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder of good and bad files."""
    root = tmp_path / "uploads"
    (root / "sub").mkdir(parents=True)
    known = generate_image(1)
    (root / "known.jpg").write_bytes(encode(known))
    (root / "sub" / "known-small.jpg").write_bytes(encode(known.resize((320, 240))))
    (root / "other.png").write_bytes(encode(generate_image(2), "PNG"))
    (root / "empty.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(encode(generate_image(3))[:1500])
    (root / "not-an-image.jpg").write_text("just some words in a file named like a picture\n")
    (root / "junk.bin").write_bytes(os.urandom(4096))
    os.symlink("loop", root / "loop")
    os.symlink("..", root / "sub" / "up")  # a directory symlink cycle
    return root


def test_scan_reports_every_file_and_matches(db, tree: Path):
    assert runner.invoke(app, ["bank", "create", "known"]).exit_code == 0
    added = runner.invoke(app, ["bank", "add", "known", str(tree / "known.jpg"), "--label", "category=recruitment"])
    assert added.exit_code == 0, added.output
    result = runner.invoke(app, ["scan", str(tree), "--json"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in _lines(result.stdout)}
    assert set(rows) == {
        "known.jpg",
        "known-small.jpg",
        "other.png",
        "empty.jpg",
        "truncated.jpg",
        "not-an-image.jpg",
        "junk.bin",
        "loop",
        "up",
    }
    for row in rows.values():
        assert set(row) >= {"path", "content_type", "signals", "matches", "error"}
    assert {m["signal_type"] for m in rows["known.jpg"]["matches"]} >= {"md5", "sha256", "pdq"}
    small = rows["known-small.jpg"]["matches"]
    assert [m["signal_type"] for m in small if m["signal_type"] != "orb"] == ["pdq"]  # orb: the robust signal too
    assert small[0]["labels"]["category"] == "recruitment"
    assert rows["other.png"]["matches"] == [] and rows["other.png"]["error"] is None
    assert rows["empty.jpg"]["error"]["code"] == "empty_content"
    assert rows["truncated.jpg"]["error"]["code"] == "corrupt_content"
    assert rows["not-an-image.jpg"]["content_type"] == "text" and rows["not-an-image.jpg"]["error"] is None
    assert rows["junk.bin"]["content_type"] == "other"
    assert rows["loop"]["error"]["code"] == "symlink_loop"
    assert rows["up"]["error"]["code"] == "directory_symlink_skipped"


def test_scan_with_two_workers_gives_the_same_results(db, tree: Path):
    runner.invoke(app, ["bank", "create", "known"])
    runner.invoke(app, ["bank", "add", "known", str(tree / "known.jpg")])
    one = _lines(runner.invoke(app, ["scan", str(tree), "--json"]).stdout)
    two = _lines(runner.invoke(app, ["scan", str(tree), "--json", "--workers", "2"]).stdout)
    assert one == two


def test_scan_human_output_and_unknown_bank(db, tree: Path):
    runner.invoke(app, ["bank", "create", "known"])
    runner.invoke(app, ["bank", "add", "known", str(tree / "known.jpg")])
    result = runner.invoke(app, ["scan", str(tree / "sub")])
    assert result.exit_code == 0
    assert "MATCH known#" in result.stdout and "\x1b[" not in result.stdout  # no progress bar when piped
    missing = runner.invoke(app, ["scan", str(tree), "--bank", "nope"])
    assert missing.exit_code == 3
    assert "error[not_found]" in missing.stderr


def test_scan_of_a_missing_path_reports_it(db, tmp_path: Path):
    result = runner.invoke(app, ["scan", str(tmp_path / "nowhere"), "--json"])
    assert result.exit_code == 0
    (row,) = _lines(result.stdout)
    assert row["error"]["code"] == "file_not_found"


def test_hash_json_gives_signals_without_matching(tmp_path: Path):
    img = tmp_path / "a.jpg"
    img.write_bytes(encode(generate_image(5)))
    result = runner.invoke(
        app, ["hash", str(img), "--json", "--text", "Hello  WORLD", "--url", "HTTP://Example.COM:80/a#x"]
    )
    assert result.exit_code == 0, result.output
    rows = _lines(result.stdout)
    assert len(rows) == 3
    image_types = {s["type"] for s in rows[0]["signals"]}
    assert image_types >= {"md5", "sha256", "pdq"}
    pdq = next(s for s in rows[0]["signals"] if s["type"] == "pdq")
    assert len(pdq["value"]) == 64 and 0 <= pdq["quality"] <= 100
    assert "_variants" not in pdq
    assert {s["type"] for s in rows[1]["signals"]} >= {"text"}
    url = next(s for s in rows[2]["signals"] if s["type"] == "url")
    assert url["value"] == "example.com/a"  # scheme-less canonical form, port and fragment dropped
    assert "matches" not in rows[0]


def test_hash_without_input_is_a_usage_error():
    result = runner.invoke(app, ["hash"])
    assert result.exit_code == 2
    assert "error[no_input]" in result.stderr


def test_database_errors_become_coded_cli_errors(capsys):
    import sqlite3

    import typer
    from sqlalchemy.exc import OperationalError

    from bastion.cli._common import run_cli

    def busy():
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))

    with pytest.raises(typer.Exit) as stopped:
        run_cli(busy)
    assert stopped.value.exit_code == 1
    assert "error[database_busy]: the database refused the operation: database is locked" in capsys.readouterr().err
