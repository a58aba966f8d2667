"""A client built on the official Python x402 SDK (``x402HttpxClient``), as an e2e target.

Environment (the official e2e harness's): ``RESOURCE_SERVER_URL``, ``ENDPOINT_PATH``,
``EVM_PRIVATE_KEY`` (or ``CLIENT_EVM_PRIVATE_KEY``), ``EVM_NETWORK``, ``EVM_RPC_URL``.

Makes one ``GET`` and prints one JSON line ``{success, data, status_code, payment_response}``
(``payment_response`` the decoded ``PAYMENT-RESPONSE`` header, null when absent); exit 0 on success.
The exact EVM scheme is registered with the SDK's helper (``eip155:*`` and the v1 names; it pays
EIP-3009 and Permit2 offers alike), and the upto and batch-settlement schemes for ``eip155:*`` as
well; the default spend controls apply. The signer reads the chain at ``EVM_RPC_URL``
(``EthAccountSignerWithRPC``), which the SDK needs to build the gas-sponsoring extensions a 402
declares, and to recover a batch-settlement channel it has no record of (each run is a new process:
the channels are in the SDK's in-memory storage, so a channel opened by an earlier run is read back
from the chain) and to check a corrective 402 against the chain. A batch-settlement deposit is the
SDK's default size (the offer's ``minDeposit``). On the local chain
(``eip155:31337``) the SDK knows no default asset and would refuse every offer, and the harness
names no token to the client, so there any asset is allowed (``allowed_assets: True``; the SDK's
caps on its default assets still apply).
"""

from __future__ import annotations

import asyncio
import json
import sys

from _common import LOCAL_NETWORK, env, private_key
from eth_account import Account
from x402 import x402Client
from x402.http import decode_payment_response_header
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSignerWithRPC
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.upto import UptoEvmClientScheme


async def main() -> int:
    url = env("RESOURCE_SERVER_URL").rstrip("/") + env("ENDPOINT_PATH")
    client = x402Client()
    signer = EthAccountSignerWithRPC(Account.from_key(private_key("client")), env("EVM_RPC_URL"))
    register_exact_evm_client(client, signer)
    # a network of their own would hide exact's eip155:*
    client.register("eip155:*", UptoEvmClientScheme(signer))
    client.register("eip155:*", BatchSettlementEvmScheme(signer))
    if env("EVM_NETWORK") == LOCAL_NETWORK:
        client.set_spend_controls({"allowed_assets": True})
    verdict = {"success": False, "data": None, "status_code": None, "payment_response": None}
    try:
        async with x402HttpxClient(client, timeout=20.0) as http:
            response = await http.get(url)
        try:
            data = response.json()
        except ValueError:
            data = response.text
        header = response.headers.get("payment-response")
        verdict |= {
            "success": response.is_success,
            "data": data,
            "status_code": response.status_code,
            "payment_response": None if header is None else _wire(decode_payment_response_header(header)),
        }
    except Exception as exc:  # the SDK refused to pay, or the request failed: the verdict says so
        print(repr(exc), file=sys.stderr)
        verdict["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(verdict, default=str), flush=True)
    return 0 if verdict["success"] else 1


def _wire(value):
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", by_alias=True, exclude_none=True) if dump else value


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
