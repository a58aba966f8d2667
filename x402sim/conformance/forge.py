"""Payments made on purpose, right or wrong: the harness's signing side.

Job: sign ``exact`` EIP-3009 payments and Permit2 permits (``exact`` with Permit2, ``upto``) for
requirements read off a target's 402 (as wire JSON), with
any field overridden, and turn them into header values. Working on wire dicts (not the protocol
models) lets a case send what the models would refuse: a null ``accepted``, a high-s signature, an
amount in the wrong units.

Rules: signatures are real (``eip712.sign_digest``) over the domain the requirements name unless a
case overrides it; nonces come from the caller's ``random.Random`` so a run is reproducible.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from eth_utils import to_checksum_address

from ..evm.eip712 import Authorization, Domain, authorization_digest, sign_digest
from ..evm.permit2 import (
    EXACT_PERMIT2_PROXY_ADDRESS,
    UPTO_PERMIT2_PROXY_ADDRESS,
    PermitTransfer,
    permit_witness_digest,
)
from ..protocol import evm_chain_id, v1_to_caip2

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def header_value(document: Any) -> str:
    """Standard padded base64 of compact UTF-8 JSON: how every x402 header is written."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode()).decode()


def domain_of(
    requirements: dict,
    *,
    name: str | None = None,
    version: str | None = None,
    chain_id: int | None = None,
    contract: str | None = None,
) -> Domain:
    extra = requirements.get("extra") or {}
    return Domain(
        name=name if name is not None else str(extra.get("name", "")),
        version=version if version is not None else str(extra.get("version", "")),
        chain_id=chain_id if chain_id is not None else _chain_id(requirements["network"]),
        verifying_contract=to_checksum_address(contract or requirements["asset"]),
    )


def _chain_id(network: str) -> int:
    """The chain id of a CAIP-2 network or of a v1 network name (``base-sepolia``)."""
    return evm_chain_id(network if ":" in str(network) else v1_to_caip2(network))


def amount_of(requirements: dict) -> int:
    return int(requirements.get("amount", requirements.get("maxAmountRequired", 0)))


def sign_exact(
    key: bytes,
    payer: str,
    requirements: dict,
    now: int,
    rng: random.Random,
    *,
    domain: Domain | None = None,
    sign_key: bytes | None = None,
    **overrides: Any,
) -> dict:
    """The ``payload`` object of an exact EVM payment for ``requirements``: ``{signature,
    authorization}``. ``overrides`` replace authorization fields (``from_``, ``to``, ``value``,
    ``valid_after``, ``valid_before``, ``nonce``) before signing; ``sign_key`` signs instead of
    ``key``; ``domain`` replaces the requirements' EIP-712 domain."""
    fields = {
        "from_": payer,
        "to": requirements["payTo"],
        "value": amount_of(requirements),
        "valid_after": now - 600,
        "valid_before": now + int(requirements.get("maxTimeoutSeconds", 60)),
        "nonce": rng.randbytes(32),
    }
    fields.update(overrides)
    auth = Authorization(
        from_=to_checksum_address(fields["from_"]),
        to=to_checksum_address(fields["to"]),
        value=int(fields["value"]),
        valid_after=int(fields["valid_after"]),
        valid_before=int(fields["valid_before"]),
        nonce=fields["nonce"],
    )
    signature = sign_digest(sign_key or key, authorization_digest(domain or domain_of(requirements), auth))
    return {
        "signature": "0x" + signature.hex(),
        "authorization": {
            "from": auth.from_,
            "to": auth.to,
            "value": str(auth.value),
            "validAfter": str(auth.valid_after),
            "validBefore": str(auth.valid_before),
            "nonce": "0x" + auth.nonce.hex(),
        },
    }


def sign_permit2(
    key: bytes,
    payer: str,
    requirements: dict,
    now: int,
    rng: random.Random,
    *,
    sign_key: bytes | None = None,
    **overrides: Any,
) -> dict:
    """The ``payload`` object of a Permit2 payment (``exact`` or ``upto``, by the requirements'
    scheme) for ``requirements``: ``{signature, permit2Authorization}``, as the SDK clients make it
    (spender the scheme's proxy, witness.validAfter 0, deadline ``maxTimeoutSeconds`` from ``now``, a
    random decimal nonce; upto's witness names ``extra.facilitatorAddress``). ``overrides`` replace
    ``PermitTransfer`` fields (``token``, ``amount``, ``spender``, ``nonce``, ``deadline``, ``to``,
    ``valid_after``, ``facilitator``) before signing; ``sign_key`` signs instead of ``key``."""
    upto = requirements.get("scheme") == "upto"
    facilitator = (requirements.get("extra") or {}).get("facilitatorAddress") if upto else None
    fields: dict[str, Any] = {
        "token": requirements["asset"],
        "amount": amount_of(requirements),
        "spender": UPTO_PERMIT2_PROXY_ADDRESS if upto else EXACT_PERMIT2_PROXY_ADDRESS,
        "nonce": int.from_bytes(rng.randbytes(32), "big"),
        "deadline": now + int(requirements.get("maxTimeoutSeconds", 60)),
        "to": requirements["payTo"],
        "valid_after": 0,
        "facilitator": facilitator,
    }
    fields.update(overrides)
    permit = PermitTransfer(
        token=to_checksum_address(fields["token"]),
        amount=int(fields["amount"]),
        spender=to_checksum_address(fields["spender"]),
        nonce=int(fields["nonce"]),
        deadline=int(fields["deadline"]),
        to=to_checksum_address(fields["to"]),
        valid_after=int(fields["valid_after"]),
        facilitator=to_checksum_address(fields["facilitator"]) if fields["facilitator"] else None,
    )
    signature = sign_digest(
        sign_key or key, permit_witness_digest(_chain_id(requirements["network"]), permit)
    )
    witness: dict[str, str] = {"to": permit.to, "validAfter": str(permit.valid_after)}
    if permit.facilitator is not None:
        witness = {"to": permit.to, "facilitator": permit.facilitator, "validAfter": str(permit.valid_after)}
    return {
        "signature": "0x" + signature.hex(),
        "permit2Authorization": {
            "from": to_checksum_address(payer),
            "permitted": {"token": permit.token, "amount": str(permit.amount)},
            "spender": permit.spender,
            "nonce": str(permit.nonce),
            "deadline": str(permit.deadline),
            "witness": witness,
        },
    }


def payment_v2(requirements: dict, payload: dict, *, resource: dict | None = None, **extra: Any) -> dict:
    """A v2 PaymentPayload echoing ``requirements`` as ``accepted``."""
    document = {"x402Version": 2, "accepted": requirements, "payload": payload}
    if resource is not None:
        document["resource"] = resource
    document.update(extra)
    return document


def payment_v1(requirements: dict, payload: dict) -> dict:
    """A v1 payment (``X-PAYMENT``) for v1 ``requirements``."""
    return {
        "x402Version": 1,
        "scheme": requirements["scheme"],
        "network": requirements["network"],
        "payload": payload,
    }


def high_s(signature_hex: str) -> str:
    """The same signature with s replaced by n - s and v flipped: it still recovers to the signer in
    ``ecrecover``, but EIP-2 and every careful verifier refuse it."""
    raw = bytes.fromhex(signature_hex[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    flipped = 27 + 28 - v if v in (27, 28) else 1 - v
    return "0x" + (r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped])).hex()
