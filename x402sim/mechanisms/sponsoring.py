"""The two gas-sponsoring extensions of Permit2 payments: the facilitator pays for the payer's
one-time approval of Permit2, so a wallet with no ether and no allowance can pay.

* ``eip2612GasSponsoring``: the payer signs an EIP-2612 ``permit`` of its token for Permit2 (value:
  the permitted amount, which the proxies demand); the facilitator settles through the proxy's
  ``settleWithPermit``, which submits the permit first.
* ``erc20ApprovalGasSponsoring``: the payer signs an ``approve(Permit2, max)`` transaction; the
  facilitator sends it, in one bundle, the ether that transaction's gas may cost (less what it
  holds), relays it, then settles.

Three parties, three parts here:

* the server declares an extension in its 402 (``declaration``) when its facilitator lists it in
  ``/supported``;
* the client attaches the info of the first declared extension it can build, EIP-2612 first, when
  its allowance for Permit2 is short (``client_info``);
* the facilitator, when the allowance is short, takes an extension it offers, checks its info
  (``eip2612_problem``, ``erc20_problem``: the SDKs' checks, in the Python SDK's order, and those
  the specification asks of a relayer that the SDKs skip: the approval's transaction nonce and its
  cost), and builds the steps of the settlement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..evm.backend import ChainReads
from ..evm.eip712 import Domain, checksum, sign_digest
from ..evm.permit2 import (
    PERMIT2_ADDRESS,
    UINT256_MAX,
    Eip2612Permit,
    allowance,
    approve_call,
    eip2612_digest,
    eip2612_nonce,
)
from ..evm.txsign import GWEI, decode_signed, sign_eip1559
from ..protocol import Eip2612SponsoringInfo, Erc20ApprovalSponsoringInfo, ProtocolError, Reason

EIP2612_GAS_SPONSORING = "eip2612GasSponsoring"
ERC20_APPROVAL_GAS_SPONSORING = "erc20ApprovalGasSponsoring"
SPONSORING_EXTENSIONS = (EIP2612_GAS_SPONSORING, ERC20_APPROVAL_GAS_SPONSORING)
DEADLINE_MARGIN = 6  # seconds a permit must outlive verification (the SDKs' buffer)
APPROVAL_GAS = 70_000  # the gas limit the SDK clients give a sponsored approve transaction
# The most a facilitator here pays for one sponsored approval (gas limit x max fee per gas): a
# transaction priced above it is refused before anything is sent.
MAX_SPONSORED_WEI = 100_000 * 50 * GWEI
APPROVE_SELECTOR = bytes.fromhex("095ea7b3")

_DESCRIPTIONS = {
    EIP2612_GAS_SPONSORING: "The facilitator accepts an EIP-2612 permit for Permit2 and pays its gas.",
    ERC20_APPROVAL_GAS_SPONSORING: (
        "The facilitator relays a signed approve(Permit2) transaction and pays the ether its gas needs."
    ),
}
_FIELDS = {
    EIP2612_GAS_SPONSORING: (
        "from",
        "asset",
        "spender",
        "amount",
        "nonce",
        "deadline",
        "signature",
        "version",
    ),
    ERC20_APPROVAL_GAS_SPONSORING: ("from", "asset", "spender", "amount", "signedTransaction", "version"),
}
_PATTERNS = {
    "from": "^0x[a-fA-F0-9]{40}$",
    "asset": "^0x[a-fA-F0-9]{40}$",
    "spender": "^0x[a-fA-F0-9]{40}$",
    "amount": "^[0-9]+$",
    "nonce": "^[0-9]+$",
    "deadline": "^[0-9]+$",
    "signature": "^0x[a-fA-F0-9]+$",
    "signedTransaction": "^0x[a-fA-F0-9]+$",
    "version": "^[0-9]+(\\.[0-9]+)*$",
}


def declaration(name: str) -> dict[str, Any]:
    """What a 402's ``extensions`` says of extension ``name``: a description and the JSON Schema of
    the info a payment carries."""
    fields = _FIELDS[name]
    return {
        "info": {"description": _DESCRIPTIONS[name], "version": "1"},
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {f: {"type": "string", "pattern": _PATTERNS[f]} for f in fields},
            "required": list(fields),
        },
    }


# -- client ------------------------------------------------------------------------------------


def client_info(
    key: bytes,
    payer: str,
    declared: dict[str, Any],
    *,
    token: str,
    domain: Domain | None,
    amount: int,
    deadline: int,
    chain: ChainReads | None,
) -> dict[str, Any]:
    """The ``extensions`` entry a payment of ``amount`` of ``token`` through Permit2 carries: none
    when the payer's allowance for Permit2 covers it, when no chain can be read, or when the 402
    declares neither extension; else the first declared one it can build (EIP-2612 needs the
    token's EIP-712 ``domain``), merged over its declaration, as the SDKs merge it."""
    if chain is None or allowance(chain, token, payer, PERMIT2_ADDRESS) >= amount:
        return {}
    if EIP2612_GAS_SPONSORING in declared and domain is not None:
        nonce = eip2612_nonce(chain, token, payer)
        permit = Eip2612Permit(payer, PERMIT2_ADDRESS, amount, nonce, deadline)
        signature = sign_digest(key, eip2612_digest(domain, permit))
        info = Eip2612SponsoringInfo.model_validate(
            {
                "from": checksum(payer),
                "asset": checksum(token),
                "spender": PERMIT2_ADDRESS,
                "amount": amount,
                "nonce": nonce,
                "deadline": deadline,
                "signature": "0x" + signature.hex(),
            }
        )
        return {EIP2612_GAS_SPONSORING: _merged(declared[EIP2612_GAS_SPONSORING], info.to_wire())}
    if ERC20_APPROVAL_GAS_SPONSORING in declared:
        signed = sign_eip1559(
            key,
            chain_id=chain.chain_id,
            nonce=chain.pending_nonce(payer),
            gas=APPROVAL_GAS,
            max_fee_per_gas=max(GWEI, 2 * int(getattr(chain, "base_fee", 0))),
            max_priority_fee_per_gas=0,
            to=token,
            data=approve_call(PERMIT2_ADDRESS, UINT256_MAX),
        )
        approval = Erc20ApprovalSponsoringInfo.model_validate(
            {
                "from": checksum(payer),
                "asset": checksum(token),
                "spender": PERMIT2_ADDRESS,
                "amount": UINT256_MAX,
                "signedTransaction": "0x" + signed.raw.hex(),
            }
        )
        return {
            ERC20_APPROVAL_GAS_SPONSORING: _merged(
                declared[ERC20_APPROVAL_GAS_SPONSORING], approval.to_wire()
            )
        }
    return {}


def _merged(declared: object, info: dict[str, Any]) -> dict[str, Any]:
    """The payment's entry: the server's declaration (its schema kept, as strict servers demand) with
    the info's fields added over its own."""
    entry = dict(declared) if isinstance(declared, dict) else {}
    base = entry.get("info")
    entry["info"] = {**(base if isinstance(base, dict) else {}), **info}
    return entry


# -- facilitator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sponsorship:
    """A gas-sponsoring extension a payment carries, read from its ``extensions``."""

    name: str
    eip2612: Eip2612SponsoringInfo | None = None
    erc20: Erc20ApprovalSponsoringInfo | None = None
    problem: Reason | None = None  # its info is malformed


def read_sponsorship(extensions: dict[str, Any] | None, offered: frozenset[str]) -> Sponsorship | None:
    """The sponsoring extension of a payment's ``extensions`` that the facilitator ``offered``
    (EIP-2612 first, as the SDKs look), or None; a malformed info is kept with its problem."""
    for name in SPONSORING_EXTENSIONS:
        entry = (extensions or {}).get(name)
        if name not in offered or not isinstance(entry, dict):
            continue
        info = entry.get("info")
        try:
            if name == EIP2612_GAS_SPONSORING:
                return Sponsorship(name, eip2612=Eip2612SponsoringInfo.from_wire(_info(info), name))
            return Sponsorship(name, erc20=Erc20ApprovalSponsoringInfo.from_wire(_info(info), name))
        except ProtocolError:
            return Sponsorship(
                name,
                problem=Reason.invalid_eip2612_extension_format
                if name == EIP2612_GAS_SPONSORING
                else Reason.invalid_erc20_approval_extension_format,
            )
    return None


def _info(info: object) -> dict[str, Any]:
    """The ``info`` object of a payment's extension entry (JSON text is no object here)."""
    if not isinstance(info, dict):
        raise ProtocolError("info", "not an object")
    return info


def eip2612_problem(
    info: Eip2612SponsoringInfo, payer: str, token: str, amount: int, now: int
) -> Reason | None:
    """Why an EIP-2612 info cannot give Permit2 its allowance for this payment, or None. The SDKs'
    checks, then the one the proxies make on chain (the permit's value is the permitted amount)."""
    if info.from_.lower() != payer.lower():
        return Reason.eip2612_from_mismatch
    if info.asset.lower() != token.lower():
        return Reason.eip2612_asset_mismatch
    if info.spender.lower() != PERMIT2_ADDRESS.lower():
        return Reason.eip2612_spender_not_permit2
    if info.deadline < now + DEADLINE_MARGIN:
        return Reason.eip2612_deadline_expired
    if info.amount != amount:
        return Reason.permit2_2612_amount_mismatch
    return None


def erc20_problem(
    info: Erc20ApprovalSponsoringInfo, payer: str, token: str, chain: ChainReads
) -> tuple[Reason | None, str]:
    """Why an approval info cannot be relayed for this payment, with a message, or (None, ""). The
    SDKs' checks in the Python SDK's order, then the relayer's own: the transaction is for this chain,
    carries no value, uses the payer's next nonce, and costs at most ``MAX_SPONSORED_WEI``."""
    if info.from_.lower() != payer.lower():
        return Reason.erc20_approval_from_mismatch, "from is not the payer"
    if info.asset.lower() != token.lower():
        return Reason.erc20_approval_asset_mismatch, "asset is not the token paid"
    if info.spender.lower() != PERMIT2_ADDRESS.lower():
        return Reason.erc20_approval_spender_not_permit2, "spender is not Permit2"
    try:
        tx = decode_signed(bytes.fromhex(info.signed_transaction[2:]))
    except ValueError as exc:
        return Reason.erc20_approval_tx_invalid_signature, str(exc)
    if tx.sender.lower() != payer.lower():
        return Reason.erc20_approval_tx_signer_mismatch, f"the transaction is signed by {tx.sender}"
    if tx.to is None or tx.to.lower() != token.lower():
        return Reason.erc20_approval_tx_wrong_target, "the transaction does not call the token"
    if tx.data[:4] != APPROVE_SELECTOR:
        return Reason.erc20_approval_tx_wrong_selector, "the transaction is not an approve() call"
    if len(tx.data) < 68:
        return Reason.erc20_approval_tx_invalid_calldata, "approve() calldata too short"
    if tx.data[16:36].hex() != PERMIT2_ADDRESS[2:].lower():
        return Reason.erc20_approval_tx_wrong_spender, "approve() does not name Permit2"
    if tx.chain_id != chain.chain_id or tx.value:
        return Reason.erc20_approval_tx_parse_failed, "the transaction is for another chain or moves ether"
    if tx.nonce != chain.pending_nonce(payer):
        return Reason.erc20_approval_tx_wrong_nonce, f"nonce {tx.nonce} is not the payer's next"
    if tx.gas * tx.max_fee_per_gas > MAX_SPONSORED_WEI:
        return Reason.erc20_approval_tx_too_costly, f"its gas may cost {tx.gas * tx.max_fee_per_gas} wei"
    return None, ""


def funding(info: Erc20ApprovalSponsoringInfo, chain: ChainReads) -> int:
    """The wei a payer needs sent before its approval transaction can pay its gas."""
    tx = decode_signed(bytes.fromhex(info.signed_transaction[2:]))
    return max(0, tx.gas * tx.max_fee_per_gas - chain.eth_balance(tx.sender))
