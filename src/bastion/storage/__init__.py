"""Storage: SQLAlchemy models, Alembic migrations and database sessions.

SQLite (a file in the data directory) is the embedded default; ``BASTION_DATABASE_URL`` selects PostgreSQL.
"""
