"""Helpers to craft payments field by field, for tests that need a payment that is wrong on purpose."""

from __future__ import annotations

from eth_utils import to_checksum_address

from x402sim.evm.eip712 import Authorization, authorization_digest, sign_digest
from x402sim.mechanisms.exact_eip3009 import Offer
from x402sim.protocol import PaymentPayload, PaymentRequirements


def craft_payment(
    key: bytes,
    payer: str,
    requirements: PaymentRequirements,
    now: int,
    *,
    nonce: bytes = b"\x42" * 32,
    sign_key: bytes | None = None,
    sign_offer: Offer | None = None,
    accepted: PaymentRequirements | None = None,
    signature: str | None = None,
    **fields,
) -> PaymentPayload:
    """A v2 payment for ``requirements``; ``fields`` override authorization fields (``to``, ``value``,
    ``valid_after``, ``valid_before``, ``from_``); it is signed by ``sign_key`` (default ``key``)
    over ``sign_offer``'s domain (default the requirements')."""
    offer = Offer.of(requirements)
    values = {
        "from_": payer,
        "to": offer.pay_to,
        "value": offer.amount,
        "valid_after": now - 600,
        "valid_before": now + offer.max_timeout_seconds,
        "nonce": nonce,
    }
    values.update(fields)
    auth = Authorization(**values)
    sig = sign_digest(sign_key or key, authorization_digest((sign_offer or offer).domain, auth))
    payload = {
        "signature": signature or "0x" + sig.hex(),
        "authorization": {
            "from": to_checksum_address(auth.from_),
            "to": auth.to,
            "value": str(auth.value),
            "validAfter": str(auth.valid_after),
            "validBefore": str(auth.valid_before),
            "nonce": "0x" + auth.nonce.hex(),
        },
    }
    return PaymentPayload(x402_version=2, accepted=accepted or requirements, payload=payload)
