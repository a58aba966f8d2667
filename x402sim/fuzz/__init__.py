"""Hostile inputs for x402sim's services: mutations, probes and their judge, and the served campaign.

``mutations`` makes one-change variants of valid inputs from a seeded ``random.Random``; ``probes``
turns them into HTTP requests for each service and judges the answers; ``campaign`` runs a long
seeded campaign against ``x402sim serve`` processes started as a user would (``x402sim fuzz``,
``make fuzz``) and reconciles what was served with what moved on chain.
"""

from .mutations import mutate_json, value_names
from .probes import ENDPOINTS, Probe, Target, draw, judge

__all__ = ["ENDPOINTS", "Probe", "Target", "draw", "judge", "mutate_json", "value_names"]
