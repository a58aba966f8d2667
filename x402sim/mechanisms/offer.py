"""The view of a payment requirement that EVM mechanisms act on, for either x402 version.

``Offer`` holds the fields of one ``accepts`` entry that every EVM mechanism needs (scheme, CAIP-2
network, atomic amount, asset and payTo in checksum form, the validity window and ``extra``).
Addresses are checked once, here, and compared in one spelling everywhere after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..evm.eip712 import Domain, checksum
from ..protocol import PaymentRequirements, PaymentRequirementsV1, ProtocolError, v1_to_caip2
from ..protocol.recent import Recent

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def evm_address(value: object, where: str) -> str:
    """``value`` (``0x`` + 40 hex digits, any case) in EIP-55 checksum form, the one form addresses
    are compared and used in; ``ProtocolError`` naming ``where`` when it is not an address."""
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ProtocolError(where, "not a 20-byte hex address")
    return checksum(value)


@dataclass(frozen=True)
class Offer:
    """The fields of a payment requirement that the exact scheme acts on, for either version."""

    scheme: str
    network: str
    amount: int
    asset: str
    pay_to: str
    max_timeout_seconds: int
    extra: dict[str, Any]

    @classmethod
    def of(cls, req: PaymentRequirements | PaymentRequirementsV1, where: str = "requirements") -> Offer:
        """The offer of ``req``, with ``asset`` and ``payTo`` checked and in checksum form; a malformed
        address raises ``ProtocolError`` naming ``where`` and the field. The offer of the same
        requirements object is made once (a payment's requirements are read at each step): the
        model is frozen, and its one mutable part, ``extra``, is the offer's own ``extra``."""
        known = _offers.get(id(req))
        if known is not None and known[0] is req:
            return known[1]
        offer = cls._made(req, where)
        _offers.keep(id(req), (req, offer))
        return offer

    @classmethod
    def _made(cls, req: PaymentRequirements | PaymentRequirementsV1, where: str) -> Offer:
        if isinstance(req, PaymentRequirementsV1):
            network = v1_to_caip2(req.network)
            amount = req.max_amount_required
        else:
            network, amount = req.network, req.amount
        asset = evm_address(req.asset, f"{where}.asset")
        pay_to = evm_address(req.pay_to, f"{where}.payTo")
        extra = req.extra if req.extra is not None else {}
        return cls(req.scheme, network, amount, asset, pay_to, req.max_timeout_seconds, extra)

    @property
    def chain_id(self) -> int | None:
        namespace, _, reference = self.network.partition(":")
        return int(reference) if namespace == "eip155" and reference.isdigit() else None

    @property
    def domain(self) -> Domain:
        return Domain(str(self.extra["name"]), str(self.extra["version"]), self.chain_id or 0, self.asset)


_offers: Recent[int, tuple[PaymentRequirements | PaymentRequirementsV1, Offer]] = Recent(4096)
