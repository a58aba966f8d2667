"""The batch-settlement contract under random operation sequences, against a Python model.

Three channels (two receivers, one receiver authorizer; two with a payer authorizer, one where the
payer signs) see deposits through both collectors, vouchers signed off chain, claims (direct and
relayed with the authorizer's signature, several rows, stale rows), settlements, refunds (direct
and signed), timed withdrawals and the clock moving. The model predicts every outcome (success or
the exact custom error) and every field; after each step:

* the contract's token balance == sum of the channels' ``balance`` - sum of the receivers'
  ``totalSettled`` (a channel's balance keeps claimed funds until a refund or withdrawal; settling
  pays claimed funds out without touching the channel);
* ``totalClaimed <= balance`` for every channel;
* no receiver has claimed more than the sum, over its channels, of the highest voucher it holds;
* the chain's channels, pending withdrawals, refund nonces, receiver totals and token balances equal
  the model's, field by field.

``make soak`` runs the same machine for ``X402SIM_SOAK_STEPS`` steps (``CHANNEL_STEPS``, default 2,000).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from x402sim.evm import channels as ch

from .batch_world import BATCH, ZERO, World, error

DELAY = ch.MIN_WITHDRAW_DELAY
CHANNELS = st.integers(0, 2)
AMOUNTS = st.integers(1, 3_000)
# A share of what a channel has left: below, all of it, or more than it has.
SHARES = st.sampled_from([0.1, 0.5, 1.0, 2.0])


@functools.cache
def base_world() -> World:
    return World.build()


@dataclass
class Channel:
    config: ch.ChannelConfig
    balance: int = 0
    claimed: int = 0
    withdraw_amount: int = 0
    withdraw_at: int = 0
    nonce: int = 0
    vouchers: list[ch.VoucherClaim] = field(default_factory=list)  # signed, ascending

    @property
    def available(self) -> int:
        return self.balance - self.claimed

    @property
    def highest(self) -> int:
        return self.vouchers[-1].max_claimable if self.vouchers else 0


class BatchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = base_world()
        self.snapshot = self.w.chain.snapshot()
        self.salt = self.w.salt
        self.counter = 0

    @initialize()
    def open_channels(self) -> None:
        w = self.w
        self.channels = [
            Channel(w.config(delay=DELAY)),
            Channel(w.config(receiver="receiver2", delay=DELAY)),
            Channel(w.config(payer_auth=None, delay=DELAY + 60)),
        ]
        self.receivers = {"receiver": [0, 0], "receiver2": [0, 0]}  # [claimed, settled]
        self.tokens = {name: w.balance(name) for name in ("payer", "receiver", "receiver2")}
        self.tokens[BATCH] = w.balance(BATCH)

    def teardown(self) -> None:
        self.w.chain.revert(self.snapshot)
        self.w.salt = self.salt

    def _next(self) -> int:
        self.counter += 1
        return 10**9 + self.counter

    def _receiver(self, c: Channel) -> str:
        return "receiver" if c.config.receiver == self.w.addr("receiver") else "receiver2"

    def _pay_out(self, c: Channel, amount: int) -> None:
        self.tokens[BATCH] -= amount
        self.tokens["payer"] += amount

    def _expect(self, sender: str, data: bytes, failure: str | None):
        receipt = self.w.send(sender, data)
        if failure is None:
            assert receipt.success, receipt.revert_reason
        else:
            assert not receipt.success
            assert self.w.call(data, sender=sender).output == error(failure)
        return receipt

    # -- rules -----------------------------------------------------------------------------------

    @rule(i=CHANNELS, amount=AMOUNTS, permit2=st.booleans())
    def deposit(self, i: int, amount: int, permit2: bool) -> None:
        c = self.channels[i]
        w = self.w
        if permit2:
            data = w.permit2_data(c.config, amount, nonce=self._next())
            collector = ch.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS
        else:
            data = w.erc3009_data(c.config, amount, salt=self._next())
            collector = ch.ERC3009_DEPOSIT_COLLECTOR_ADDRESS
        receipt = self._expect("relayer", ch.deposit_call(c.config, amount, collector, data), None)
        created = any(log.topics[0] == ch.EVENT_TOPICS["ChannelCreated"] for log in receipt.logs)
        assert created == (c.balance == 0 and c.claimed == 0)
        c.balance += amount
        self.tokens["payer"] -= amount
        self.tokens[BATCH] += amount

    @rule(i=CHANNELS, step=st.integers(1, 1_000))
    def sign_voucher(self, i: int, step: int) -> None:
        c = self.channels[i]
        c.vouchers.append(self.w.voucher(c.config, c.highest + step))

    @precondition(lambda self: any(c.vouchers for c in self.channels))
    @rule(
        rows=st.lists(
            st.tuples(CHANNELS, st.integers(0, 10**6), st.sampled_from([0.0, 0.5, 0.9, 1.0])),
            min_size=1,
            max_size=3,
        ),
        relayed=st.booleans(),
    )
    def claim(self, rows: list[tuple[int, int, float]], relayed: bool) -> None:
        claims: list[ch.VoucherClaim] = []
        picked: list[Channel] = []
        for i, pick, share in rows:
            c = self.channels[i]
            if not c.vouchers:
                continue
            v = c.vouchers[pick % len(c.vouchers)]
            claims.append(
                ch.VoucherClaim(c.config, v.max_claimable, v.signature, int(v.max_claimable * share))
            )
            picked.append(c)
        if not claims:
            return
        claimed = {id(c): c.claimed for c in picked}
        failure = None
        for c, row in zip(picked, claims, strict=True):
            if row.total_claimed <= claimed[id(c)]:
                continue  # stale: skipped
            if row.total_claimed > c.balance:
                failure = "ClaimExceedsBalance()"
                break
            claimed[id(c)] = row.total_claimed
        if relayed:
            signature = ch.sign_claim_batch(self.w.keys["receiver_auth"], self.w.chain_id, claims)
            self._expect("relayer", ch.claim_with_signature_call(claims, signature), failure)
        else:
            self._expect("receiver_auth", ch.claim_call(claims), failure)
        if failure is None:
            for c in picked:
                delta = claimed[id(c)] - c.claimed
                self.receivers[self._receiver(c)][0] += delta
                c.claimed = claimed[id(c)]

    @rule(receiver=st.sampled_from(["receiver", "receiver2"]))
    def settle(self, receiver: str) -> None:
        totals = self.receivers[receiver]
        self._expect("stranger", ch.settle_call(self.w.addr(receiver), self.w.token), None)
        paid = totals[0] - totals[1]
        totals[1] = totals[0]
        self.tokens[BATCH] -= paid
        self.tokens[receiver] += paid

    @rule(i=CHANNELS, share=SHARES, signed=st.booleans())
    def refund(self, i: int, share: float, signed: bool) -> None:
        c = self.channels[i]
        amount = max(1, int(c.available * share))
        if signed:
            key = self.w.keys["receiver_auth"]
            cid = self.w.cid(c.config)
            signature = ch.sign_refund(key, self.w.chain_id, cid, c.nonce, amount)
            self._expect("relayer", ch.refund_with_signature_call(c.config, amount, c.nonce, signature), None)
        else:
            self._expect(self._receiver(c), ch.refund_call(c.config, amount), None)
        c.nonce += 1
        refunded = min(amount, c.available)
        c.balance -= refunded
        if c.withdraw_at and refunded:
            if refunded >= c.withdraw_amount:
                c.withdraw_amount = c.withdraw_at = 0
            else:
                c.withdraw_amount -= refunded
        self._pay_out(c, refunded)

    @rule(i=CHANNELS, share=SHARES, by_authorizer=st.booleans())
    def initiate_withdraw(self, i: int, share: float, by_authorizer: bool) -> None:
        c = self.channels[i]
        amount = max(1, int(c.available * share))
        sender = "payer_auth" if by_authorizer and c.config.payer_authorizer != ZERO else "payer"
        failure = None
        if c.withdraw_at:
            failure = "WithdrawalAlreadyPending()"
        elif amount > c.available:
            failure = "WithdrawAmountExceedsAvailable()"
        receipt = self._expect(sender, ch.initiate_withdraw_call(c.config, amount), failure)
        if failure is None:
            c.withdraw_amount, c.withdraw_at = amount, receipt.block_timestamp

    @rule(i=CHANNELS, wait=st.booleans())
    def finalize_withdraw(self, i: int, wait: bool) -> None:
        c = self.channels[i]
        pending = [c for c in self.channels if c.withdraw_at]
        if wait and pending:  # a pending withdrawal, once its delay has run out
            c = pending[i % len(pending)]
            self.w.chain.set_time(max(self.w.chain.now, c.withdraw_at + c.config.withdraw_delay))
        failure = None
        if not c.withdraw_at:
            failure = "WithdrawalNotPending()"
        elif self.w.chain.now < c.withdraw_at + c.config.withdraw_delay:
            failure = "WithdrawDelayNotElapsed()"
        self._expect("payer", ch.finalize_withdraw_call(c.config), failure)
        if failure is None:
            amount = min(c.withdraw_amount, c.available)
            c.withdraw_amount = c.withdraw_at = 0
            c.balance -= amount
            self._pay_out(c, amount)

    @rule(seconds=st.sampled_from([0, 1, 60, DELAY - 1, DELAY, DELAY + 60, 3 * DELAY]))
    def advance(self, seconds: int) -> None:
        self.w.chain.advance(seconds)

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        if not hasattr(self, "channels"):
            return
        w = self.w
        escrow = w.balance(BATCH)
        assert escrow == sum(c.balance for c in self.channels) - sum(s for _, s in self.receivers.values())
        for c in self.channels:
            state = w.state(c.config)
            assert state.total_claimed <= state.balance
            assert state == ch.ChannelState(
                w.cid(c.config), c.balance, c.claimed, c.withdraw_amount, c.withdraw_at, c.nonce
            )
        for name, totals in self.receivers.items():
            assert w.receiver_totals(name) == tuple(totals)
            ceiling = sum(c.highest for c in self.channels if self._receiver(c) == name)
            assert totals[0] <= ceiling
        for who, amount in self.tokens.items():
            assert w.balance(who) == amount, who


# Hypothesis enables a random subset of the rules in each run (swarm testing), so more short runs
# cover more than a few long ones.
STEPS = 30
TestBatchMachine = BatchMachine.TestCase
TestBatchMachine.settings = settings(
    max_examples=8,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.soak
def test_soak():
    """About ``X402SIM_SOAK_STEPS`` steps (default 2,000) of the same machine."""
    steps = int(os.environ.get("X402SIM_SOAK_STEPS", "2000"))
    run_state_machine_as_test(
        BatchMachine,
        settings=settings(
            max_examples=max(1, steps // 50),
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
