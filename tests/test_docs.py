"""Documentation that cannot drift: settings, the error shape, the README quick start."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from bastion import errors
from bastion.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "settings.md").read_text()
    for name in Settings.model_fields:
        assert f"`BASTION_{name.upper()}`" in doc, f"BASTION_{name.upper()} missing from docs/settings.md"
    documented = set(re.findall(r"`BASTION_([A-Z_]+)`", doc)) - {"TEST_POSTGRES_URL"}
    assert documented == {n.upper() for n in Settings.model_fields}, "docs/settings.md names unknown settings"


def test_every_setting_has_a_description():
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_error_shape_is_stable():
    exc = errors.InvalidSignal("bad hash", signal_type="pdq")
    assert exc.to_dict() == {"code": "invalid_signal", "message": "bad hash", "details": {"signal_type": "pdq"}}
    assert errors.NotFound("x").to_dict() == {"code": "not_found", "message": "x"}
    assert errors.InvalidInput("y", code="custom").code == "custom"


def test_error_codes_are_unique_and_snake_case():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.BastionError)]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), codes
    for c in classes:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", c.code), c.code
        assert 400 <= c.http_status < 600 and c.exit_code > 0


def test_readme_quick_start_is_two_commands_that_exist():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./dev demo", "./dev test"]
    dev = (ROOT / "dev").read_text()
    assert "demo)" in dev and "test)" in dev
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
