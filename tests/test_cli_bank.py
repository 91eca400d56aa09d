"""`bastion bank`: every command through Typer's test runner, on SQLite and PostgreSQL (BASTION_DATABASE_URL)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bastion.cli.bank import app
from bastion.samples import encode, generate_image

runner = CliRunner()
MD5 = "9e107d9d372bb6826bd81d3542a419d6"
PDQ = "0f" * 32


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def test_create_list_show_enable_disable_delete(db):
    run("create", "known", "--description", "known content")
    run("create", "fp", "--kind", "allow")
    banks = json.loads(run("list", "--json").stdout)
    assert [(b["name"], b["kind"], b["entries"]) for b in banks] == [("fp", "allow", 0), ("known", "block", 0)]
    assert "known" in run("list").stdout
    run("disable", "known")
    assert json.loads(run("show", "known", "--json").stdout)["enabled"] is False
    run("enable", "known")
    shown = json.loads(run("show", "known", "--json").stdout)
    assert shown["enabled"] is True and shown["description"] == "known content"
    refused = run("delete", "known", code=2)  # not a terminal: needs --yes
    assert "error[confirmation_required]" in refused.stderr
    run("delete", "known", "--yes")
    assert [b["name"] for b in json.loads(run("list", "--json").stdout)] == ["fp"]


def test_errors_print_a_code_and_exit_with_its_status(db):
    run("create", "known")
    dup = run("create", "known", code=4)
    assert dup.stderr.strip() == "error[bank_exists]: a bank named 'known' already exists"
    missing = run("show", "nope", code=3)
    assert missing.stderr.startswith("error[not_found]: no bank named")
    bad = run("create", "bad name", code=2)
    assert bad.stderr.startswith("error[invalid_bank_name]:")
    assert "Traceback" not in bad.stderr + bad.stdout
    assert run("entry", "disable", "12345", code=3).stderr.startswith("error[not_found]: no bank entry 12345")


def test_add_files_with_labels(db, tmp_path: Path):
    run("create", "known")
    image = tmp_path / "known.jpg"
    image.write_bytes(encode(generate_image(3)))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    added = run(
        "add",
        "known",
        str(image),
        str(empty),
        "--label",
        "category=recruitment",
        "-l",
        "entity=ISIS",
        "--source",
        "forum",
        "--note",
        "from the forum",
    )
    assert f"added {image} as entry #" in added.stdout
    assert f"{empty}: error[empty_content]" in added.stderr
    entry = json.loads(run("show", "known", "--json").stdout)["entries"][0]
    assert entry["labels"] == {"category": "recruitment", "entity": "Islamic State of Iraq and the Levant"}
    assert (entry["source"], entry["note"], entry["content_type"]) == ("forum", "from the forum", "image")
    assert "already banked" in run("add", "known", str(image)).stdout
    bad_label = run("add", "known", str(image), "--label", "ideology=nope", code=2)
    assert "error[unknown_label_value]" in bad_label.stderr and "violent_islamist" in bad_label.stderr
    assert run("add", "known", str(image), "--label", "novalue", code=2).stderr.startswith(
        "error[invalid_label_syntax]"
    )


def test_import_export_and_entry_commands(db, tmp_path: Path):
    run("create", "known")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"signal_type,signal,labels\nmd5,{MD5},category=glorification\npdq,{PDQ},\nmd5,oops,\n")
    out = run("import", "known", str(csv_file), "--format", "csv", "--source", "forum")
    assert "imported 2 entries (2 signals)" in out.stdout and "rejected 1 rows" in out.stdout
    assert "error[invalid_signal]: line 4:" in out.stderr
    shown = run("show", "known").stdout
    assert "2 entries (0 disabled), 2 signals" in shown and "csv list.csv: 2 imported, 0 skipped, 1 rejected" in shown
    as_json = json.loads(run("import", "known", str(csv_file), "--json").stdout)
    assert (as_json["imported"], as_json["skipped"], as_json["rejected"]) == (0, 2, 1)
    exported = run("export", "known", "--format", "jsonl").stdout
    rows = [json.loads(line) for line in exported.splitlines()]
    assert {(r["signal_type"], r["signal"], r["source"]) for r in rows} == {
        ("md5", MD5, "forum"),
        ("pdq", PDQ, "forum"),
    }
    target = tmp_path / "out.json"
    written = run("export", "known", "--format", "hma", "--output", str(target))
    assert "wrote 2 signals" in written.stderr
    assert {next(iter(e["signals"].values())) for e in json.loads(target.read_text())} == {MD5, PDQ}
    entry_id = next(
        e["id"] for e in json.loads(run("show", "known", "--json").stdout)["entries"] if e["signals"][0]["value"] == MD5
    )
    run("entry", "disable", str(entry_id))
    assert MD5 not in run("export", "known").stdout
    assert MD5 in run("export", "known", "--include-disabled").stdout
    run("entry", "enable", str(entry_id))
    run("entry", "delete", str(entry_id))
    assert json.loads(run("show", "known", "--json").stdout)["entries"][0]["signals"][0]["value"] == PDQ
    bad = run("import", "known", str(tmp_path / "missing.csv"), code=2)
    assert bad.stderr.startswith("error[file_not_found]:")
    assert run("export", "known", "--format", "xml", code=2).stderr.startswith("error[unknown_format]:")
    assert not list(tmp_path.glob(".out.json.*"))  # no temporary files left behind


def test_entities_and_taxonomy(db):
    found = run("entities", "daech").stdout
    assert "Islamic State of Iraq and the Levant" in found
    listed = json.loads(run("entities", "--lists", "--json").stdout)
    assert {x["id"] for x in listed} == {"un_1267", "uk_proscribed", "eu_terrorist_list"}
    assert all(x["retrieval"] and x["source"].startswith("https://") for x in listed)
    everything = json.loads(run("entities", "--json").stdout)
    assert len(everything) > 100 and all(e["name"] for e in everything)
    taxonomy = json.loads(run("taxonomy", "--json").stdout)
    assert "attacker_manifesto" in taxonomy["category"] and "gifct" in taxonomy["source"]
