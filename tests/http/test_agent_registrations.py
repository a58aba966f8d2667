"""`x402sim serve` registers its test accounts as ERC-8004 agents and serves their registration files."""

from __future__ import annotations

import httpx

from x402sim.evm import erc8004
from x402sim.evm.rpc_chain import RpcChain
from x402sim.http.serve import ChainSetup, serve_all
from x402sim.trust.identity import parse_registration


def test_each_account_is_a_registered_agent_whose_uri_serves_its_registration_file():
    running = serve_all(ChainSetup(accounts=2), ports=dict.fromkeys(("chain", "facilitator", "server"), 0))
    try:
        info = running.info
        chain = RpcChain(info["rpc_url"])
        for account in info["accounts"]:
            agent_id = account["agent_id"]
            assert erc8004.owner_of(chain, agent_id) == account["address"]
            assert erc8004.agent_wallet(chain, agent_id) == account["address"]
            assert erc8004.agent_uri(chain, agent_id) == account["agent_uri"]
            answer = httpx.get(account["agent_uri"])
            assert answer.status_code == 200
            registration = parse_registration(answer.json())
            (entry,) = registration.registrations
            assert entry.agent_id == agent_id
            assert entry.agent_registry == f"eip155:{info['chain_id']}:{erc8004.IDENTITY_REGISTRY_ADDRESS}"
            assert registration.x402_support is True
        missing = info["accounts"][0]["agent_uri"].replace(f"/{info['accounts'][0]['agent_id']}/", "/999/")
        assert httpx.get(missing).status_code == 404
    finally:
        running.stop()
