"""Organisations, users and API keys: who is calling Bastion and what they may do."""
