"""Bastion's HTTP API (FastAPI): ``create_app`` in app.py, authentication and scope checks in deps.py."""
