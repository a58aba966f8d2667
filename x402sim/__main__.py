"""``python -m x402sim`` is the ``x402sim`` command."""

from .cli import app

app(prog_name="x402sim")
