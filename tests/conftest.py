"""Shared fixtures.

Databases: every test that takes ``db`` runs on SQLite, and again on PostgreSQL when ``BASTION_TEST_POSTGRES_URL``
is set. Each xdist worker gets its own PostgreSQL database, migrated once; tables are emptied after each test.
When the URL is set but the server cannot be reached, the run fails loudly instead of skipping.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bastion.settings import Settings, reset_settings_cache
from bastion.storage.db import Database, make_engine, migrate
from bastion.storage.models import Base

POSTGRES_URL = os.environ.get("BASTION_TEST_POSTGRES_URL", "").strip()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own data directory and fresh settings; no BASTION_* leaks in from the shell."""
    for key in list(os.environ):
        if key.startswith("BASTION_") and key != "BASTION_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "bastion-data"))
    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.fixture
def settings() -> Settings:
    from bastion.settings import get_settings

    return get_settings()


def _worker_db_name(testrun_uid: str, worker_id: str) -> str:
    """One database per test run and worker, so two runs against one server never touch each other's data."""
    return "bastion_test_" + re.sub(r"[^a-z0-9_]", "_", f"{testrun_uid[:10]}_{worker_id}".lower())


@pytest.fixture(scope="session")
def postgres_database_url(testrun_uid: str, worker_id: str) -> Iterator[str]:
    """A freshly created, migrated PostgreSQL database for this xdist worker."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need BASTION_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/test)")
    admin_url = make_url(POSTGRES_URL)
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = _worker_db_name(testrun_uid, worker_id)
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here must stop the run, not skip it
        pytest.fail(
            f"BASTION_TEST_POSTGRES_URL is set ({POSTGRES_URL}) but PostgreSQL is unreachable: {exc}",
            pytrace=False,
        )
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _empty_all_tables(database: Database) -> None:
    with database.engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A migrated, empty database: SQLite, then PostgreSQL (when configured). BASTION_DATABASE_URL points at it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
        engine = make_engine(url)
        migrate(engine)
        database = Database(engine)
        monkeypatch.setenv("BASTION_DATABASE_URL", url)
        reset_settings_cache()
        yield database
        engine.dispose()
        return
    url = request.getfixturevalue("postgres_database_url")
    engine = make_engine(url)
    database = Database(engine)
    _empty_all_tables(database)
    monkeypatch.setenv("BASTION_DATABASE_URL", url)
    reset_settings_cache()
    yield database
    _empty_all_tables(database)
    engine.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run tests marked ``slow`` first: with xdist, one worker starts the long crash test while the others share
    everything else, instead of every other worker sitting idle at the end waiting for it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order
