"""Known-good wire messages (hand-written, as a server or client would send them) and a base64 helper."""

from __future__ import annotations

import base64
import json
from typing import Any

from x402sim.protocol import PaymentRequired, PaymentRequiredV1, WireModel


def b64(data: Any) -> str:
    """Standard padded base64 of ``data`` (JSON-encoded unless already bytes)."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.b64encode(raw).decode()


EXACT_PAYLOAD = {
    "signature": "0x" + "1b" * 65,
    "authorization": {
        "from": "0x" + "a1" * 20,
        "to": "0x" + "b2" * 20,
        "value": "10000",
        "validAfter": "1700000000",
        "validBefore": "1700000600",
        "nonce": "0x" + "c3" * 32,
    },
}
_V2_ENTRY = {
    "scheme": "exact",
    "network": "eip155:84532",
    "amount": "10000",
    "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    "payTo": "0x" + "b2" * 20,
    "maxTimeoutSeconds": 60,
    "extra": {"name": "USDC", "version": "2"},
}
_V1_ENTRY = {
    "scheme": "exact",
    "network": "base-sepolia",
    "maxAmountRequired": "10000",
    "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    "payTo": "0x" + "b2" * 20,
    "resource": "http://127.0.0.1:4021/weather",
    "description": "",
    "mimeType": "",
    "maxTimeoutSeconds": 60,
}
VALID_WIRE: dict[type[WireModel], dict[str, Any]] = {
    PaymentRequired: {
        "x402Version": 2,
        "resource": {"url": "http://127.0.0.1:4021/weather"},
        "accepts": [_V2_ENTRY],
    },
    PaymentRequiredV1: {"x402Version": 1, "error": "", "accepts": [_V1_ENTRY]},
}
