"""The command line: ``stolentee <command>``; :mod:`stolentee.cli.app` lists the commands."""

from stolentee.cli.app import app, main

__all__ = ["app", "main"]
