"""Controls of the ``batch-settlement`` client cases: the reference client with one channel rule
broken on purpose.

Each is ``reference.pay_from_env``'s client whose channels (``ClientChannels``) or deposit policy is
replaced: one signs one unit above ``charged + price``, one deposits by EIP-3009 against a Permit2
offer, one counts its signed ceilings as charged after a corrective 402, one adopts any corrective
402 without checking its voucherState, one ignores ``minDeposit``, one deposits before every voucher,
one opens a new channel (a new salt) each run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from ..actors.client import SpendPolicy
from ..actors.client_channels import ChannelRecord, ChannelStore, ClientChannels, DepositPolicy
from ..http.client import PayingClient
from ..http.serve import client_env, client_verdict
from ..mechanisms.batch_client import ZERO_SALT
from ..mechanisms.batch_wire import PayloadError, read_snapshot
from ..mechanisms.offer import Offer
from .controls import control
from .reference import InProcessClient

_SALTS = itertools.count(1)  # a new channel each run: salts 1, 2, ... (the reference's is 0)


class OneUnitOver(ClientChannels):
    """Signs every voucher one unit above what it was charged plus the price."""

    def channel_for(self, offer: Offer, now: int) -> ChannelRecord:
        record = super().channel_for(offer, now)
        return replace(record, charged=record.charged + 1)


class Eip3009Always(ClientChannels):
    """Deposits by EIP-3009 whatever the offer's assetTransferMethod."""

    def pay(self, offer: Offer, now: int, entropy: bytes) -> dict[str, Any]:
        extra = {k: v for k, v in offer.extra.items() if k != "assetTransferMethod"}
        return super().pay(replace(offer, extra=extra), now, entropy)


class SignedMaxAsCharged(ClientChannels):
    """Adopts a verified corrective 402, then takes the signed ceiling for the charged amount."""

    def correct(self, offer: Offer, now: int) -> str | None:
        problem = super().correct(offer, now)
        record = self.find(offer)
        if problem is None and record is not None:
            self.store.put(replace(record, charged=record.signed_max))
        return problem


class Credulous(ClientChannels):
    """Adopts a corrective 402's channelState without checking its voucherState."""

    def correct(self, offer: Offer, now: int) -> str | None:
        record = self.channel_for(offer, now)
        try:
            state, named = read_snapshot(offer.extra.get("channelState"))
        except PayloadError as exc:
            return str(exc)
        adopted = replace(
            record,
            charged=named if named is not None else state.total_claimed,
            balance=state.balance,
            total_claimed=state.total_claimed,
            uncertain=False,
        )
        self.store.put(adopted)
        return None


@dataclass(frozen=True)
class NoMinimum(DepositPolicy):
    """Sizes deposits as if the server announced no minDeposit."""

    def deposit_for(self, price: int, charged: int, balance: int, min_deposit: int | None) -> int | None:
        return super().deposit_for(price, charged, balance, None)


def _batch_pay(
    env: dict[str, str],
    channels: type[ClientChannels] = ClientChannels,
    policy: DepositPolicy | None = None,
    salt: bytes = ZERO_SALT,
) -> dict:
    """``pay_from_env`` by a client whose channels are ``channels`` (sized by ``policy``, named by
    ``salt``)."""
    parsed = client_env(env)
    try:
        with PayingClient(
            parsed.key, networks=(parsed.network,), policy=SpendPolicy(max_price=parsed.max_amount)
        ) as client:
            role = client.role
            role.channels = channels(role.key, ChannelStore(), policy or DepositPolicy(), salt=salt)
            result = client.get(parsed.url)
    except Exception as exc:  # the verdict says what went wrong, as a client command would
        error = f"{type(exc).__name__}: {exc}"
        return {"success": False, "data": error, "status_code": None, "payment_response": None}
    return client_verdict(result)


def _client(name: str, **switches: Any) -> InProcessClient:
    return InProcessClient(lambda env: _batch_pay(env, **switches), name=name, kind="control")


@control(
    "client-batch-one-unit-over",
    "client",
    "Signs every voucher one unit above the charged amount plus the price",
    (
        "client.batch.signs-deposit",
        "client.batch.signs-permit2-deposit",
        "client.batch.voucher-within-charge",
    ),
)
def one_unit_over():
    return _client("client-batch-one-unit-over", channels=OneUnitOver)


@control(
    "client-batch-eip3009-always",
    "client",
    "Deposits by EIP-3009 against an offer whose assetTransferMethod is permit2",
    ("client.batch.signs-permit2-deposit",),
)
def eip3009_always():
    return _client("client-batch-eip3009-always", channels=Eip3009Always)


@control(
    "client-batch-signed-max-as-charged",
    "client",
    "After a corrective 402 counts the signed ceiling, not the charged amount, as charged",
    ("client.batch.voucher-within-charge",),
)
def signed_max_as_charged():
    return _client("client-batch-signed-max-as-charged", channels=SignedMaxAsCharged)


@control(
    "client-batch-credulous-corrective",
    "client",
    "Adopts any corrective 402's chargedCumulativeAmount without checking the voucherState signature",
    ("client.batch.refuses-forged-corrective",),
)
def credulous_corrective():
    return _client("client-batch-credulous-corrective", channels=Credulous)


@control(
    "client-batch-ignores-min-deposit",
    "client",
    "Deposits five prices whatever extra.minDeposit says",
    ("client.batch.respects-min-deposit",),
)
def ignores_min_deposit():
    return _client("client-batch-ignores-min-deposit", policy=NoMinimum())


@control(
    "client-batch-deposits-always",
    "client",
    "Deposits again before every voucher, whatever the channel's balance",
    ("client.batch.adopts-genuine-corrective",),
)
def deposits_always():
    return _client("client-batch-deposits-always", policy=DepositPolicy(top_up_below=2**128))


@control(
    "client-batch-new-channel-each-run",
    "client",
    "Opens a new channel (a new salt) each time it starts, stranding the old one's escrow",
    ("client.batch.adopts-genuine-corrective",),
)
def new_channel_each_run():
    return InProcessClient(
        lambda env: _batch_pay(env, salt=next(_SALTS).to_bytes(32, "big")),
        name="client-batch-new-channel-each-run",
        kind="control",
    )
