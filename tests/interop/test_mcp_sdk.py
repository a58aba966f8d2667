"""x402sim against the official x402 Python SDK's MCP transport (``x402.mcp``), both ways, on chain.

(a) x402sim's paying MCP client pays the SDK's tool server: a FastMCP server whose tool is wrapped by
    ``create_payment_wrapper`` around the SDK's ``x402ResourceServer``, which verifies and settles
    through x402sim's facilitator over HTTP (``tests/interop/python/sdk_mcp_server.py``);
(b) the SDK's paying MCP session (``x402MCPSession`` with the exact EVM client scheme) pays x402sim's
    tool server, settled by the testbed's facilitator (``tests/interop/python/sdk_mcp_client.py``).

Each payment is judged on chain: payer -price, payee +price, ``authorizationState`` true for its
nonce, exactly one ``Transfer``. The MCP sessions are the SDK's in-memory transport: what is
exchanged is real MCP, the same messages stdio or streamable HTTP would carry (both carriers are run
through real processes in ``tests/transports/test_mcp_cli.py``).

The TypeScript ``@x402/mcp`` is not tested: it is not on this machine's npm registry (404).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

try:
    import x402  # noqa: F401
except ImportError as exc:  # a pinned dev dependency: this happens only outside `make test`
    _why = f"the official x402 Python SDK is not importable ({exc})"
    print(f"skipping {__name__}: {_why}")
    pytest.skip(_why, allow_module_level=True)

from tests.http.conftest import PRICE, World
from tests.interop.python.sdk_mcp_client import SdkMcpPayer
from tests.interop.python.sdk_mcp_server import sdk_mcp_server
from tests.interop.test_python_sdk import assert_paid_on_chain, before, nonce_of
from x402sim import Testbed
from x402sim.actors.client import SpendPolicy
from x402sim.transports.mcp import McpPayingClient
from x402sim.transports.mcp_tools import PaidTool
from x402sim.transports.mcp_wire import open_session


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.stop()


# -- (a) our MCP client pays the SDK's tool server --------------------------------------------------


def test_our_mcp_client_pays_the_sdk_tool_server_through_our_facilitator(world):
    chain = world.chain
    tools = sdk_mcp_server(
        world.facilitator_url,
        network=chain.network,
        asset=chain.usdc,
        asset_name=chain.token_name,
        asset_version=chain.token_version,
        pay_to=world.payee,
        amount=PRICE,
    )
    was = before(chain, world.payer, world.payee)
    client = McpPayingClient(world.payer_key, networks=(chain.network,), timeout=10)

    result = asyncio.run(client.call_tool(tools, "weather", {"city": "Oslo"}))

    assert result.first_status == 402
    assert result.challenge.resource.url == "mcp://tool/weather"  # the SDK names its tools so
    (offer,) = result.challenge.accepts
    assert (offer.network, offer.amount, offer.asset) == (chain.network, PRICE, chain.usdc)
    assert result.status == 200 and result.paid, result.body
    text = result.json()["content"][0]["text"]
    assert json.loads(text) == {"city": "Oslo", "sky": "clear", "served_by": "x402 SDK"}
    assert result.settlement.payer.lower() == world.payer.lower()
    assert_paid_on_chain(
        chain,
        was,
        payer=world.payer,
        payee=world.payee,
        nonce=nonce_of(result.payment),
        tx_hash=result.settlement.transaction,
    )
    (record,) = world.facilitator.settlements  # settled by our facilitator, asked by the SDK's server
    assert "0x" + record.tx_hash.hex() == result.settlement.transaction.lower()
    assert [p.outcome for p in client.payments] == ["settled"]


def test_our_mcp_client_refuses_an_sdk_tool_above_its_cap(world):
    chain = world.chain
    tools = sdk_mcp_server(
        world.facilitator_url,
        network=chain.network,
        asset=chain.usdc,
        asset_name=chain.token_name,
        asset_version=chain.token_version,
        pay_to=world.payee,
        amount=PRICE,
    )
    was = before(chain, world.payer, world.payee)
    client = McpPayingClient(
        world.payer_key, networks=(chain.network,), policy=SpendPolicy(max_price=PRICE - 1)
    )

    result = asyncio.run(client.call_tool(tools, "weather", {"city": "Oslo"}))

    assert result.status == 402 and result.refused and result.payment is None
    assert chain.balance_of(world.payer) == was.payer and chain.transfers(since_block=was.block + 1) == []


# -- (b) the SDK's MCP client pays our tool server --------------------------------------------------


def test_the_sdk_mcp_client_pays_our_tool_server():
    tb = Testbed(seed=23, start_time=int(time.time()))  # the SDK signs with the wall clock
    server = tb.mcp_server(
        [PaidTool("weather", lambda a: {"city": a["city"], "sky": "fog"}, PRICE, description="weather")]
    )
    payer = tb.account(usdc=10 * PRICE)
    was = before(tb.chain, payer.address, server.pay_to)

    async def scenario():
        async with open_session(server.server) as session:
            sdk = SdkMcpPayer(
                session, payer.key, network=tb.chain.network, asset=tb.chain.usdc, max_amount=PRICE
            )
            return sdk, await sdk.call_tool("weather", {"city": "Lima"})

    sdk, result = asyncio.run(scenario())

    assert result.payment_made and not result.is_error, result.content
    assert json.loads(result.content[0].text) == {"city": "Lima", "sky": "fog"}
    settlement = result.payment_response
    assert settlement.success and settlement.network == tb.chain.network
    assert settlement.payer.lower() == payer.address.lower()
    (payment,) = sdk.created  # the SDK paid once, for our 402's one offer
    assert payment.accepted.amount == str(PRICE) and payment.resource.url == "mcp://tool/weather"
    assert_paid_on_chain(
        tb.chain,
        was,
        payer=payer.address,
        payee=server.pay_to,
        nonce=payment.payload["authorization"]["nonce"],
        tx_hash=settlement.transaction,
    )
