"""The version of x402sim, read from the installed package's metadata (pyproject.toml's ``version``).

Every place that prints or records the version takes it from here: ``x402sim --version``,
``x402sim.__version__``, the conformance reports' ``tool`` and a run's ``summary.json`` ``tool``.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["NAME", "VERSION"]

NAME = "x402sim"
VERSION = metadata.version(NAME)
