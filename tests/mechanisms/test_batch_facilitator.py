"""The facilitator's part of ``batch-settlement``: every verify rule refusing with the SDK's reason
(and a control that passes), and deposits, claims, sweeps and refunds judged on chain: balances, the
contract's ``channels`` and ``receivers``, its events, and the answers' ``channelState`` against a
fresh read of the channel.

Payloads are signed here by small helpers over ``evm.channels`` and built with ``batch_wire``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.evm.batch_world import World, compiled
from tests.evm.batch_world import events as batch_events
from x402sim.actors.facilitator import Facilitator
from x402sim.evm import address_of_key, sign_digest
from x402sim.evm import channels as ch
from x402sim.mechanisms import BATCH_EIP3009, BATCH_PERMIT2, Judging, default_mechanisms
from x402sim.mechanisms.batch_settlement import SETTLE_CHECKS, VERIFY_CHECKS
from x402sim.mechanisms.batch_wire import (
    ClaimPayload,
    DepositPayload,
    Erc3009Deposit,
    Permit2Deposit,
    RefundPayload,
    SettlePayload,
    Voucher,
    VoucherPayload,
)
from x402sim.protocol import PaymentPayload, PaymentRequirements, Reason, SettleResponse

PRICE = 1_000
DEPOSIT = 100_000
ZERO = "0x" + "00" * 20
DELAY = ch.MIN_WITHDRAW_DELAY


def _r(name: str) -> str:
    return "invalid_batch_settlement_evm_" + name


# -- the lab: the contracts' world, a facilitator, and signing helpers ------------------------------


@dataclass
class Lab:
    w: World
    fac: Facilitator
    nonces: list[int] = field(default_factory=lambda: [0])

    @property
    def chain(self):
        return self.w.chain

    @property
    def now(self) -> int:
        return self.chain.now

    def fresh(self) -> int:
        self.nonces[0] += 1
        return 10**9 + self.nonces[0]

    def requirements(self, *, method: str | None = None, authorizer: str | None = None, **extra: Any):
        base: dict[str, Any] = {
            "receiverAuthorizer": authorizer or self.fac.address,
            "withdrawDelay": DELAY,
            "name": self.chain.domain.name,
            "version": self.chain.domain.version,
        }
        if method:
            base["assetTransferMethod"] = method
        base.update(extra)
        return PaymentRequirements(
            scheme="batch-settlement",
            network=self.chain.network,
            amount=PRICE,
            asset=self.w.token,
            pay_to=self.w.addr("receiver"),
            max_timeout_seconds=300,
            extra={k: v for k, v in base.items() if v is not None},
        )

    def config(
        self, *, authorizer: str | None = None, payer_auth: bool = True, payer: str = "payer", delay=DELAY
    ):
        self.w.salt += 1
        return ch.ChannelConfig(
            payer=self.w.addr(payer),
            payer_authorizer=self.w.addr("payer_auth") if payer_auth else ZERO,
            receiver=self.w.addr("receiver"),
            receiver_authorizer=authorizer or self.fac.address,
            token=self.w.token,
            withdraw_delay=delay,
            salt=self.w.salt.to_bytes(32, "big"),
        )

    def cid(self, config: ch.ChannelConfig) -> bytes:
        return ch.channel_id(config, self.chain.chain_id)

    def voucher(self, config: ch.ChannelConfig, ceiling: int, key: str | None = None) -> Voucher:
        signer = key or ("payer_auth" if config.payer_authorizer != ZERO else "payer")
        signature = ch.sign_voucher(self.w.keys[signer], self.chain.chain_id, self.cid(config), ceiling)
        return Voucher(self.cid(config), ceiling, signature)

    def erc3009(
        self,
        config: ch.ChannelConfig,
        amount: int = DEPOSIT,
        ceiling: int = PRICE,
        *,
        valid_after: int | None = None,
        valid_before: int | None = None,
        salt: int | None = None,
        key: str = "payer",
        signed_amount: int | None = None,
    ) -> DepositPayload:
        va = self.now - 5 if valid_after is None else valid_after
        vb = self.now + 600 if valid_before is None else valid_before
        salt = self.fresh() if salt is None else salt
        nonce = ch.erc3009_deposit_nonce(self.cid(config), salt)
        signed = amount if signed_amount is None else signed_amount
        digest = ch.receive_authorization_digest(self.chain.domain, config.payer, signed, va, vb, nonce)
        auth = Erc3009Deposit(va, vb, salt, sign_digest(self.w.keys[key], digest))
        return DepositPayload(config, self.voucher(config, ceiling), amount, auth)

    def permit2(
        self,
        config: ch.ChannelConfig,
        deposit: int = DEPOSIT,
        ceiling: int = PRICE,
        *,
        key: str = "payer",
        **change,
    ) -> DepositPayload:
        """A Permit2 deposit of ``deposit``; ``change`` overrides fields of the permit as signed."""
        fields = {
            "payer": config.payer,
            "token": config.token,
            "amount": deposit,
            "spender": ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
            "nonce": self.fresh(),
            "deadline": self.now + 600,
            "channel_id": self.cid(config),
            "signature": b"",
        }
        fields.update(change)
        digest = ch.deposit_witness_digest(
            self.chain.chain_id,
            fields["token"],
            fields["amount"],
            fields["nonce"],
            fields["deadline"],
            fields["channel_id"],
        )
        fields["signature"] = sign_digest(self.w.keys[key], digest)
        return DepositPayload(config, self.voucher(config, ceiling), deposit, Permit2Deposit(**fields))

    def payment(self, payload: Any, requirements: PaymentRequirements, **accepted: Any) -> PaymentPayload:
        wire = payload if isinstance(payload, dict) else payload.to_wire()
        return PaymentPayload(x402_version=2, accepted=requirements.model_copy(update=accepted), payload=wire)

    def verify(self, payload: Any, requirements: PaymentRequirements | None = None, **accepted: Any):
        req = requirements or self.requirements()
        return self.fac.verify(self.payment(payload, req, **accepted), req, self.now)

    def settle(self, payload: Any, requirements: PaymentRequirements | None = None) -> SettleResponse:
        req = requirements or self.requirements()
        return self.fac.settle_now(self.payment(payload, req), req, self.now)

    def opened(
        self, config: ch.ChannelConfig, amount: int = DEPOSIT, via: str = "eip3009"
    ) -> ch.ChannelState:
        """A channel with ``amount`` deposited (through the contract directly, not the facilitator)."""
        self.w.deposit(config, amount, via=via, salt=self.fresh())
        return self.state(config)

    def claimed(self, config: ch.ChannelConfig, total: int) -> None:
        """Claim ``total`` on ``config``'s channel as its receiver (directly, not the facilitator)."""
        row = self.w.voucher(config, total)
        assert self.w.send("receiver", ch.claim_call([row])).success

    def state(self, config: ch.ChannelConfig) -> ch.ChannelState:
        return ch.read_channel(self.chain, self.cid(config))

    def claim_row(self, config: ch.ChannelConfig, ceiling: int, total: int | None = None) -> ch.VoucherClaim:
        v = self.voucher(config, ceiling)
        return ch.VoucherClaim(config, ceiling, v.signature, ceiling if total is None else total)

    def refund(
        self, config: ch.ChannelConfig, charged: int, amount: int | None, *, claims=(), nonce=None, **signed
    ) -> RefundPayload:
        """A refund completed as a server completes it (nonce from the chain unless given)."""
        nonce = self.state(config).refund_nonce if nonce is None else nonce
        return RefundPayload(config, self.voucher(config, charged), amount, nonce, tuple(claims), **signed)


def _lab() -> Lab:
    w = World.build()
    key = w.chain.new_key()
    w.chain.fund(address_of_key(key), eth=10**19)
    return Lab(w, Facilitator(w.chain, key))


@pytest.fixture
def lab() -> Lab:
    return _lab()


def _snapshot(lab: Lab, config: ch.ChannelConfig) -> dict[str, Any]:
    return lab.state(config).to_wire()


# -- the table ------------------------------------------------------------------------------------


def test_the_verify_table_is_in_the_sdks_order():
    reasons = [reason.value for _, reason, _ in VERIFY_CHECKS]
    assert reasons == [
        _r("scheme"),
        _r("network_mismatch"),
        _r("network_mismatch"),
        # utils.validate_channel_config
        _r("channel_id_mismatch"),
        _r("receiver_mismatch"),
        _r("receiver_authorizer_mismatch"),
        _r("token_mismatch"),
        _r("withdraw_delay_mismatch"),
        _r("withdraw_delay_out_of_range"),
        # deposit.verify_deposit, deposit_eip3009, deposit_permit2
        _r("payload_type"),
        _r("erc3009_authorization_required"),
        _r("missing_eip712_domain"),
        _r("payload_authorization_valid_before"),
        _r("payload_authorization_valid_after"),
        _r("receive_authorization_signature"),
        _r("permit2_invalid_signature"),
        _r("permit2_invalid_spender"),
        _r("token_mismatch"),
        _r("permit2_amount_mismatch"),
        _r("channel_id_mismatch"),
        _r("permit2_deadline_expired"),
        _r("permit2_invalid_signature"),
        _r("permit2_allowance_required"),
        # _verify_shared_deposit_state, voucher.verify_voucher
        _r("voucher_signature"),
        _r("channel_not_found"),
        _r("insufficient_balance"),
        _r("cumulative_exceeds_balance"),
        _r("cumulative_below_claimed"),
    ]
    assert all(reason.value.startswith("invalid_batch_settlement_evm_") for _, reason, _ in SETTLE_CHECKS)


def test_supported_lists_batch_settlement_with_the_facilitator_as_receiver_authorizer(lab):
    kinds = [k for k in lab.fac.supported().kinds if k.scheme == "batch-settlement"]
    assert [(k.x402_version, k.network, k.extra) for k in kinds] == [
        (2, lab.chain.network, {"receiverAuthorizer": lab.fac.address})
    ]
    registry = default_mechanisms()
    assert registry.find("batch-settlement", lab.chain.network) is BATCH_EIP3009
    assert (
        registry.find("batch-settlement", lab.chain.network, {"assetTransferMethod": "permit2"})
        is BATCH_PERMIT2
    )


# -- verify: every rule refuses with its reason; the controls pass ------------------------------


def test_a_voucher_on_an_open_channel_passes_with_the_channel_snapshot(lab):
    config = lab.config()
    lab.opened(config)
    answer = lab.verify(VoucherPayload(config, lab.voucher(config, PRICE)))
    assert answer.is_valid and answer.payer == config.payer
    assert answer.extra == _snapshot(lab, config)
    assert answer.extra["balance"] == str(DEPOSIT) and answer.extra["totalClaimed"] == "0"


def _head_and_config_cases(lab: Lab):
    """(payload, requirements, accepted changes, reason) for the rows before the deposit's."""
    config = lab.config()
    lab.opened(config)
    good = VoucherPayload(config, lab.voucher(config, PRICE))
    req = lab.requirements()
    other = lab.w.addr("stranger")
    wrong_id = dataclasses.replace(good, voucher=dataclasses.replace(good.voucher, channel_id=b"\x01" * 32))
    short = lab.config(delay=DELAY - 1)
    long = lab.config(delay=ch.MAX_WITHDRAW_DELAY + 1)
    return [
        (good, req, {"scheme": "exact"}, _r("scheme")),
        (good, req, {"network": "eip155:1"}, _r("network_mismatch")),
        (good, req.model_copy(update={"network": "eip155:1"}), {}, _r("network_mismatch")),
        (wrong_id, req, {}, _r("channel_id_mismatch")),
        (good, req.model_copy(update={"pay_to": other}), {}, _r("receiver_mismatch")),
        (good, lab.requirements(authorizer=other), {}, _r("receiver_authorizer_mismatch")),
        (good, lab.requirements(authorizer=ZERO), {}, _r("receiver_authorizer_mismatch")),
        (good, lab.requirements(receiverAuthorizer=None), {}, _r("receiver_authorizer_mismatch")),
        (good, req.model_copy(update={"asset": other}), {}, _r("token_mismatch")),
        (good, lab.requirements(withdrawDelay=DELAY + 1), {}, _r("withdraw_delay_mismatch")),
        (
            VoucherPayload(short, lab.voucher(short, PRICE)),
            lab.requirements(withdrawDelay=DELAY - 1),
            {},
            _r("withdraw_delay_out_of_range"),
        ),
        (
            VoucherPayload(long, lab.voucher(long, PRICE)),
            lab.requirements(withdrawDelay=None),
            {},
            _r("withdraw_delay_out_of_range"),
        ),
        (good, lab.requirements(withdrawDelay=str(DELAY)), {}, None),  # the control: a string delay reads
    ]


def test_each_head_and_config_row_refuses_with_its_reason(lab):
    for payload, req, accepted, reason in _head_and_config_cases(lab):
        answer = lab.verify(payload, req, **accepted)
        assert answer.invalid_reason == reason, (accepted, req.extra, answer.invalid_message)
        assert answer.is_valid == (reason is None)


def test_each_deposit_row_refuses_with_its_reason_and_the_controls_pass(lab):
    config = lab.config()
    now = lab.now
    cid = lab.cid(config)
    p2 = lab.requirements(method="permit2")
    cases = [
        (lab.erc3009(config), lab.requirements(), None),
        (lab.permit2(config), p2, None),
        (lab.permit2(config), lab.requirements(), None),  # no method named: the payload's kind is used
        (lab.erc3009(config), p2, _r("payload_type")),
        (lab.permit2(config), lab.requirements(method="eip3009"), _r("erc3009_authorization_required")),
        (lab.erc3009(config), lab.requirements(name=None), _r("missing_eip712_domain")),
        (
            lab.erc3009(config, valid_before=now + 3),
            lab.requirements(),
            _r("payload_authorization_valid_before"),
        ),
        (
            lab.erc3009(config, valid_after=now + 60),
            lab.requirements(),
            _r("payload_authorization_valid_after"),
        ),
        (lab.erc3009(config, key="stranger"), lab.requirements(), _r("receive_authorization_signature")),
        (
            lab.erc3009(config, signed_amount=DEPOSIT - 1),
            lab.requirements(),
            _r("receive_authorization_signature"),
        ),
        (lab.permit2(config, payer=lab.w.addr("stranger")), p2, _r("permit2_invalid_signature")),
        (
            lab.permit2(config, spender=ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS),
            p2,
            _r("permit2_invalid_spender"),
        ),
        (lab.permit2(config, token=lab.w.addr("stranger")), p2, _r("token_mismatch")),
        (lab.permit2(config, amount=DEPOSIT + 1), p2, _r("permit2_amount_mismatch")),
        (lab.permit2(config, channel_id=b"\x02" * 32), p2, _r("channel_id_mismatch")),
        (lab.permit2(config, deadline=now + 3), p2, _r("permit2_deadline_expired")),
        (lab.permit2(config, key="stranger"), p2, _r("permit2_invalid_signature")),
        (lab.erc3009(config, amount=10**12), lab.requirements(), _r("insufficient_balance")),
        (lab.erc3009(config, ceiling=DEPOSIT + 1), lab.requirements(), _r("cumulative_exceeds_balance")),
        (lab.erc3009(config, ceiling=0), lab.requirements(), _r("cumulative_below_claimed")),
    ]
    assert cid == lab.cid(config)
    for payload, req, reason in cases:
        answer = lab.verify(payload, req)
        assert answer.invalid_reason == reason, (reason, answer.invalid_message)
        if reason is None:  # a deposit's snapshot is the channel before it
            assert answer.extra == _snapshot(lab, config) and answer.extra["balance"] == "0"


def test_a_permit2_deposit_without_the_payers_allowance_is_refused(lab):
    lab.chain.fund(lab.w.addr("stranger"), usdc=DEPOSIT)  # holds the funds, never approved Permit2
    config = lab.config(payer="stranger", payer_auth=False)
    payload = lab.permit2(config, key="stranger")
    answer = lab.verify(
        dataclasses.replace(payload, voucher=lab.voucher(config, PRICE, key="stranger")),
        lab.requirements(method="permit2"),
    )
    assert answer.invalid_reason == _r("permit2_allowance_required")


def test_voucher_signatures_are_checked_as_signature_checker_will(lab):
    with_auth, without = lab.config(), lab.config(payer_auth=False)
    for config in (with_auth, without):
        lab.opened(config)
    ok = lab.verify(VoucherPayload(with_auth, lab.voucher(with_auth, PRICE)))
    assert ok.is_valid
    # a channel that names a payer authorizer takes its ECDSA signature only, not the payer's
    by_payer = lab.verify(VoucherPayload(with_auth, lab.voucher(with_auth, PRICE, key="payer")))
    assert by_payer.invalid_reason == _r("voucher_signature")
    # without one, the payer (an EOA here) signs
    assert lab.verify(VoucherPayload(without, lab.voucher(without, PRICE))).is_valid
    wrong = lab.verify(VoucherPayload(without, lab.voucher(without, PRICE, key="payer_auth")))
    assert wrong.invalid_reason == _r("voucher_signature")


def test_a_contract_wallet_payer_signs_vouchers_by_eip1271(lab):
    assert compiled  # the wallet is compiled once per session
    wallet = lab.w.add_wallet("wallet", "payer_auth")  # vouches for payer_auth's signatures
    config = lab.config(payer="wallet", payer_auth=False)
    data = lab.w.permit2_data(config, 50_000, nonce=lab.fresh(), key="payer_auth")
    deposit = ch.deposit_call(config, 50_000, ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, data)
    assert lab.w.send("relayer", deposit).success
    good = Voucher(
        lab.cid(config),
        PRICE,
        ch.sign_voucher(lab.w.keys["payer_auth"], lab.chain.chain_id, lab.cid(config), PRICE),
    )
    assert lab.verify(VoucherPayload(config, good)).is_valid
    bad = Voucher(
        lab.cid(config),
        PRICE,
        ch.sign_voucher(lab.w.keys["stranger"], lab.chain.chain_id, lab.cid(config), PRICE),
    )
    assert lab.verify(VoucherPayload(config, bad)).invalid_reason == _r("voucher_signature")
    assert lab.chain.code(wallet)


def test_channel_existence_ceiling_and_claimed_rows(lab):
    config = lab.config()
    never = VoucherPayload(config, lab.voucher(config, PRICE))
    assert lab.verify(never).invalid_reason == _r("channel_not_found")
    lab.opened(config)
    lab.claimed(config, 3 * PRICE)
    cases = [
        (VoucherPayload(config, lab.voucher(config, DEPOSIT + 1)), _r("cumulative_exceeds_balance")),
        (VoucherPayload(config, lab.voucher(config, 3 * PRICE)), _r("cumulative_below_claimed")),
        (VoucherPayload(config, lab.voucher(config, 4 * PRICE)), None),
        (RefundPayload(config, lab.voucher(config, 3 * PRICE)), None),  # a refund may equal totalClaimed
        (RefundPayload(config, lab.voucher(config, 3 * PRICE - 1)), _r("cumulative_below_claimed")),
    ]
    for payload, reason in cases:
        answer = lab.verify(payload)
        assert answer.invalid_reason == reason
        if reason is None:
            assert answer.extra == _snapshot(lab, config) and answer.extra["totalClaimed"] == str(3 * PRICE)


def test_payload_types_and_shapes(lab):
    config = lab.config()
    lab.opened(config)
    voucher = VoucherPayload(config, lab.voucher(config, PRICE))
    settle = SettlePayload(lab.w.addr("receiver"), lab.w.token)
    assert lab.verify(settle).invalid_reason == _r("payload_type")  # /verify takes client payloads
    assert lab.verify({"type": "subscribe"}).invalid_reason == _r("payload_type")
    assert lab.verify({**voucher.to_wire(), "voucher": {"channelId": "0x12"}}).invalid_reason == _r(
        "voucher_payload"
    )
    assert lab.verify({"type": "deposit", "channelConfig": config.to_wire()}).invalid_reason == _r(
        "deposit_payload"
    )
    assert lab.settle(voucher).error_reason == _r("payload_type")  # /settle takes no voucher
    client_refund = RefundPayload(config, lab.voucher(config, 0))
    assert lab.settle(client_refund).error_reason == _r("payload_type")  # ... nor an uncompleted refund


# -- verify changes nothing (x402#2881) ----------------------------------------------------------


def test_a_verify_changes_nothing_on_chain_or_in_the_facilitator(lab):
    config = lab.config()
    lab.opened(config)
    deposit = lab.erc3009(config, ceiling=PRICE)
    bad = lab.erc3009(config, key="stranger")
    before = (
        lab.chain.block_number,
        lab.chain.pending_nonce(lab.fac.address),
        lab.fac.claimed,
        len(lab.fac.settlements),
    )
    balances = (lab.w.balance("payer"), lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS), lab.state(config))
    for _ in range(2):
        assert lab.verify(deposit).is_valid
        assert not lab.verify(bad).is_valid
    lab.chain.mine()
    after = (
        lab.chain.block_number - 1,
        lab.chain.pending_nonce(lab.fac.address),
        lab.fac.claimed,
        len(lab.fac.settlements),
    )
    assert after == before
    assert (
        lab.w.balance("payer"),
        lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS),
        lab.state(config),
    ) == balances
    assert lab.settle(deposit).success  # the verified deposit is still new to the facilitator


# -- settle: deposits ----------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["eip3009", "permit2"])
def test_a_deposit_lands_through_each_collector(lab, via):
    config = lab.config()
    payload = lab.erc3009(config) if via == "eip3009" else lab.permit2(config)
    req = lab.requirements(method=via)
    payer_before = lab.w.balance("payer")
    held_before = lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS)
    answer = lab.settle(payload, req)
    assert answer.success, answer.error_message
    assert answer.amount == str(DEPOSIT) and answer.payer == config.payer
    assert lab.w.balance("payer") == payer_before - DEPOSIT
    assert lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS) == held_before + DEPOSIT
    state = lab.state(config)
    assert (state.balance, state.total_claimed) == (DEPOSIT, 0)
    assert answer.extra == {"channelState": state.to_wire()}
    receipt = lab.chain.receipt(bytes.fromhex(answer.transaction[2:]))
    deposited = batch_events(receipt, "Deposited")
    assert [(topics[0], data[:32]) for topics, data in deposited] == [
        (lab.cid(config), DEPOSIT.to_bytes(32, "big"))
    ]
    # a top-up counts on the balance the channel has
    top_up = (
        lab.erc3009(config, 20_000, ceiling=DEPOSIT + 20_000)
        if via == "eip3009"
        else lab.permit2(config, 20_000, DEPOSIT + 20_000)
    )
    assert lab.settle(top_up, req).success
    assert lab.state(config).balance == DEPOSIT + 20_000


@pytest.mark.parametrize("via", ["eip3009", "permit2"])
def test_a_deposit_authorization_settled_twice_is_refused_and_counted_once(lab, via):
    """x402#2883: the second settle of one deposit authorization never reaches the chain."""
    config = lab.config()
    payload = lab.erc3009(config) if via == "eip3009" else lab.permit2(config)
    req = lab.requirements(method=via)
    assert lab.settle(payload, req).success
    sent = lab.chain.pending_nonce(lab.fac.address)
    again = lab.settle(payload, req)
    assert not again.success and again.error_reason == Reason.duplicate_settlement
    assert lab.chain.pending_nonce(lab.fac.address) == sent  # nothing was sent
    assert lab.state(config).balance == DEPOSIT
    assert lab.w.balance("payer") == 10_000_000 - DEPOSIT
    # a facilitator that never saw it is refused by the chain's nonce, before sending anything
    other = Facilitator(lab.chain, lab.chain.new_key())
    lab.chain.fund(other.address, eth=10**18)
    third = other.settle_now(lab.payment(payload, req), req, lab.now)
    assert third.error_reason == _r("deposit_simulation_failed")
    assert lab.chain.pending_nonce(other.address) == 0 and lab.state(config).balance == DEPOSIT


# -- settle: claims, sweeps, refunds ---------------------------------------------------------------


def test_a_claim_signed_here_records_the_vouchers_and_moves_no_tokens(lab):
    a, b = lab.config(), lab.config()
    lab.opened(a)
    lab.opened(b)
    held = lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS)
    claim = ClaimPayload((lab.claim_row(a, 5 * PRICE), lab.claim_row(b, 2 * PRICE)))
    answer = lab.settle(claim)
    assert answer.success and answer.amount == "" and answer.payer is None
    assert (lab.state(a).total_claimed, lab.state(b).total_claimed) == (5 * PRICE, 2 * PRICE)
    assert lab.w.receiver_totals() == (7 * PRICE, 0)
    assert lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS) == held
    assert answer.extra == {"channelStates": [_snapshot(lab, a), _snapshot(lab, b)]}
    receipt = lab.chain.receipt(bytes.fromhex(answer.transaction[2:]))
    assert [topics[0] for topics, _ in batch_events(receipt, "Claimed")] == [lab.cid(a), lab.cid(b)]
    # the same claim again raises nothing: refused before any transaction
    sent = lab.chain.pending_nonce(lab.fac.address)
    again = lab.settle(claim)
    assert again.error_reason == _r("claim_simulation_failed")
    assert lab.chain.pending_nonce(lab.fac.address) == sent


def test_a_claim_the_server_signed_is_relayed_and_one_it_did_not_is_refused(lab):
    server = lab.w.addr("receiver_auth")
    config = lab.config(authorizer=server)
    lab.opened(config)
    rows = (lab.claim_row(config, 4 * PRICE),)
    unsigned = lab.settle(ClaimPayload(rows), lab.requirements(authorizer=server))
    assert unsigned.error_reason == _r("authorizer_address_mismatch")
    signature = ch.sign_claim_batch(lab.w.keys["receiver_auth"], lab.chain.chain_id, rows)
    answer = lab.settle(ClaimPayload(rows, signature), lab.requirements(authorizer=server))
    assert answer.success and answer.extra == {
        "channelState": _snapshot(lab, config),
        "channelStates": [_snapshot(lab, config)],
    }
    assert lab.state(config).total_claimed == 4 * PRICE
    forged = ch.sign_claim_batch(
        lab.w.keys["stranger"], lab.chain.chain_id, (lab.claim_row(config, 6 * PRICE),)
    )
    refused = lab.settle(
        ClaimPayload((lab.claim_row(config, 6 * PRICE),), forged), lab.requirements(authorizer=server)
    )
    assert refused.error_reason == _r("claim_simulation_failed")
    assert lab.state(config).total_claimed == 4 * PRICE


def test_settle_sweeps_claimed_funds_to_the_receiver(lab):
    config = lab.config()
    lab.opened(config)
    sweep = SettlePayload(lab.w.addr("receiver"), lab.w.token)
    nothing = lab.settle(sweep)
    assert nothing.error_reason == _r("nothing_to_settle") and nothing.transaction == ""
    assert lab.settle(ClaimPayload((lab.claim_row(config, 6 * PRICE),))).success
    before = lab.w.balance("receiver")
    held = lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS)
    answer = lab.settle(sweep)
    assert answer.success and answer.amount == str(6 * PRICE)
    assert lab.w.balance("receiver") == before + 6 * PRICE
    assert lab.chain.balance_of(ch.BATCH_SETTLEMENT_ADDRESS) == held - 6 * PRICE
    assert lab.w.receiver_totals() == (6 * PRICE, 6 * PRICE)
    assert (lab.state(config).balance, lab.state(config).total_claimed) == (DEPOSIT, 6 * PRICE)
    assert answer.extra == {
        "receiverState": {
            "receiver": lab.w.addr("receiver"),
            "token": lab.w.token,
            "totalClaimed": str(6 * PRICE),
            "totalSettled": str(6 * PRICE),
        }
    }
    receipt = lab.chain.receipt(bytes.fromhex(answer.transaction[2:]))
    assert [data[:32] for _, data in batch_events(receipt, "Settled")] == [(6 * PRICE).to_bytes(32, "big")]


def test_a_sweep_that_lands_without_its_event_is_a_failure(lab):
    """x402#3096/#3092: two sweeps of one receiver in one block; the second moves nothing, emits no
    Settled event, and is answered as a failure although its receipt succeeded."""
    config = lab.config()
    lab.opened(config)
    assert lab.settle(ClaimPayload((lab.claim_row(config, 6 * PRICE),))).success
    req = lab.requirements()
    sweep = lab.payment(SettlePayload(lab.w.addr("receiver"), lab.w.token), req)
    first = lab.fac.begin_settle(sweep, req, lab.now)
    second = lab.fac.begin_settle(sweep, req, lab.now)
    assert not isinstance(first, SettleResponse) and not isinstance(second, SettleResponse)
    before = lab.w.balance("receiver")
    lab.chain.mine()
    receipts = [lab.chain.receipt(p.tx_hash) for p in (first, second)]
    assert all(r is not None and r.success for r in receipts)
    answers = [lab.fac.finish_settle(p, r) for p, r in zip((first, second), receipts, strict=True)]
    assert answers[0].success and answers[0].amount == str(6 * PRICE)
    assert not answers[1].success and answers[1].error_reason == _r("settle_transaction_failed")
    assert answers[1].amount is None
    assert lab.w.balance("receiver") == before + 6 * PRICE


def test_a_claim_receipt_stripped_of_its_event_is_a_failure(lab):
    config = lab.config()
    lab.opened(config)
    req = lab.requirements()
    pending = lab.fac.begin_settle(
        lab.payment(ClaimPayload((lab.claim_row(config, PRICE),)), req), req, lab.now
    )
    assert not isinstance(pending, SettleResponse)
    lab.chain.mine()
    receipt = lab.chain.receipt(pending.tx_hash)
    assert receipt is not None and receipt.success
    blank = dataclasses.replace(receipt, logs=())
    answer = lab.fac.finish_settle(pending, blank)
    assert not answer.success and answer.error_reason == _r("claim_transaction_failed")


@pytest.mark.parametrize("with_claims", [False, True])
def test_a_refund_returns_unclaimed_escrow_and_advances_the_nonce(lab, with_claims):
    config = lab.config()
    lab.opened(config)
    lab.claimed(config, 2 * PRICE)
    charged = 5 * PRICE  # the server holds a voucher for 5 prices; 2 are claimed on chain
    claims = (lab.claim_row(config, charged),) if with_claims else ()
    payer_before = lab.w.balance("payer")
    answer = lab.settle(lab.refund(config, charged, 10**9, claims=claims))
    assert answer.success, answer.error_message
    claimed = charged if with_claims else 2 * PRICE
    refunded = DEPOSIT - claimed
    assert answer.amount == str(refunded) and answer.payer == config.payer
    assert lab.w.balance("payer") == payer_before + refunded
    state = lab.state(config)
    assert (state.balance, state.total_claimed, state.refund_nonce) == (claimed, claimed, 1)
    assert answer.extra == {"channelState": state.to_wire()}
    receipt = lab.chain.receipt(bytes.fromhex(answer.transaction[2:]))
    assert [data[:32] for _, data in batch_events(receipt, "Refunded")] == [refunded.to_bytes(32, "big")]
    assert len(batch_events(receipt, "Claimed")) == (1 if with_claims else 0)


def test_refund_rules_at_settle(lab):
    server = lab.w.addr("receiver_auth")
    config = lab.config(authorizer=server)
    lab.opened(config)
    req = lab.requirements(authorizer=server)
    key = lab.w.keys["receiver_auth"]
    cid = lab.cid(config)

    def signed(amount, nonce=0, signer=key):
        return ch.sign_refund(signer, lab.chain.chain_id, cid, nonce, amount)

    cases = [
        (lab.refund(config, 0, None, refund_signature=signed(1)), _r("refund_amount_invalid")),
        (lab.refund(config, 0, 0, refund_signature=signed(0)), _r("refund_amount_invalid")),
        (
            lab.refund(config, 0, 500, nonce=1, refund_signature=signed(500, 1)),
            _r("refund_simulation_failed"),
        ),
        (lab.refund(config, 0, 500, refund_signature=signed(400)), _r("refund_simulation_failed")),
        (
            lab.refund(config, 0, 500, refund_signature=signed(500, signer=lab.w.keys["stranger"])),
            _r("refund_simulation_failed"),
        ),
        (lab.refund(config, 0, 500), _r("authorizer_address_mismatch")),  # unsigned, and not ours to sign
    ]
    for payload, reason in cases:
        answer = lab.settle(payload, req)
        assert answer.error_reason == reason and answer.transaction == ""
    assert lab.state(config).refund_nonce == 0 and lab.state(config).balance == DEPOSIT
    ok = lab.settle(lab.refund(config, 0, 500, refund_signature=signed(500)), req)
    assert ok.success and ok.amount == "500" and lab.state(config).refund_nonce == 1
    # everything claimed: nothing left to refund
    drained = lab.config()
    lab.opened(drained, 10_000)
    lab.claimed(drained, 10_000)
    assert lab.settle(lab.refund(drained, 10_000, 10_000)).error_reason == _r("refund_no_balance")


def test_two_refunds_of_one_nonce_the_second_fails_on_chain(lab):
    config = lab.config()
    lab.opened(config)
    req = lab.requirements()
    refund = lab.payment(lab.refund(config, 0, 1_000), req)
    first = lab.fac.begin_settle(refund, req, lab.now)
    second = lab.fac.begin_settle(refund, req, lab.now)
    assert not isinstance(first, SettleResponse) and not isinstance(second, SettleResponse)
    lab.chain.mine()
    answers = [lab.fac.finish_settle(p, lab.chain.receipt(p.tx_hash)) for p in (first, second)]
    assert answers[0].success and answers[0].amount == "1000"
    assert answers[1].error_reason == _r("refund_transaction_failed")
    assert lab.state(config).balance == DEPOSIT - 1_000 and lab.state(config).refund_nonce == 1


# -- the ceiling rules over their input space ------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    deposit=st.integers(1, 50_000),
    claimed_share=st.floats(0, 1),
    ceiling=st.integers(0, 120_000),
    top_up=st.integers(1, 50_000),
)
def test_ceilings_against_balance_and_claimed(lab, deposit, claimed_share, ceiling, top_up):
    config = lab.config()
    lab.opened(config, deposit)
    claimed = int(deposit * claimed_share)
    if claimed:
        lab.claimed(config, claimed)

    def expected(kind: str) -> str | None:
        room = deposit + (top_up if kind == "deposit" else 0)
        if ceiling > room:
            return _r("cumulative_exceeds_balance")
        if ceiling < claimed or (kind != "refund" and ceiling == claimed):
            return _r("cumulative_below_claimed")
        return None

    voucher = lab.verify(VoucherPayload(config, lab.voucher(config, ceiling)))
    refund = lab.verify(RefundPayload(config, lab.voucher(config, ceiling)))
    top = lab.verify(lab.erc3009(config, top_up, ceiling))
    assert voucher.invalid_reason == expected("voucher")
    assert refund.invalid_reason == expected("refund")
    assert top.invalid_reason == expected("deposit")
    snapshot = _snapshot(lab, config)
    for answer in (voucher, refund, top):
        assert answer.extra == (snapshot if answer.is_valid else None)


def test_the_mechanism_needs_a_key_to_sign_what_is_delegated_to_it(lab):
    config = lab.config()
    lab.opened(config)
    req = lab.requirements()
    payment = lab.payment(ClaimPayload((lab.claim_row(config, PRICE),)), req)
    judging = Judging(lab.now, lab.chain.chain_id, lab.fac.address, settling=True)  # no key
    verdict = BATCH_EIP3009.check(payment, req, judging)
    assert verdict.ok
    refused = BATCH_EIP3009.check_on_chain(verdict, lab.chain, judging, "simulate")
    assert refused.reason == Reason(_r("authorizer_not_configured"))
