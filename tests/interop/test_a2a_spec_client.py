"""x402 over A2A against a client written from the specification, on real loopback sockets.

Neither SDK ships an A2A x402 sample to test against (the official Python SDK 2.25 has ``x402.mcp``
but no A2A module; ``@x402/*`` on this machine has none either), so ``a2a_spec_client`` is a small
independent client written from ``specs/transports-v2/a2a.md``: plain httpx, JSON-RPC
``message/send``, ``X-A2A-Extensions``, an EIP-3009 authorization signed with eth-account. It pays
x402sim's agent (``serve_a2a``: chain, facilitator and agent served as ``x402sim serve a2a`` does),
and x402sim's own paying client pays the same agent over the SDK's A2A 1.0 wire. Each payment is
judged on chain through the chain's JSON-RPC: balances and ``authorizationState``.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.interop.a2a_spec_client import SpecClient
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http.serve import ChainSetup
from x402sim.transports.a2a import A2aPayingClient
from x402sim.transports.a2a_serve import serve_a2a

PRICE = 1_000  # the demo skill's


@pytest.fixture(scope="module")
def served():
    running = serve_a2a(
        ChainSetup(accounts=2, usdc=1_000_000, seed=5), ports={"chain": 0, "facilitator": 0, "agent": 0}
    )
    chain = RpcChain(running.info["rpc_url"])
    try:
        yield running.info, chain
    finally:
        chain.close()
        running.stop()


def _balances(info, chain) -> tuple[int, ...]:
    asset = info["asset"]
    payers = [a["address"] for a in info["accounts"]]
    return tuple(chain.balance_of(a, asset) for a in [info["payee"], *payers])


def test_a_client_written_from_the_spec_pays_the_agent(served) -> None:
    info, chain = served
    account = info["accounts"][0]
    before = _balances(info, chain)
    with httpx.Client(timeout=30) as http:
        client = SpecClient(info["agent_url"] + "/", bytes.fromhex(account["private_key"][2:]), http)
        exchange = client.buy("Oslo", chain.now)
    metadata = exchange.challenge["status"]["message"]["metadata"]
    assert exchange.challenge["status"]["state"] == "input-required"
    assert metadata["x402.payment.status"] == "payment-required"
    assert metadata["x402.payment.required"]["resource"]["url"] == info["agent_url"] + "/weather"
    assert exchange.final is not None and exchange.payment is not None
    final = exchange.final["status"]
    assert final["state"] == "completed", final
    assert final["message"]["metadata"]["x402.payment.status"] == "payment-completed"
    (receipt,) = final["message"]["metadata"]["x402.payment.receipts"]
    assert receipt["success"] is True and receipt["payer"].lower() == account["address"].lower()
    assert exchange.final["artifacts"][0]["parts"][1]["data"]["place"] == "Oslo"
    after = _balances(info, chain)
    assert after[0] == before[0] + PRICE and after[1] == before[1] - PRICE
    nonce = bytes.fromhex(exchange.payment["payload"]["authorization"]["nonce"][2:])
    assert chain.authorization_state(account["address"], nonce, info["asset"])


def test_x402sims_client_pays_the_served_agent_over_the_sdk(served) -> None:
    info, chain = served
    account = info["accounts"][1]
    before = _balances(info, chain)
    offset = chain.now - int(time.time())

    async def pay():
        async with A2aPayingClient(
            account["private_key"], networks=(info["network"],), clock=lambda: time.time() + offset
        ) as client:
            return client, await client.send_message(info["agent_url"], "Lisbon")

    client, result = asyncio.run(pay())
    assert result.status == 200 and result.paid, result.json()
    after = _balances(info, chain)
    assert after[0] == before[0] + PRICE and after[2] == before[2] - PRICE
    nonce = bytes.fromhex(client.payments[-1].nonce[2:])
    assert chain.authorization_state(account["address"], nonce, info["asset"])
