"""The ``neural-shapes`` command line: one module per group of commands (parse, call, print); :mod:`.main` assembles them."""

from backend.cli.main import app

__all__ = ["app"]
