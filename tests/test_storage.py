"""The schema: migrations build exactly what the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from bastion.storage.db import open_database
from bastion.storage.models import Bank, Base


def _fk_signature(fk) -> tuple:
    return (fk.table.name, tuple(c.name for c in fk.columns), fk.referred_table.name)


def _without_unnamed_sqlite_fks(diff: list) -> list:
    """SQLite does not report the name of a foreign key declared on a column (``ALTER TABLE ... ADD COLUMN ...
    REFERENCES``, the only way to add one without copying the table): such a key shows up as removed-unnamed plus
    added-named, and without its ON DELETE (which SQLite does apply). Drop those pairs when the columns and
    the referred table agree; the PostgreSQL run of this test checks the rest."""
    unnamed = {_fk_signature(d[1]) for d in diff if d[0] == "remove_fk" and d[1].name is None}
    named = {_fk_signature(d[1]) for d in diff if d[0] == "add_fk"}
    both = unnamed & named
    return [d for d in diff if not (d[0] in ("remove_fk", "add_fk") and _fk_signature(d[1]) in both)]


def test_models_and_migrations_agree(db):
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"render_as_batch": True})
        diff = compare_metadata(ctx, Base.metadata)
    if db.engine.dialect.name == "sqlite":
        diff = _without_unnamed_sqlite_fks(diff)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_migrations_create_every_table(db):
    tables = set(inspect(db.engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables


def test_session_rolls_back_on_error(db):
    try:
        with db.session() as s:
            s.add(Bank(name="rolled-back"))
            s.flush()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with db.session() as s:
        assert s.scalars(select(Bank)).all() == []


def test_default_database_is_sqlite_in_data_dir(settings):
    database = open_database(settings)
    assert database.engine.url.get_backend_name() == "sqlite"
    assert (settings.data_dir / "bastion.sqlite3").exists()
    open_database(settings)  # migrating twice is a no-op
