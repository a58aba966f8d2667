"""The conformance suite: judge any x402 server, facilitator or client with on-chain evidence.

Public API (imported on first use, so ``x402sim --help`` and the other commands stay fast):
``select`` (the catalog), ``run`` and ``RunOptions`` (a run against one target), the targets
``ServiceCommand``, ``ServiceUrl``, ``AsgiApp`` and ``ClientCommand``, ``HarnessOptions``, the report
model ``RunReport`` and ``load_report``. See the docs' conformance tutorial (docs/tutorials/conformance.md).
"""

from importlib import import_module

_PUBLIC = {
    "select": "catalog",
    "run": "runner",
    "RunOptions": "runner",
    "HarnessOptions": "harness",
    "ServiceCommand": "targets",
    "ServiceUrl": "targets",
    "AsgiApp": "targets",
    "ClientCommand": "targets",
    "RunReport": "results",
    "load_report": "reports",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
