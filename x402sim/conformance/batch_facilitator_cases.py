"""Cases of the ``batch-settlement`` mechanism for facilitator targets (payment channels), judged on chain.

Each case names the mechanism ``batch-settlement`` and shares ``batch_kit``'s offers, payments and
channel facts.
"""

from __future__ import annotations
