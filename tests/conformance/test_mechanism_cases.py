"""Calibration of the Permit2 mechanism cases (``exact-permit2``, ``upto``), and what selects them.

The reference passes them in each role's main reference run (``test_server_cases``,
``test_facilitator_cases``, ``test_client_cases``); here every control of a mechanism case fails every
case it claims to kill, all the controls of a role in one harness (server, facilitator) to keep the
suite quick. Also: ``--mechanism`` and test.config.json choose the cases, and the known front-running
weakness of the exact Permit2 proxy (x402#2501) shown on chain, as a finding rather than a case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conformance.calibration import PERMIT2_MECHANISMS, control_survivors, role_controls
from x402sim.actors.client import Client
from x402sim.actors.server import Route
from x402sim.conformance import catalog, runner
from x402sim.conformance.cli import _mechanisms
from x402sim.conformance.config import load_config
from x402sim.conformance.context import Endpoint
from x402sim.conformance.harness import Harness, HarnessOptions
from x402sim.conformance.kits import harness_apps
from x402sim.conformance.reference import reference_target
from x402sim.evm.permit2 import (
    EXACT_PERMIT2_PROXY_ADDRESS,
    UPTO_PERMIT2_PROXY_ADDRESS,
    PermitTransfer,
    exact_settle_call,
    nonce_used,
    upto_settle_call,
)
from x402sim.protocol import PAYMENT_REQUIRED, PaymentRequired, decode_header
from x402sim.testbed import Testbed
from x402sim.testbed import TestClient as BoundClient

PERMIT2_CASES = {c.id for c in catalog.select(mechanisms=["exact-permit2", "upto"])}


@pytest.mark.parametrize("role", ["facilitator", "server", "client"])
def test_each_mechanism_control_fails_every_case_it_claims_to_kill(role):
    found = role_controls(role, mechanisms=PERMIT2_MECHANISMS)
    assert found, f"no {role} control of a mechanism case"
    harness = Harness(HarnessOptions())
    harness.start(extra_apps=harness_apps(role, harness))
    try:
        survivors = {c.name: control_survivors(c, harness=harness) for c in found}
    finally:
        harness.stop()
    assert not any(survivors.values()), json.dumps(survivors, indent=1)


def test_every_mechanism_case_names_its_mechanism_and_has_a_killer():
    assert {catalog.CATALOG[c].mechanism for c in PERMIT2_CASES} == {"exact-permit2", "upto"}
    killed = {
        case_id for role in catalog.ROLES for c in role_controls(role, transport=None) for case_id in c.kills
    }
    assert not PERMIT2_CASES - killed
    assert {c.role for c in map(catalog.CATALOG.get, PERMIT2_CASES) if c} == set(catalog.ROLES)


def test_mechanisms_select_cases():
    upto = catalog.select(mechanisms=["upto"])
    assert upto and all(c.mechanism == "upto" for c in upto)
    both = {c.id for c in catalog.select(mechanisms=["exact-permit2,upto"])}
    assert both == PERMIT2_CASES
    assert len(catalog.select()) == len(catalog.select(mechanisms=list(catalog.MECHANISMS)))
    with pytest.raises(ValueError, match="unknown mechanism 'permit3'"):
        catalog.select(mechanisms=["permit3"])


def test_the_default_mechanisms_are_what_the_target_speaks():
    reference = reference_target("facilitator")
    assert _mechanisms(None, reference) == catalog.MECHANISMS
    assert _mechanisms(None, object()) == ("exact-eip3009",)  # a command says nothing: EIP-3009
    assert _mechanisms(None, object(), ("upto",)) == ("upto",)  # its config speaks
    assert _mechanisms(["upto,exact-eip3009"], reference) == ("exact-eip3009", "upto")


def test_the_list_names_each_cases_mechanism():
    from typer.testing import CliRunner

    from x402sim.cli import app

    result = CliRunner().invoke(app, ["conformance", "list", "--json", "--mechanism", "upto"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows and {r["mechanism"] for r in rows} == {"upto"}
    assert {r["id"] for r in rows} == {c.id for c in catalog.select(mechanisms=["upto"])}


def _config(tmp_path, document: dict):
    path = tmp_path / "test.config.json"
    path.write_text(json.dumps(document))
    return load_config(path)


def test_a_facilitator_or_client_config_says_what_it_speaks(tmp_path):
    python_like = {"schemes": ["exact", "upto"], "evm": {"transferMethods": ["eip3009", "permit2", "upto"]}}
    assert _config(tmp_path, python_like).mechanisms == ("exact-eip3009", "exact-permit2", "upto")
    with_channels = {"schemes": ["exact", "upto", "batch-settlement"], "evm": python_like["evm"]}
    assert _config(tmp_path, with_channels).mechanisms == catalog.MECHANISMS
    fetch_like = {"evm": {"transferMethods": ["eip3009", "permit2"]}}
    assert _config(tmp_path, fetch_like).mechanisms == ("exact-eip3009", "exact-permit2")
    assert _config(tmp_path, {"schemes": ["upto"]}).mechanisms == ("upto",)
    assert _config(tmp_path, {"name": "silent"}).mechanisms == ()


def test_a_server_config_routes_the_mechanism_cases(tmp_path):
    config = _config(
        tmp_path,
        {
            "endpoints": [
                {"path": "/exact/evm/eip3009", "requiresPayment": True, "transferMethod": "eip3009"},
                {"path": "/exact/evm/permit2", "requiresPayment": True, "transferMethod": "permit2"},
                {"path": "/exact/evm/permit2-cold", "requiresPayment": True, "transferMethod": "permit2"},
                {"path": "/upto/evm/permit2", "requiresPayment": True, "transferMethod": "upto"},
                {"path": "/batch", "requiresPayment": True, "transferMethod": "batch-settlement"},
            ]
        },
    )
    assert config.mechanisms == catalog.MECHANISMS
    assert {m: e.path for m, e in config.mechanism_routes.items()} == {
        "exact-permit2": "/exact/evm/permit2",
        "upto": "/upto/evm/permit2",
        "batch-settlement": "/batch",
    }
    assert [e.path for e in config.unjudged] == ["/exact/evm/permit2-cold"]
    options = runner.RunOptions(
        endpoints=config.endpoints, declared=True, mechanism_routes=config.mechanism_routes
    )
    harness = Harness(HarnessOptions())
    harness.network, harness.rpc_url, harness.facilitator_url = "eip155:31337", "http://x", "http://y"
    for name, value in (("asset", "0x" + "22" * 20), ("asset_name", "USDC"), ("asset_version", "2")):
        setattr(harness, name, value)
    env = runner.target_env("server", harness, options, payee="0x" + "11" * 20)
    assert (env["PERMIT2_PATH"], env["UPTO_PATH"], env["BATCH_PATH"]) == (
        "/exact/evm/permit2",
        "/upto/evm/permit2",
        "/batch",
    )
    derived = runner.RunOptions(endpoints=[Endpoint("/shop")])
    assert derived.mechanism_route("upto") == Endpoint("/shop-upto", transfer_method="upto")
    assert derived.mechanism_route("batch-settlement") == Endpoint(
        "/shop-batch", transfer_method="batch-settlement"
    )
    assert runner.RunOptions(endpoints=[Endpoint("/shop")], declared=True).mechanism_route("upto") is None


# -- x402#2501: the exact proxy settles for whoever calls it ---------------------------------------------


@dataclass
class Leaky(Client):
    """A client whose signed payments are seen by ``overhear`` before they reach the server (a
    mempool, a proxy, a log), as an attacker positioned anywhere on the path sees them."""

    overhear: Any = None

    def sign_payment(self, required, req, offer, now):
        payment = super().sign_payment(required, req, offer, now)
        self.overhear(payment)
        return payment


def _front_run(tb: Testbed, attacker, payment) -> bool:
    """Call the proxy named by ``payment``'s permit with it, from ``attacker``; whether it landed."""
    authorization = payment.payload["permit2Authorization"]
    witness = authorization["witness"]
    permit = PermitTransfer(
        token=authorization["permitted"]["token"],
        amount=int(authorization["permitted"]["amount"]),
        spender=authorization["spender"],
        nonce=int(authorization["nonce"]),
        deadline=int(authorization["deadline"]),
        to=witness["to"],
        valid_after=int(witness["validAfter"]),
        facilitator=witness.get("facilitator"),
    )
    signature = bytes.fromhex(payment.payload["signature"][2:])
    owner = authorization["from"]
    if permit.facilitator is None:
        proxy, data = EXACT_PERMIT2_PROXY_ADDRESS, exact_settle_call(permit, owner, signature)
    else:
        proxy, data = UPTO_PERMIT2_PROXY_ADDRESS, upto_settle_call(permit, permit.amount, owner, signature)
    tx_hash = tb.chain.transact(attacker.key, proxy, data, gas=300_000)
    tb.mine()
    return bool(tb.chain.receipt(tx_hash).success)


def _leaky_client(tb: Testbed, payer, overhear) -> BoundClient:
    role = Leaky(payer.key, networks=(tb.chain.network,), chain=tb.chain, overhear=overhear)
    return BoundClient(tb, role)


@pytest.mark.parametrize("scheme", ["exact", "upto"])
def test_a_front_run_of_the_proxy_on_chain(scheme):
    """x402#2501 (acknowledged by the maintainers: the March 2026 audit): anyone who sees a signed
    exact Permit2 payment can call the proxy's ``settle`` first. The money still reaches payTo (the
    witness binds it), but the Permit2 nonce is spent, the facilitator then refuses the payment, and
    the server refuses the request: the payer has paid and is not served. The upto proxy names its
    facilitator in the witness and checks ``msg.sender``: the same front-run reverts there."""
    tb = Testbed()
    route = Route("GET /r", 1_000, scheme="upto" if scheme == "upto" else None, transfer_method="permit2")
    shop = tb.server({"GET /r": route})
    shop.role.supported = tb.facilitator.supported()  # upto offers name the facilitator's address
    payer, attacker = tb.account(usdc=10_000, eth=10**17), tb.account(eth=10**17)
    tb.approve_permit2(payer)
    front_runs: list[bool] = []
    client = _leaky_client(tb, payer, lambda payment: front_runs.append(_front_run(tb, attacker, payment)))
    before = (tb.chain.balance_of(payer.address), tb.chain.balance_of(shop.pay_to))

    result = client.get(shop, "/r")

    paid = before[0] - tb.chain.balance_of(payer.address)
    received = tb.chain.balance_of(shop.pay_to) - before[1]
    nonce = int(result.payment.payload["permit2Authorization"]["nonce"])
    if scheme == "exact":
        assert front_runs == [True]  # the attacker's settle landed
        assert paid == received == 1_000  # the payee got it, from the attacker's transaction
        assert tb.chain.balance_of(attacker.address) == 0  # the attacker gains nothing but the harm
        assert result.status == 402  # the server refuses: its facilitator finds the nonce spent
        required = decode_header(result.response.header(PAYMENT_REQUIRED), PaymentRequired)
        assert required.error == "invalid_exact_evm_nonce_already_used"
        assert nonce_used(tb.chain, payer.address, nonce)
    else:
        assert front_runs == [False]  # UnauthorizedFacilitator: only the named facilitator settles
        assert result.status == 200 and result.settlement.success
        assert paid == received == 1_000  # settled once, by the facilitator
