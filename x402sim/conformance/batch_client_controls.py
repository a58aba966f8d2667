"""Controls of the ``batch-settlement`` client cases: the reference client with one channel rule
broken on purpose.
"""

from __future__ import annotations
