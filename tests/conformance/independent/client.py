"""An independent x402 v2 client (HTTP transport, ``exact`` on EVM with EIP-3009).

``pay(env)`` does what an e2e client does with ``RESOURCE_SERVER_URL`` + ``ENDPOINT_PATH``,
``CLIENT_EVM_PRIVATE_KEY`` (or ``EVM_PRIVATE_KEY``), ``EVM_NETWORK`` and ``MAX_AMOUNT_ATOMIC``
(default 1000000): one GET; on a 402 it pays one offer and asks once more; it returns the verdict
``{success, data, status_code, payment_response}``. ``python -m ...client`` prints it as one line.

Decisions, with where they come from:

* Only a 402 asks for payment (v2 HTTP transport); its ``PAYMENT-REQUIRED`` header must decode to a
  version 2 ``PaymentRequired`` with an ``accepts`` list, or nothing is paid.
* An offer is payable when it is ``exact`` on ``EVM_NETWORK``, its amount is a decimal integer
  string no greater than the cap, its asset and payTo are addresses, ``maxTimeoutSeconds`` is a
  positive integer, ``extra`` names the token's EIP-712 domain, its ``assetTransferMethod`` is
  absent or ``eip3009`` and its ``paymentFlow`` absent, ``authorization`` or ``upfront`` (flows
  this client knows; others are never paid). ``authorization`` (or absent) is preferred, then the
  lowest amount, then the server's order.
* The authorization: a fresh random 32-byte nonce, ``validAfter`` 0, ``validBefore`` now plus
  ``maxTimeoutSeconds`` but at most ``MAX_WINDOW`` (an authorization valid for years is a standing
  cheque). ``accepted`` echoes the chosen offer as received; ``resource`` and ``extensions`` are
  echoed too (core spec 5.1.2: the client echoes the extensions it received).
* The paid request goes to the same URL, redirects not followed, and is never repeated: whatever
  happens to it (an error status, a second 402, a dropped connection, a timeout) is the verdict.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data

from .wire import ADDRESS, DIGITS, Malformed, chain_id, decode_header, encode_header, transfer_typed_data

DEFAULT_CAP = 1_000_000
MAX_WINDOW = 3600
TIMEOUT = 30.0
KNOWN_FLOWS = {None: 0, "authorization": 0, "upfront": 1}  # preference rank


def rank(offer: object, network: str, cap: int) -> tuple[int, int] | None:
    """How much this offer is preferred (lower first), or None when it is not payable."""
    if not isinstance(offer, dict):
        return None
    extra = offer.get("extra")
    amount, timeout = offer.get("amount"), offer.get("maxTimeoutSeconds")
    payable = (
        offer.get("scheme") == "exact"
        and offer.get("network") == network
        and isinstance(amount, str)
        and DIGITS.fullmatch(amount) is not None
        and int(amount) <= cap
        and all(isinstance(offer.get(k), str) and ADDRESS.fullmatch(offer[k]) for k in ("asset", "payTo"))
        and type(timeout) is int
        and timeout > 0
        and isinstance(extra, dict)
        and all(isinstance(extra.get(k), str) and extra[k] for k in ("name", "version"))
        and extra.get("assetTransferMethod", "eip3009") == "eip3009"
        and extra.get("paymentFlow") in KNOWN_FLOWS
    )
    return (KNOWN_FLOWS[extra.get("paymentFlow")], int(amount)) if payable else None  # type: ignore[union-attr]


def choose(required: dict, network: str, cap: int) -> dict | None:
    ranked = [
        (r, i, o) for i, o in enumerate(required["accepts"]) if (r := rank(o, network, cap)) is not None
    ]
    return min(ranked, key=lambda entry: (entry[0], entry[1]))[2] if ranked else None


def sign(offer: dict, account, network: str) -> dict:
    authorization = {
        "from": account.address,
        "to": offer["payTo"],
        "value": offer["amount"],
        "validAfter": "0",
        "validBefore": str(int(time.time()) + min(offer["maxTimeoutSeconds"], MAX_WINDOW)),
        "nonce": "0x" + secrets.token_bytes(32).hex(),
    }
    numbers = {k: int(v) for k, v in authorization.items() if k in ("value", "validAfter", "validBefore")}
    message = transfer_typed_data(
        offer["extra"]["name"],
        offer["extra"]["version"],
        chain_id(network),
        offer["asset"],
        authorization | numbers,
    )
    signed = account.sign_message(encode_typed_data(full_message=message))
    return {"signature": "0x" + bytes(signed.signature).hex(), "authorization": authorization}


def payment_required(response: httpx.Response) -> dict:
    values = response.headers.get_list("payment-required")
    if len(values) != 1:
        raise Malformed("a 402 without exactly one PAYMENT-REQUIRED header")
    document = decode_header(values[0])
    if (
        not isinstance(document, dict)
        or document.get("x402Version") != 2
        or type(document["x402Version"]) is not int
    ):
        raise Malformed("PAYMENT-REQUIRED is not a version 2 PaymentRequired")
    if not isinstance(document.get("accepts"), list):
        raise Malformed("PAYMENT-REQUIRED has no accepts list")
    return document


def verdict(response: httpx.Response | None, error: str | None = None) -> dict:
    if response is None:
        return {"success": False, "data": error, "status_code": None, "payment_response": None}
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = response.text
    settlement = None
    if "payment-response" in response.headers:
        try:
            settlement = decode_header(response.headers["payment-response"])
        except Malformed:
            settlement = None
    return {
        "success": 200 <= response.status_code < 300 and error is None,
        "data": data if error is None else error,
        "status_code": response.status_code,
        "payment_response": settlement,
    }


def pay(env: dict[str, str]) -> dict:
    url = env["RESOURCE_SERVER_URL"].rstrip("/") + "/" + env["ENDPOINT_PATH"].lstrip("/")
    account = Account.from_key(env.get("CLIENT_EVM_PRIVATE_KEY") or env["EVM_PRIVATE_KEY"])
    network = env["EVM_NETWORK"]
    cap = int(env.get("MAX_AMOUNT_ATOMIC") or DEFAULT_CAP)
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as http:
        try:
            first = http.get(url)
        except httpx.HTTPError as exc:
            return verdict(None, f"request failed: {type(exc).__name__}")
        if first.status_code != 402:
            return verdict(first)
        try:
            required = payment_required(first)
        except Malformed as exc:
            return verdict(first, f"not paid: {exc}")
        offer = choose(required, network, cap)
        if offer is None:
            return verdict(first, "not paid: no offer this client can pay")
        payment = {"x402Version": 2, "accepted": offer, "payload": sign(offer, account, network)}
        for echoed in ("resource", "extensions"):
            if echoed in required:
                payment[echoed] = required[echoed]
        try:
            second = http.get(url, headers={"PAYMENT-SIGNATURE": encode_header(payment)})
        except httpx.HTTPError as exc:  # paid, perhaps: never asked again
            return verdict(None, f"the paid request failed: {type(exc).__name__}")
        return verdict(second)


if __name__ == "__main__":
    result = pay(dict(os.environ))
    print(json.dumps(result))
    sys.exit(0 if result["success"] else 1)
