"""Controls of the ``batch-settlement`` facilitator cases: the reference facilitator with one channel rule
broken on purpose.
"""

from __future__ import annotations
