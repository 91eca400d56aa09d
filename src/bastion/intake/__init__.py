"""Intake: where submitted content enters Bastion (uploaded bytes, remote URLs fetched safely, ...)."""
