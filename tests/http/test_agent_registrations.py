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


def test_agents_register_and_read_over_json_rpc():
    """``RpcChain`` writes like ``LocalChain``: an agent registered and given a wallet over JSON-RPC
    is read back through ``AgentDirectory``, and feedback from another account reaches getSummary."""
    from x402sim.trust.identity import AgentDirectory

    running = serve_all(ChainSetup(accounts=3), ports=dict.fromkeys(("chain", "facilitator", "server"), 0))
    try:
        info = running.info
        chain = RpcChain(info["rpc_url"])
        owner, wallet, client = (bytes.fromhex(a["private_key"][2:]) for a in info["accounts"])
        before = chain.block_number
        agent_id = erc8004.register(chain, owner, "https://agent.invalid/rpc")
        erc8004.set_agent_wallet(chain, owner, agent_id, wallet)
        erc8004.give_feedback(chain, client, agent_id, 80, 0, "x402-resource-delivered")
        assert chain.block_number == before + 3  # the node mined each transaction as it arrived
        directory = AgentDirectory(chain)
        assert directory.wallet(agent_id) == info["accounts"][1]["address"]
        assert directory.owner(agent_id) == info["accounts"][0]["address"]
        assert directory.reputation(agent_id).count == 1 and directory.reputation(agent_id).mean == 80
        chain.close()
    finally:
        running.stop()
