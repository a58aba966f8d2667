"""Permit2, upto and gas sponsoring between x402sim and the official x402 TypeScript SDK 2.27, on one chain.

(1) The ``@x402/fetch`` client (``node/client-permit2.mjs``: the exact and upto schemes, given the
    chain's JSON-RPC URL) pays our resource servers, which settle through our facilitators
    (``permit2_rig``): exact/Permit2 with an approved payer, upto below the maximum and at 0, a
    cold-start payer through each gas-sponsoring extension, and our 412.
(2) Our paying client pays an ``@x402/express`` server (``node/server-permit2.mjs``) whose TypeScript
    facilitator (``node/facilitator-permit2.mjs``: exact and upto over viem, both extensions, the
    operator's gas funding) settles on our chain through its JSON-RPC.

Judged on chain (balances, the Permit2 nonce bitmap, ``Transfer`` logs, allowance, the payer's
nonce); where the TS SDK differs from the specification or x402sim, the test asserts what it does.
Services of our side run in this process (one loop); the node processes are started once per module.
Without node or the pinned packages every test here is skipped with the command to run.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.interop.permit2_rig import (
    BOTH,
    EXACT_PRICE,
    UPTO_MAX,
    OurSide,
    build,
    p2nonce,
)
from tests.interop.test_typescript_sdk import (
    CLIENT_TIMEOUT,
    NODE_DIR,
    Process,
    free_port,
    skip_module_without_typescript_sdk,
)
from x402sim.evm import address_of_key
from x402sim.evm.chain import ETHER
from x402sim.evm.permit2 import UINT256_MAX, nonce_used
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http import PayingClient
from x402sim.protocol import decode_json_header

skip_module_without_typescript_sdk(__name__)


@dataclass
class Rig(OurSide):
    ts_server: str = ""
    ts_facilitator_address: str = ""


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> Iterator[Rig]:
    side, services = build(seed=41)
    chain = side.chain
    ts_key, funder_key = chain.new_key(), chain.new_key()
    chain.fund_many([(address_of_key(ts_key), 0, 10 * ETHER), (address_of_key(funder_key), 0, 10 * ETHER)])
    services.start()
    logs = tmp_path_factory.mktemp("node-logs")
    started: list[Process] = []

    def node(script: str, ready: str, env: dict[str, str]) -> str:
        port = free_port()
        process = Process(
            script, ["node", script], env={**env, "PORT": str(port)}, cwd=NODE_DIR, log_dir=logs
        )
        started.append(process)
        process.wait_for(lambda line: line.startswith(ready))
        return f"http://127.0.0.1:{port}"

    try:
        facilitator_url = node(
            "facilitator-permit2.mjs",
            "Facilitator listening",
            {
                "EVM_PRIVATE_KEY": "0x" + ts_key.hex(),
                "FUNDER_PRIVATE_KEY": "0x" + funder_key.hex(),
                "EVM_NETWORK": chain.network,
                "EVM_RPC_URL": side.rpc_url,
            },
        )
        server_url = node(
            "server-permit2.mjs",
            "Server listening",
            {
                "FACILITATOR_URL": facilitator_url,
                "EVM_PAYEE_ADDRESS": side.payee,
                "EVM_NETWORK": chain.network,
                "ASSET": chain.usdc,
                "ASSET_NAME": chain.token_name,
                "ASSET_VERSION": chain.token_version,
                "EXACT_PRICE": str(EXACT_PRICE),
                "UPTO_MAX": str(UPTO_MAX),
            },
        )
        yield Rig(**vars(side), ts_server=server_url, ts_facilitator_address=address_of_key(ts_key))
    finally:
        for process in reversed(started):
            process.stop()
        services.stop()


# -- (1) the TS client pays our servers -----------------------------------------------------------


def ts_pay(rig: Rig, key: bytes, url: str) -> dict:
    """The TS client's verdict for GET ``url`` (see ``node/client-permit2.mjs``)."""
    env = {
        "EVM_PRIVATE_KEY": "0x" + key.hex(),
        "RESOURCE_URL": url,
        "EVM_NETWORK": rig.chain.network,
        "EVM_RPC_URL": rig.rpc_url,
        "ASSET": rig.chain.usdc,
        "MAX_AMOUNT_PER_PAYMENT": str(UPTO_MAX),
    }
    run = subprocess.run(
        ["node", "client-permit2.mjs"],
        cwd=NODE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    lines = run.stdout.strip().splitlines()
    assert lines, f"client-permit2.mjs printed nothing (exit {run.returncode}); stderr:\n{run.stderr}"
    verdict = json.loads(lines[-1])
    verdict["stderr"] = run.stderr[-2000:]
    return verdict


def signed_extensions(payment: dict) -> set[str]:
    """The gas-sponsoring extensions the client signed (the TS client echoes every declared one)."""
    extensions = payment.get("extensions") or {}
    return {k for k in BOTH if "from" in (extensions.get(k) or {}).get("info", {})}


def test_ts_client_pays_our_exact_permit2_route(rig):
    key, payer = rig.approved()
    was = rig.facts(payer)
    verdict = ts_pay(rig, key, rig.ours["none"] + "/p2")
    assert verdict["status_code"] == 200, verdict
    payment, settlement = verdict["payment"], verdict["payment_response"]
    assert payment["payload"]["permit2Authorization"]["witness"]["validAfter"] == "0"
    assert signed_extensions(payment) == set()
    rig.assert_moved(was, payer, EXACT_PRICE, settlement["transaction"], p2nonce(payment["payload"]))


@pytest.mark.parametrize("charge", [2000, 0])
def test_ts_client_pays_our_upto_route(rig, charge):
    key, payer = rig.approved()
    was = rig.facts(payer)
    verdict = ts_pay(rig, key, rig.ours["none"] + f"/upto?charge={charge}")
    assert verdict["status_code"] == 200, verdict
    payment, settlement = verdict["payment"], verdict["payment_response"]
    authorization = payment["payload"]["permit2Authorization"]
    assert authorization["witness"]["facilitator"] == rig.our_facilitators["none"].address
    assert authorization["permitted"]["amount"] == str(UPTO_MAX)
    assert settlement["success"] is True and settlement["amount"] == str(charge)
    if charge:
        rig.assert_moved(was, payer, charge, settlement["transaction"], p2nonce(payment["payload"]))
    else:
        assert settlement["transaction"] == ""
        rig.assert_nothing_moved(was, payer)
        assert not nonce_used(rig.chain, payer, p2nonce(payment["payload"]))


@pytest.mark.parametrize("server", ["both", "erc20"])
def test_ts_client_cold_start_is_sponsored_by_our_facilitator(rig, server):
    key, payer = rig.account()
    was = rig.facts(payer)
    verdict = ts_pay(rig, key, rig.ours[server] + "/p2")
    assert verdict["status_code"] == 200, verdict
    payment, settlement = verdict["payment"], verdict["payment_response"]
    expected = {"eip2612GasSponsoring"} if server == "both" else {"erc20ApprovalGasSponsoring"}
    assert signed_extensions(payment) == expected
    rig.assert_moved(was, payer, EXACT_PRICE, settlement["transaction"], p2nonce(payment["payload"]))
    if server == "both":  # the TS SDK too signs the permit for the amount, not MaxUint
        assert payment["extensions"]["eip2612GasSponsoring"]["info"]["amount"] == str(EXACT_PRICE)
        assert rig.allowance(payer) == 0 and rig.chain.pending_nonce(payer) == 0
    else:
        assert rig.allowance(payer) == UINT256_MAX - EXACT_PRICE and rig.chain.pending_nonce(payer) == 1


def test_ts_client_gets_our_412_and_does_not_retry(rig):
    key, payer = rig.account()
    was = rig.facts(payer)
    verdict = ts_pay(rig, key, rig.ours["none"] + "/p2")
    assert verdict["status_code"] == 412 and verdict["payment"] is not None, verdict
    assert verdict["payment_required"]["error"] == "permit2_allowance_required"
    rig.assert_nothing_moved(was, payer)


# -- (2) our client pays the TS server, settled by the TS facilitator on our chain ----------------


def our_pay(rig: Rig, key: bytes, url: str):
    reads = RpcChain(rig.rpc_url)
    try:
        with PayingClient(key, networks=(rig.chain.network,), chain=reads, timeout=30) as client:
            return client.get(url)
    finally:
        reads.close()


def test_we_pay_the_ts_servers_exact_permit2_route(rig):
    key, payer = rig.approved()
    was = rig.facts(payer)
    result = our_pay(rig, key, rig.ts_server + "/p2")
    assert result.status == 200, result.settlement
    rig.assert_moved(was, payer, EXACT_PRICE, result.settlement.transaction, p2nonce(result.payment.payload))
    receipt = rig.chain.receipt(bytes.fromhex(result.settlement.transaction[2:]))
    assert receipt.sender.lower() == rig.ts_facilitator_address.lower()


@pytest.mark.parametrize("charge", [2000, 0])
def test_we_pay_the_ts_servers_upto_route(rig, charge):
    key, payer = rig.approved()
    was = rig.facts(payer)
    result = our_pay(rig, key, rig.ts_server + f"/upto?charge={charge}")
    assert result.status == 200, result.settlement
    (offer,) = result.challenge.accepts
    assert offer.extra["facilitatorAddress"] == rig.ts_facilitator_address
    assert result.settlement.success and result.settlement.amount == str(charge)
    if charge:
        rig.assert_moved(was, payer, charge, result.settlement.transaction, p2nonce(result.payment.payload))
    else:
        assert result.settlement.transaction == ""
        rig.assert_nothing_moved(was, payer)


def test_ts_server_leaves_the_upto_ceiling_to_its_facilitator(rig):
    """x402#3334 in the TS SDK 2.27: its server forwards a charge above the signed maximum to the
    facilitator, which refuses it; the buyer gets 402 and nothing moves."""
    key, payer = rig.approved()
    was = rig.facts(payer)
    result = our_pay(rig, key, rig.ts_server + f"/upto?charge={UPTO_MAX + 1}")
    assert result.status == 402 and not result.settlement.success
    assert result.settlement.error_reason == "invalid_upto_evm_payload_settlement_exceeds_amount"
    rig.assert_nothing_moved(was, payer)


@pytest.mark.parametrize("path", ["/p2-eip2612", "/p2-erc20"])
def test_we_are_sponsored_by_the_ts_facilitator(rig, path):
    key, payer = rig.account()
    was = rig.facts(payer)
    result = our_pay(rig, key, rig.ts_server + path)
    assert result.status == 200, result.settlement
    rig.assert_moved(was, payer, EXACT_PRICE, result.settlement.transaction, p2nonce(result.payment.payload))
    if path == "/p2-eip2612":
        assert "eip2612GasSponsoring" in result.payment.extensions
        assert rig.allowance(payer) == 0 and rig.chain.pending_nonce(payer) == 0
    else:
        assert "erc20ApprovalGasSponsoring" in result.payment.extensions
        assert rig.allowance(payer) == UINT256_MAX - EXACT_PRICE and rig.chain.pending_nonce(payer) == 1


def test_ts_server_answers_412_without_allowance(rig):
    """The TS server answers 412 for permit2_allowance_required, as the spec says (Python: 402)."""
    key, payer = rig.account()
    was = rig.facts(payer)
    result = our_pay(rig, key, rig.ts_server + "/p2")
    assert result.first_status == 402 and result.status == 412
    required = decode_json_header(result.response.header("PAYMENT-REQUIRED"), where="412")
    assert required["error"] == "permit2_allowance_required"
    rig.assert_nothing_moved(was, payer)
