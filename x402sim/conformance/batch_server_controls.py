"""Controls of the ``batch-settlement`` server cases: the reference server with one channel rule
broken on purpose.
"""

from __future__ import annotations
