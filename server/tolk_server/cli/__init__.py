"""The `tolk` command line: serve, translate, keys, glossaries, listen, and the
subcommands of the `tolk.commands` entry points (bench, bundle)."""

from tolk_server.cli.commands import main

__all__ = ["main"]
