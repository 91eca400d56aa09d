"""`bastion demo`, the README's first command: every altered copy matches, nothing unrelated does; reruns work."""

from typer.testing import CliRunner

from bastion.cli.main import app


def test_demo_matches_every_altered_copy_and_nothing_else(settings):
    runner = CliRunner()
    for _ in range(2):  # a second run replaces the demo bank instead of failing
        result = runner.invoke(app, ["demo"])
        assert result.exit_code == 0, result.output
        assert "36 of 36 altered copies matched; 0 of 5 unrelated files matched." in result.stdout
    assert (settings.data_dir / "bastion.sqlite3").exists()
    assert (settings.data_dir / "index").exists()
