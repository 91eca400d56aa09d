"""Placeholder: ``bastion bank`` commands are being written."""

import typer

app = typer.Typer(help="Create, fill, import and export hash banks.", no_args_is_help=True)
