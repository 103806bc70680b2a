"""``python -m backend.cli``: the ``neural-shapes`` command line."""

from backend.cli.main import app

app(prog_name="neural-shapes")
