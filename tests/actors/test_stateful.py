"""A Hypothesis state machine over payers, payments, replays, time moves and mining.

Invariants checked after every step, on chain:
* the token's total supply never changes (payments move money, they never make or burn it);
* each (authorizer, nonce) is used at most once, and every transfer to the payee comes with exactly
  one ``AuthorizationUsed`` in the same transaction;
* every 200 answer is backed by exactly one on-chain transfer of the price from its payer to the
  payee, in the transaction its settlement header names, and no two 200s share a transaction;
* the payee holds exactly the price times the number of authorizations used.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from x402sim import Testbed
from x402sim.actors import HttpRequest, Send
from x402sim.actors.facilitator import PendingSettlement
from x402sim.evm.token import AUTHORIZATION_USED_TOPIC
from x402sim.protocol import PAYMENT_SIGNATURE, encode_header, parse_payment_required, read_settlement

PRICE = 7_000


class PaymentWorld(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tb = Testbed(seed=21)
        self.payers = self.tb.accounts(3, usdc=40_000)
        self.payers.append(self.tb.account(usdc=PRICE - 1))  # one who can never pay
        self.shop = self.tb.server({"GET /item": PRICE})
        self.clients = [self.tb.client(p) for p in self.payers]
        self.supply = self.tb.chain.total_supply()
        self.first_block = self.tb.chain.block_number + 1
        self.signed = []  # payments signed, sent or not
        self.pending: list[PendingSettlement] = []
        self.served = []  # (payer, settlement) of every 200

    def _record(self, response, payer):
        if response.status == 200:
            self.served.append((payer, read_settlement(response.headers)))

    @rule(who=st.integers(0, 3))
    def pay_through_the_server(self, who):
        result = self.clients[who].get(self.shop, "/item")
        if result.payment is not None:
            self.signed.append((self.payers[who].address, result.payment))
        self._record(result.response, self.payers[who].address)

    @rule(who=st.integers(0, 3))
    def sign_without_sending(self, who):
        answer = self.tb.perform(self.shop, Send(HttpRequest("GET", "/item")))
        payment = self.clients[who].create_payment(parse_payment_required(answer.headers, answer.body))
        self.signed.append((self.payers[who].address, payment))

    @precondition(lambda self: self.signed)
    @rule(pick=st.integers(0, 10_000))
    def send_or_replay_a_signed_payment(self, pick):
        payer, payment = self.signed[pick % len(self.signed)]
        request = HttpRequest("GET", "/item", ((PAYMENT_SIGNATURE, encode_header(payment)),))
        self._record(self.tb.perform(self.shop, Send(request)), payer)

    @precondition(lambda self: self.signed)
    @rule(pick=st.integers(0, 10_000))
    def settle_directly_without_mining(self, pick):
        _, payment = self.signed[pick % len(self.signed)]
        outcome = self.tb.facilitator.role.begin_settle(payment, payment.accepted, self.tb.now)
        if isinstance(outcome, PendingSettlement):
            self.pending.append(outcome)

    @rule()
    def mine(self):
        self.tb.mine()
        for p in self.pending:
            self.tb.facilitator.role.finish_settle(p, self.tb.chain.receipt(p.tx_hash))
        self.pending = []

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 600]))
    def advance_time(self, seconds):
        self.tb.advance(seconds)

    @invariant()
    def supply_is_constant(self):
        assert self.tb.chain.total_supply() == self.supply

    @invariant()
    def authorizations_transfer_at_most_once(self):
        used = []
        for receipt in self.tb.chain.receipts():
            if receipt.block_number < self.first_block:
                continue
            uses = [log for log in receipt.logs if log.topics[0] == AUTHORIZATION_USED_TOPIC]
            to_shop = [t for t in receipt.transfers() if t.to == self.shop.pay_to]
            assert len(uses) == len(to_shop) <= 1
            used += [(log.topics[1], log.topics[2]) for log in uses]
        assert len(used) == len(set(used))
        assert self.tb.chain.balance_of(self.shop.pay_to) == PRICE * len(used)

    @invariant()
    def every_200_is_one_transfer(self):
        hashes = [s.transaction for _, s in self.served]
        assert len(hashes) == len(set(hashes))
        for payer, settlement in self.served:
            assert settlement.success
            receipt = self.tb.chain.receipt(bytes.fromhex(settlement.transaction[2:]))
            transfers = receipt.transfers()
            assert [(t.from_, t.to, t.value) for t in transfers] == [(payer, self.shop.pay_to, PRICE)]


TestPaymentWorld = PaymentWorld.TestCase
TestPaymentWorld.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
