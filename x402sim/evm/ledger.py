"""A chain backend without an EVM: the token's state and rules in Python, with real signatures.

``LedgerChain`` offers the surface of ``LocalChain`` that the roles and the simulator use (signed
raw transactions in, bundles, blocks, receipts with their logs, balances, ``authorizationState``,
supply, simulated calls, time set from outside) and runs the project's EIP-3009 token (``usdc.vy``
or ``pyusd.vy``) with the rules of ``fiat_rules``, Permit2 and the x402 exact and upto Permit2
proxies at their canonical addresses with those of ``permit2_rules``, and the batch-settlement
contract and its two deposit collectors with those of ``batch_rules``, instead of py-evm. It is
about as fast as the signatures allow, for scenarios of millions of payments.
``tests/evm/test_ledger.py``, ``tests/evm/test_ledger_permit2.py`` and
``tests/evm/test_ledger_batch.py`` apply random operation sequences to both backends and demand
the same balances, allowances, authorization states and nonces, channels, verdicts, revert texts,
logs and gas: those tests are this backend's licence.

Rules of this module:

* Same addresses as ``LocalChain`` built with the same arguments: bank and minter keys come from
  the seed, the token sits where the minter's deployment would put it (or at ``token_address``).
* Transactions are real: every raw transaction is decoded (EIP-1559 only) and its sender recovered
  from its signature; every authorization's signer is recovered by libsecp256k1. Recoveries are
  memoised per (digest, signature), so that verifying and then settling one authorization costs one
  recovery (a pure function: the memo changes no result).
* Gas is charged as py-evm charges it: intrinsic gas and calldata (with the EIP-7623 floor),
  storage by EIP-2929 / EIP-2200 / EIP-3529 (``fiat_rules.Frame``), the rest a constant per function
  and exit point (``EXECUTION_GAS``, calibrated on py-evm), refunds capped at a fifth; the base fee
  moves by EIP-1559 from where py-evm's deployment leaves it. Ether pays for gas at the effective
  price.
* Only what the mechanisms and the simulator need is modelled: ether transfers to accounts; the
  token's ``transferWithAuthorization`` (v, r, s), ``cancelAuthorization``, ``transfer``, ``mint``,
  ``approve``, ``transferFrom`` and EIP-2612 ``permit``; Permit2's ``invalidateUnorderedNonces``;
  the proxies' ``settle`` and ``settleWithPermit`` for the ledger's token, with 65-byte signatures
  of owners without code; the batch-settlement contract's calls and views for channels in the
  ledger's token, deposits through its two collectors, 65-byte signatures of payers and receiver
  authorizers without code (see ``batch_rules``). Any other call, ether sent to a contract, a
  contract creation, a future nonce, calldata not in the canonical ABI encoding is refused at
  submission with a ``ChainError`` naming it, never mined approximately. ``call`` answers the
  views the mechanisms read (balances, allowances, EIP-2612 nonces, Permit2's ``nonceBitmap``,
  domain separators, the batch-settlement contract's channels, receivers, refund nonces, channel
  ids and digests) and simulates any modelled call.
* ``send_bundle`` is ``LocalChain``'s: all or none, and a transaction may spend ether that an
  earlier one of the bundle sends its sender.
* Not modelled exactly: a proxy settlement sent with too little gas (py-evm's 63/64 rule for the
  nested calls decides what fails there; the ledger reports it out of gas).
* ``prune_authorizations_after``, when set, forgets a used authorization that long after its
  ``validBefore`` (it can no longer settle), so that state does not grow with payments; reads of a
  forgotten one answer False. Canceled authorizations are never forgotten.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from eth_abi import decode, encode
from eth_utils import to_canonical_address, to_checksum_address

from ..errors import ChainError
from . import batch_rules as br
from . import fiat_rules as fr
from . import permit2_rules as p2
from . import rlpcodec
from .chain import (
    ETHER,
    GWEI,
    TOKEN_METADATA,
    Block,
    CallResult,
    ChainBasics,
    ChainConfig,
    Log,
    Receipt,
)
from .channels import batch_domain_separator
from .contracts import (
    BATCH_SETTLEMENT,
    ERC3009_DEPOSIT_COLLECTOR,
    EXACT_PERMIT2_PROXY,
    IDENTITY_REGISTRY_ADDRESS,
    MULTICALL3_ADDRESS,
    PERMIT2,
    PERMIT2_DEPOSIT_COLLECTOR,
    REPUTATION_REGISTRY_ADDRESS,
    TOKENS,
    UPTO_PERMIT2_PROXY,
    load_artifact,
)
from .eip712 import Authorization, address_of_key, canonical, checksum, domain_separator, recover_signer
from .hashing import keccak
from .state_verify import Prediction, predict
from .token import selector

INITIAL_BASE_FEE = GWEI  # py-evm's London genesis
# Gas of the token's deployment on py-evm with its default name, symbol and version: the ledger
# does not run the deployment, but replays its effect on the base fee (other metadata moves the
# real figure by a few thousand gas, and the base fee after it by a few parts in a million).
DEPLOYMENT_GAS = {"usdc": 1_524_602, "pyusd": 1_512_634}
ELASTICITY = 2
BASE_FEE_CHANGE_DENOMINATOR = 8
TX_GAS = 21_000
CALLDATA_ZERO, CALLDATA_NONZERO = 4, 16
FLOOR_PER_TOKEN = 10  # EIP-7623 (Prague): calldata floor, per token (a non-zero byte is 4 tokens)
REFUND_QUOTIENT = 5

# Gas that does not depend on storage, per exit point of each function: opcodes, memory, the
# ecrecover precompile, logs. Measured on py-evm (Prague, Vyper 0.4.3 code) by
# ``python -m x402sim.evm.ledger_gas``; the differential test holds the ledger to them. The rows both
# tokens share...
_SHARED_GAS = {
    "approve": 2235,
    "approve:to_zero": 464,
    "batch.claim.row|claim": 9455,
    "batch.claim.row|claim:payer": 9555,
    "batch.claim.row|skip": 1907,
    "batch.claim.second": 5,
    "batch.claim.unrun": 565,
    "batch.claimWithSignature.hash": 1755,
    "batch.claimWithSignature.row|claim": 8780,
    "batch.claimWithSignature.row|claim:payer": 8880,
    "batch.claimWithSignature.row|skip": 1232,
    "batch.claimWithSignature.unrun": 0,
    "batch.claimWithSignature|ClaimExceedsBalance": 24116,
    "batch.claimWithSignature|ClaimExceedsCeiling": 24084,
    "batch.claimWithSignature|ECDSAInvalidSignature": 28652,
    "batch.claimWithSignature|ECDSAInvalidSignatureS": 25602,
    "batch.claimWithSignature|EmptyBatch": 16228,
    "batch.claimWithSignature|InvalidSignature": 28743,
    "batch.claimWithSignature|InvalidSignature:high_s": 19576,
    "batch.claimWithSignature|InvalidSignature:no_signer": 22787,
    "batch.claimWithSignature|InvalidSignature:payer:high_s": 25613,
    "batch.claimWithSignature|InvalidSignature:payer:no_signer": 28824,
    "batch.claimWithSignature|InvalidSignature:payer:wrong": 28843,
    "batch.claimWithSignature|InvalidSignature:wrong": 22806,
    "batch.claimWithSignature|NotReceiverAuthorizer": 23033,
    "batch.claimWithSignature|ok": 22933,
    "batch.claim|ClaimExceedsBalance": 16029,
    "batch.claim|ClaimExceedsCeiling": 15997,
    "batch.claim|ECDSAInvalidSignature": 20565,
    "batch.claim|ECDSAInvalidSignatureS": 17515,
    "batch.claim|EmptyBatch": 13860,
    "batch.claim|InvalidSignature": 20656,
    "batch.claim|InvalidSignature:payer:high_s": 17526,
    "batch.claim|InvalidSignature:payer:no_signer": 20737,
    "batch.claim|InvalidSignature:payer:wrong": 20756,
    "batch.claim|NotAuthorizedToClaim": 14945,
    "batch.claim|ok": 14171,
    "batch.deposit.permit2.permit|permit": 7471,
    "batch.deposit.permit2.permit|permit:expired": 4508,
    "batch.deposit.permit2.permit|permit:invalid_s": 5542,
    "batch.deposit.permit2.permit|permit:invalid_v": 5598,
    "batch.deposit.permit2.permit|permit:no_signer": 8528,
    "batch.deposit.permit2.permit|permit:wrong_signer": 8577,
    "batch.deposit.permit2|InvalidNonce": 8476,
    "batch.deposit.permit2|InvalidSignature": 15164,
    "batch.deposit.permit2|InvalidSigner": 15193,
    "batch.deposit.permit2|Permit2612AmountMismatch": 5762,
    "batch.deposit.permit2|SignatureExpired": 8152,
    "batch.deposit.permit2|ok|ok": 21168,
    "batch.deposit.permit2|ok|ok:created": 24150,
    "batch.deposit.permit2|transfer_from:exceeds_allowance": 16424,
    "batch.deposit.permit2|transfer_from:exceeds_balance": 16589,
    "batch.deposit.word": 3,
    "batch.deposit|DepositOverflow": 2274,
    "batch.deposit|InvalidChannel:payer": 1123,
    "batch.deposit|InvalidChannel:receiver": 1143,
    "batch.deposit|InvalidChannel:receiverAuthorizer": 1163,
    "batch.deposit|InvalidChannel:token": 1183,
    "batch.deposit|InvalidCollector": 1295,
    "batch.deposit|WithdrawDelayOutOfRange:high": 1255,
    "batch.deposit|WithdrawDelayOutOfRange:low": 1233,
    "batch.deposit|ZeroDeposit": 1275,
    "batch.finalizeWithdraw.second": 22,
    "batch.finalizeWithdraw|NotAuthorizedToFinalizeWithdraw": 899,
    "batch.finalizeWithdraw|WithdrawDelayNotElapsed": 1906,
    "batch.finalizeWithdraw|WithdrawalNotPending": 1831,
    "batch.finalizeWithdraw|empty": 4429,
    "batch.finalizeWithdraw|ok": 7446,
    "batch.finalizeWithdraw|ok:closed": 10448,
    "batch.initiateWithdraw.second": 22,
    "batch.initiateWithdraw|InvalidChannel": 823,
    "batch.initiateWithdraw|NothingToWithdraw": 843,
    "batch.initiateWithdraw|WithdrawAmountExceedsAvailable": 2070,
    "batch.initiateWithdraw|WithdrawalAlreadyPending": 1769,
    "batch.initiateWithdraw|ok": 4044,
    "batch.multicall.call": 606,
    "batch.multicall.first": 1306,
    "batch.multicall.result": 212,
    "batch.multicall.revert_word": 15,
    "batch.multicall.unrun": 145,
    "batch.multicall.unrun_word": 3,
    "batch.multicall.word": 6,
    "batch.multicall|fail": 6994,
    "batch.multicall|ok": 6626,
    "batch.refund.second": 5,
    "batch.refundWithSignature|InvalidRefundNonce": 2079,
    "batch.refundWithSignature|InvalidSignature:high_s": 3570,
    "batch.refundWithSignature|InvalidSignature:no_signer": 6781,
    "batch.refundWithSignature|InvalidSignature:wrong": 6800,
    "batch.refundWithSignature|ZeroRefund": 6872,
    "batch.refundWithSignature|nothing": 8119,
    "batch.refundWithSignature|ok": 13407,
    "batch.refundWithSignature|ok:cleared": 13508,
    "batch.refundWithSignature|ok:cleared:closed": 16490,
    "batch.refundWithSignature|ok:closed": 16389,
    "batch.refundWithSignature|ok:reduced": 13638,
    "batch.refund|NotAuthorizedToRefund": 1081,
    "batch.refund|ZeroRefund": 1154,
    "batch.refund|nothing": 2401,
    "batch.refund|ok": 7689,
    "batch.refund|ok:cleared": 7790,
    "batch.refund|ok:cleared:closed": 10772,
    "batch.refund|ok:closed": 10671,
    "batch.refund|ok:reduced": 7920,
    "batch.settle|nothing": 1150,
    "batch.settle|ok": 6566,
    "collect.erc3009|OnlyX402BatchSettlement": 732,
    "collect.permit2|OnlyX402BatchSettlement": 789,
    "collect.word": 3,
    "exact.settleWithPermit|Permit2612AmountMismatch": 1156,
    "exact.settleWithPermit|permit:expired|ok": 24576,
    "exact.settleWithPermit|permit:invalid_s|ok": 25610,
    "exact.settleWithPermit|permit:invalid_v|ok": 25666,
    "exact.settleWithPermit|permit:no_signer|ok": 28596,
    "exact.settleWithPermit|permit:wrong_signer|ok": 28645,
    "exact.settleWithPermit|permit|ok": 27539,
    "exact.settle|InvalidAmount": 1357,
    "exact.settle|InvalidDestination": 1397,
    "exact.settle|InvalidNonce": 6923,
    "exact.settle|InvalidOwner": 1377,
    "exact.settle|InvalidSignature": 13611,
    "exact.settle|InvalidSigner": 13640,
    "exact.settle|PaymentTooEarly": 1425,
    "exact.settle|SignatureExpired": 6596,
    "exact.settle|ok": 20292,
    "exact.settle|transfer_from:exceeds_allowance": 17362,
    "exact.settle|transfer_from:exceeds_balance": 17527,
    "invalidate_unordered_nonces": 1958,
    "mint": 2194,
    "mint_not_minter": 390,
    "mint_to_zero": 410,
    "mint_zero": 430,
    "permit": 6538,
    "permit:expired": 530,
    "permit:invalid_s": 1293,
    "permit:invalid_v": 1349,
    "permit:no_signer": 4550,
    "permit:to_zero": 4785,
    "permit:wrong_signer": 4599,
    "transfer": 2437,
    "transfer:exceeds_balance": 569,
    "transfer:to_zero": 464,
    "transfer_from": 2836,
    "transfer_from:exceeds_allowance": 615,
    "transfer_from:exceeds_balance": 780,
    "transfer_from:from_zero": 655,
    "transfer_from:to_zero": 675,
    "upto.settleWithPermit|AmountExceedsPermitted": 1192,
    "upto.settleWithPermit|Permit2612AmountMismatch": 1333,
    "upto.settleWithPermit|UnauthorizedFacilitator": 1217,
    "upto.settleWithPermit|permit:expired|ok": 24935,
    "upto.settleWithPermit|permit:invalid_s|ok": 25969,
    "upto.settleWithPermit|permit:invalid_v|ok": 26025,
    "upto.settleWithPermit|permit:no_signer|ok": 28955,
    "upto.settleWithPermit|permit:wrong_signer|ok": 29004,
    "upto.settleWithPermit|permit|ok": 27898,
    "upto.settle|AmountExceedsPermitted": 1117,
    "upto.settle|InvalidAmount": 1714,
    "upto.settle|InvalidDestination": 1754,
    "upto.settle|InvalidNonce": 7280,
    "upto.settle|InvalidOwner": 1734,
    "upto.settle|InvalidSignature": 13968,
    "upto.settle|InvalidSigner": 13997,
    "upto.settle|PaymentTooEarly": 1782,
    "upto.settle|SignatureExpired": 6953,
    "upto.settle|UnauthorizedFacilitator": 1142,
    "upto.settle|ok": 20649,
    "upto.settle|transfer_from:exceeds_allowance": 17719,
    "upto.settle|transfer_from:exceeds_balance": 17884,
}
# ...and the rows where the tokens' code differs
_TOKEN_GAS = {
    "usdc": {
        "batch.deposit.erc3009|receive:exceeds_balance": 12491,
        "batch.deposit.erc3009|receive:expired": 6376,
        "batch.deposit.erc3009|receive:invalid_s": 7273,
        "batch.deposit.erc3009|receive:invalid_v": 7329,
        "batch.deposit.erc3009|receive:no_signer": 10524,
        "batch.deposit.erc3009|receive:not_yet_valid": 6351,
        "batch.deposit.erc3009|receive:used": 6565,
        "batch.deposit.erc3009|receive:wrong_signer": 10573,
        "batch.deposit.erc3009|receive|transfer|ok": 20014,
        "batch.deposit.erc3009|receive|transfer|ok:created": 22996,
        "cancel": 6088,
        "cancel_invalid_s": 1298,
        "cancel_invalid_v": 1354,
        "cancel_no_signer": 4555,
        "cancel_used": 654,
        "cancel_wrong_signer": 4613,
        "expired": 595,
        "invalid_s": 1492,
        "invalid_v": 1548,
        "no_signer": 4749,
        "not_yet_valid": 570,
        "transfer_with_authorization": 8560,
        "transfer_with_authorization:exceeds_balance": 6710,
        "transfer_with_authorization:to_zero": 6605,
        "used": 784,
        "wrong_signer": 4798,
    },
    "pyusd": {
        "already_used": 2194,
        "batch.deposit.erc3009|receive:already_used|transfer:exceeds_balance": 8944,
        "batch.deposit.erc3009|receive:already_used|transfer|ok": 13648,
        "batch.deposit.erc3009|receive:already_used|transfer|ok:created": 16630,
        "batch.deposit.erc3009|receive:exceeds_balance": 12538,
        "batch.deposit.erc3009|receive:expired": 6370,
        "batch.deposit.erc3009|receive:invalid_s": 7320,
        "batch.deposit.erc3009|receive:invalid_v": 7376,
        "batch.deposit.erc3009|receive:no_signer": 10571,
        "batch.deposit.erc3009|receive:not_yet_valid": 6345,
        "batch.deposit.erc3009|receive:wrong_signer": 10620,
        "batch.deposit.erc3009|receive|transfer|ok": 20061,
        "batch.deposit.erc3009|receive|transfer|ok:created": 23043,
        "cancel": 6122,
        "cancel_already_used": 2041,
        "cancel_invalid_s": 1331,
        "cancel_invalid_v": 1387,
        "cancel_no_signer": 4588,
        "cancel_wrong_signer": 4646,
        "expired": 589,
        "invalid_s": 1539,
        "invalid_v": 1595,
        "no_signer": 4796,
        "not_yet_valid": 564,
        "transfer_with_authorization": 8607,
        "transfer_with_authorization:exceeds_balance": 6757,
        "transfer_with_authorization:to_zero": 6652,
        "wrong_signer": 4845,
    },
}
EXECUTION_GAS: dict[str, dict[str, int]] = {t: {**_SHARED_GAS, **rows} for t, rows in _TOKEN_GAS.items()}

SELECTORS = {
    selector(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
    ): (
        "transferWithAuthorization",
        9,
    ),
    selector("cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)"): ("cancelAuthorization", 5),
    selector("transfer(address,uint256)"): ("transfer", 2),
    selector("mint(address,uint256)"): ("mint", 2),
    selector("approve(address,uint256)"): ("approve", 2),
    selector("transferFrom(address,address,uint256)"): ("transferFrom", 3),
    selector("permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"): ("permit", 7),
}
_TYPES = {
    "transferWithAuthorization": "aauuubvbb",
    "cancelAuthorization": "abvbb",
    "transfer": "au",
    "mint": "au",
    "approve": "au",
    "transferFrom": "aau",
    "permit": "aauuvbb",
}
VIEWS = {
    selector("balanceOf(address)"): "balanceOf",
    selector("authorizationState(address,bytes32)"): "authorizationState",
    selector("allowance(address,address)"): "allowance",
    selector("nonces(address)"): "nonces",
    selector("DOMAIN_SEPARATOR()"): "DOMAIN_SEPARATOR",
    selector("totalSupply()"): "totalSupply",
    selector("name()"): "name",
    selector("version()"): "version",
    selector("decimals()"): "decimals",
}

# The proxies' ABI (eth-abi spelling): PermitTransferFrom, EIP2612Permit, the two witnesses.
_PERMIT = "((address,uint256),uint256,uint256)"
_PERMIT_2612 = "(uint256,uint256,bytes32,bytes32,uint8)"
_EXACT = (_PERMIT, "address", "(address,uint256)", "bytes")
_UPTO = (_PERMIT, "uint256", "address", "(address,address,uint256)", "bytes")
# selector -> (upto, with an EIP-2612 permit, argument types)
PROXY_CALLS: dict[bytes, tuple[bool, bool, tuple[str, ...]]] = {
    selector(f"settle({','.join(_EXACT)})"): (False, False, _EXACT),
    selector(f"settleWithPermit({','.join((_PERMIT_2612, *_EXACT))})"): (
        False,
        True,
        (_PERMIT_2612, *_EXACT),
    ),
    selector(f"settle({','.join(_UPTO)})"): (True, False, _UPTO),
    selector(f"settleWithPermit({','.join((_PERMIT_2612, *_UPTO))})"): (True, True, (_PERMIT_2612, *_UPTO)),
}
INVALIDATE_NONCES = selector("invalidateUnorderedNonces(uint256,uint256)")
NONCE_BITMAP = selector("nonceBitmap(address,uint256)")
DOMAIN_SEPARATOR = selector("DOMAIN_SEPARATOR()")
# Genesis contracts of LocalChain: an owner among them would be asked for an EIP-1271 signature.
_GENESIS_CONTRACTS = {
    p2.PERMIT2,
    p2.EXACT_PROXY,
    p2.UPTO_PROXY,
    *br.CONTRACTS,
    *(
        bytes(canonical(a))
        for a in (MULTICALL3_ADDRESS, IDENTITY_REGISTRY_ADDRESS, REPUTATION_REGISTRY_ADDRESS)
    ),
}

# A call: (function name, its decoded arguments: 20-byte addresses, ints, 32-byte words, a uint8,
# or one ``permit2_rules.Settlement`` for a proxy).
_Call = tuple[str, list[Any]]


@dataclass
class _Tx:
    raw: bytes
    hash: bytes
    sender: str
    nonce: int
    max_priority_fee: int
    max_fee: int
    gas: int
    to: bytes
    value: int
    data: bytes
    call: _Call | None  # (function, args) for a call to the token, None for an ether transfer

    @property
    def cost(self) -> int:
        return self.gas * self.max_fee + self.value


class _Storage:
    """The token's storage words (``fiat_rules`` keys), 0 when absent."""

    def __init__(self) -> None:
        self.words: dict[bytes, int] = {}

    def get(self, key: bytes) -> int:
        return self.words.get(key, 0)


@dataclass
class LedgerChain(ChainConfig, ChainBasics):
    """The ledger backend: ``LocalChain``'s arguments and surface, the token in Python."""

    prune_authorizations_after: int | None = None
    now: int = field(init=False)

    def __post_init__(self) -> None:
        if self.token not in TOKENS:
            raise ValueError(f"unknown token {self.token!r}; expected one of {', '.join(TOKENS)}")
        name, symbol, version = TOKEN_METADATA[self.token]
        self.token_name = name if self.token_name is None else self.token_name
        self.token_symbol = symbol if self.token_symbol is None else self.token_symbol
        self.token_version = version if self.token_version is None else self.token_version
        self._rng = random.Random(f"x402sim-ledger:{self.seed}")
        self._key_counter = 0
        self.bank_key = self._derive_key("bank")
        self.bank = address_of_key(self.bank_key)
        self.minter_key = self._derive_key("minter")
        self.minter = address_of_key(self.minter_key)
        self.now = self.start_time
        self.submit_hook: Callable[[bytes], None] | None = None
        self._eth: dict[str, int] = {self.bank: 10**9 * ETHER, self.minter: 1_000 * ETHER}
        self._nonces: dict[str, int] = {self.minter: 1}  # the token's deployment used nonce 0
        deployed = checksum(keccak(rlpcodec.encode([canonical(self.minter), 0]))[-20:])  # CREATE at nonce 0
        self.usdc = to_checksum_address(self.token_address) if self.token_address else deployed
        self._token_bytes = to_canonical_address(self.usdc)
        self._rules = fr.Token(
            self.token,
            domain_separator(self.token_name, self.token_version, self.chain_id, self.usdc.lower()),
            to_canonical_address(self.minter),
        )
        self._context = p2.Context(self._rules, self._token_bytes, p2.permit2_domain_separator(self.chain_id))
        self._batch = br.Context(
            self._context,
            batch_domain_separator(self.chain_id),
            frozenset({*_GENESIS_CONTRACTS, self._token_bytes}),
        )
        self._bundle_credit: dict[str, int] = {}  # ether a bundle being taken sends each address
        self._code = (
            load_artifact(self.token).runtime_bytecode
            + keccak(self.token_name.encode())
            + keccak(self.token_version.encode())
        )
        self._storage = _Storage()
        self._expiry: list[tuple[int, bytes]] = []  # heap of (validBefore, authorization key)
        self._pending: list[_Tx] = []
        self._pending_by_sender: dict[str, tuple[int, int]] = {}  # sender -> (count, reserved wei)
        self._receipts: dict[bytes, Receipt] = {}
        self._number = 2 if self.token_address else 1  # genesis, the deployment, the move
        self._head_hash = keccak(f"x402sim-ledger:{self.seed}:{self._number}".encode())
        self._timestamp = self.start_time
        # The base fee as py-evm leaves it: genesis, the deployment block, the move block.
        target = self.block_gas_limit // ELASTICITY
        deployment = _next_base_fee(INITIAL_BASE_FEE, 0, target)
        self._next_base_fee = _next_base_fee(deployment, DEPLOYMENT_GAS[self.token], target)
        if self.token_address:
            self._next_base_fee = _next_base_fee(self._next_base_fee, 0, target)
        self.multicall = None

    # -- transactions -----------------------------------------------------------------------------

    def send_raw_transaction(self, raw: bytes) -> bytes:
        if self.submit_hook is not None:
            self.submit_hook(raw)
        tx = self._decode(raw)
        expected = self.pending_nonce(tx.sender)
        if tx.nonce < self.nonce(tx.sender):
            raise ChainError(
                f"nonce too low: {tx.nonce} of {tx.sender}, its next nonce is {self.nonce(tx.sender)}"
            )
        if tx.nonce < expected:
            raise ChainError(
                f"nonce {tx.nonce} of {tx.sender} is already pending (replacement is not supported)"
            )
        if tx.nonce > expected:
            raise ChainError(
                f"nonce {tx.nonce} of {tx.sender} is ahead of {expected}: the ledger backend queues none"
            )
        if tx.gas > self.block_gas_limit:
            raise ChainError(f"gas {tx.gas} exceeds the block gas limit {self.block_gas_limit}")
        if tx.max_fee < self.base_fee:
            raise ChainError(f"max fee per gas {tx.max_fee} is below the base fee {self.base_fee}")
        count, reserved = self._pending_by_sender.get(tx.sender, (0, 0))
        if self.eth_balance(tx.sender) + self._bundle_credit.get(tx.sender, 0) < reserved + tx.cost:
            raise ChainError(f"{tx.sender} has too little ether for gas and value")
        if tx.gas < self._intrinsic(tx.data)[1]:
            raise ChainError(f"intrinsic gas too low: {tx.gas}")
        self._pending.append(tx)
        self._pending_by_sender[tx.sender] = (count + 1, reserved + tx.cost)
        return tx.hash

    def send_bundle(self, raws: list[bytes]) -> list[bytes]:
        """Take signed transactions to be mined in this order, in the next block, all or none, as
        ``LocalChain.send_bundle``: a transaction may spend ether that an earlier one of the bundle
        sends it. ``ChainError`` names the first refused; then none is kept."""
        pending, by_sender = list(self._pending), dict(self._pending_by_sender)
        try:
            hashes = []
            for raw in raws:
                hashes.append(self.send_raw_transaction(raw))
                tx = self._pending[-1]
                if tx.value:
                    to = checksum(tx.to)
                    self._bundle_credit[to] = self._bundle_credit.get(to, 0) + tx.value
            return hashes
        except ChainError:
            self._pending, self._pending_by_sender = pending, by_sender
            raise
        finally:
            self._bundle_credit = {}

    def _decode(self, raw: bytes) -> _Tx:
        if not raw or raw[0] != 2:
            raise ChainError(
                "invalid transaction: the ledger backend takes EIP-1559 (type 2) transactions only"
            )
        body = raw[1:]
        try:
            items = rlpcodec.split(body)
            if len(items) != 12 or items[8][2] is not True:
                raise ValueError("an EIP-1559 transaction has 12 fields, the ninth a list")
            # the ninth field, the access list, is None here and is read from ``items`` only
            fields = cast(
                "list[bytes]", [None if is_list else rlpcodec.payload(body, a, b) for a, b, is_list in items]
            )
        except ValueError as exc:
            raise ChainError(f"invalid transaction: {exc}") from exc
        chain_id, nonce, tip, cap, gas = (_int(f) for f in fields[:5])
        to, value, data, y, r, s = (
            fields[5],
            _int(fields[6]),
            fields[7],
            _int(fields[9]),
            fields[10],
            fields[11],
        )
        if chain_id != self.chain_id:
            raise ChainError(f"transaction chain id {chain_id} is not {self.chain_id}")
        if items[8][1] - items[8][0] != 1:
            raise ChainError("invalid transaction: the ledger backend models no access lists")
        if y not in (0, 1) or len(r) > 32 or len(s) > 32:
            raise ChainError("invalid sender: the signature does not recover to an address")
        # The signed hash covers the first nine fields, re-listed: their bytes are taken as received.
        start, end = items[0][0], items[8][1]
        digest = keccak(b"\x02" + rlpcodec.list_header(end - start) + body[start:end])
        signer = recover_signer(digest, 27 + y, r.rjust(32, b"\x00"), s.rjust(32, b"\x00"))
        if signer is None:
            raise ChainError("invalid sender: the signature does not recover to an address")
        if len(to) != 20:
            raise ChainError("invalid transaction: the ledger backend creates no contracts")
        call = self._parse(to, data)
        if call is not None and value:
            raise ChainError(f"the ledger backend models no ether sent to the contract at {checksum(to)}")
        return _Tx(raw, keccak(raw), checksum(signer), nonce, tip, cap, gas, to, value, data, call)

    def _parse(self, to: bytes, data: bytes) -> _Call | None:
        """The modelled call that ``data`` makes to ``to``; None for an ether transfer to an account."""
        if to == self._token_bytes:
            return self._parse_call(data)
        if to == p2.PERMIT2:
            if data[:4] != INVALIDATE_NONCES:
                raise ChainError(f"the ledger backend does not model Permit2 call 0x{data[:4].hex()}")
            word, mask = self._decode_args("invalidateUnorderedNonces", ("uint256", "uint256"), data)
            return "invalidateUnorderedNonces", [word, mask]
        if to in (p2.EXACT_PROXY, p2.UPTO_PROXY):
            return "settle", [self._parse_settlement(to, data)]
        if to in br.CONTRACTS:
            return "batch", [br.parse(to, data, self._batch)]
        if data or to in _GENESIS_CONTRACTS:
            raise ChainError(f"the ledger backend models no contract at {checksum(to)}")
        return None

    @staticmethod
    def _decode_args(function: str, types: tuple[str, ...], data: bytes) -> tuple[Any, ...]:
        """ABI-decode ``data`` after its selector, refusing any encoding but the canonical one."""
        try:
            args = decode(list(types), data[4:])
            canonical_form = encode(list(types), list(args))
        except Exception as exc:
            raise ChainError(f"{function}: calldata that does not decode: {exc}") from exc
        if canonical_form != data[4:]:
            raise ChainError(f"{function}: calldata not in the canonical ABI encoding")
        return tuple(args)

    def _parse_settlement(self, to: bytes, data: bytes) -> p2.Settlement:
        entry = PROXY_CALLS.get(data[:4])
        upto = to == p2.UPTO_PROXY
        if entry is None or entry[0] != upto:
            raise ChainError(f"the ledger backend does not model proxy call 0x{data[:4].hex()}")
        _, with_permit, types = entry
        args = list(self._decode_args("settleWithPermit" if with_permit else "settle", types, data))
        permit2612 = None
        if with_permit:
            value, deadline, r, s, v = args.pop(0)
            permit2612 = (value, deadline, r, s, v)
        (token, permitted), nonce, deadline = args.pop(0)
        amount = args.pop(0) if upto else permitted
        owner, witness, signature = args
        call = p2.Settlement(
            upto=upto,
            permit=p2.PermitTransferFrom(bytes(canonical(token)), permitted, nonce, deadline),
            amount=amount,
            owner=bytes(canonical(owner)),
            to=bytes(canonical(witness[0])),
            facilitator=bytes(canonical(witness[1])) if upto else None,
            valid_after=witness[-1],
            signature=signature,
            permit2612=permit2612,
        )
        if call.permit.token != self._token_bytes:
            raise ChainError(f"settle: the ledger backend models no token but {self.usdc}")
        if len(signature) != 65:
            raise ChainError("settle: the ledger backend models 65-byte signatures only")
        if call.owner in _GENESIS_CONTRACTS or call.owner == self._token_bytes:
            raise ChainError("settle: the ledger backend models no owner with code (EIP-1271)")
        return call

    def _parse_call(self, data: bytes) -> _Call:
        entry = SELECTORS.get(data[:4])
        if entry is None:
            raise ChainError(f"the ledger backend does not model token call 0x{data[:4].hex()}")
        function, n = entry
        words = data[4:]
        if len(words) != 32 * n:
            raise ChainError(f"{function}: calldata of {len(words)} bytes, expected {32 * n}")
        args = [words[32 * i : 32 * i + 32] for i in range(n)]
        types = _TYPES[function]
        decoded: list[Any] = []
        for kind, word in zip(types, args, strict=True):
            if kind == "a":
                if any(word[:12]):
                    raise ChainError(f"{function}: an address argument with high bits set")
                decoded.append(word[12:])
            elif kind == "v":
                if any(word[:31]):
                    raise ChainError(f"{function}: a uint8 argument out of range")
                decoded.append(word[31])
            elif kind == "u":
                decoded.append(int.from_bytes(word, "big"))
            else:
                decoded.append(word)
        return function, decoded

    def pending_nonce(self, address: str) -> int:
        sender = checksum(address)
        return self.nonce(sender) + self._pending_by_sender.get(sender, (0, 0))[0]

    def nonce(self, address: str) -> int:
        return self._nonces.get(checksum(address), 0)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def queued_count(self) -> int:
        return 0

    # -- blocks -------------------------------------------------------------------------------------

    def mine(self) -> Block:
        """Mine one block at ``now`` holding every pending transaction that fits."""
        timestamp = max(self.now, self._timestamp)
        base_fee = self._next_base_fee
        number = self._number + 1
        block_hash = keccak(self._head_hash + number.to_bytes(8, "big") + timestamp.to_bytes(8, "big"))
        included, kept, declared, blocked = [], [], 0, set()
        for tx in self._pending:
            fits = declared + tx.gas <= self.block_gas_limit and tx.max_fee >= base_fee
            if fits and tx.sender not in blocked:
                included.append(tx)
                declared += tx.gas
            else:
                blocked.add(tx.sender)
                kept.append(tx)
        self._pending = kept
        self._pending_by_sender = {}
        for tx in kept:
            count, reserved = self._pending_by_sender.get(tx.sender, (0, 0))
            self._pending_by_sender[tx.sender] = (count + 1, reserved + tx.cost)
        gas_used = 0
        for index, tx in enumerate(included):
            receipt = self._execute(tx, index, number, timestamp, base_fee)
            self._receipts[tx.hash] = receipt
            gas_used += receipt.gas_used
        self._number, self._head_hash, self._timestamp = number, block_hash, timestamp
        self._next_base_fee = _next_base_fee(base_fee, gas_used, self.block_gas_limit // ELASTICITY)
        self.now = max(self.now, timestamp)
        if self.prune_authorizations_after is not None:
            self._prune(timestamp - self.prune_authorizations_after)
        return Block(number, timestamp, block_hash, tuple(tx.hash for tx in included), gas_used, base_fee)

    def _execute(self, tx: _Tx, index: int, number: int, timestamp: int, base_fee: int) -> Receipt:
        price = min(tx.max_fee, base_fee + tx.max_priority_fee)
        self._nonces[tx.sender] = tx.nonce + 1
        frame, reason, path = None, None, "ether"
        intrinsic, floor = self._intrinsic(tx.data)
        if tx.call is not None:
            frame = fr.Frame(self._storage)
            reason, path = self._run(frame, tx.call, canonical(tx.sender), timestamp)
        execution = 0 if frame is None else _execution_gas(EXECUTION_GAS[self.token], path) + frame.gas
        used = intrinsic + execution
        out_of_gas = used > tx.gas
        if out_of_gas:
            used, reason = tx.gas, "OutOfGas"
        elif reason is None and frame is not None:
            used -= min(frame.refund, used // REFUND_QUOTIENT)
        used = max(used, floor) if not out_of_gas else used
        ok = reason is None
        fee = used * price
        self._eth[tx.sender] = self.eth_balance(tx.sender) - fee - (tx.value if ok else 0)
        logs: tuple[Log, ...] = ()
        if ok:
            if tx.value:
                target = checksum(tx.to)
                self._eth[target] = self.eth_balance(target) + tx.value
            if frame is not None:
                self._commit(frame, cast(_Call, tx.call))  # a frame is made for a token call only
                logs = tuple(
                    Log(self.usdc if emitter is None else checksum(emitter), topics, data)
                    for emitter, topics, data in frame.logs
                )
        return Receipt(
            tx_hash=tx.hash,
            sender=tx.sender,
            to=checksum(tx.to),
            success=ok,
            gas_used=used,
            effective_gas_price=price,
            block_number=number,
            block_timestamp=timestamp,
            index=index,
            logs=logs,
            revert_reason=reason,
        )

    def _run(self, frame: fr.Frame, call: _Call, sender: bytes, timestamp: int) -> tuple[str | None, str]:
        function, a = call
        # recover_signer goes in the spread: mypy cannot count ``*a``, and refuses arguments after it
        if function == "transferWithAuthorization":
            return fr.transfer_with_authorization(frame, self._rules, timestamp, *(*a, recover_signer))
        if function == "cancelAuthorization":
            return fr.cancel_authorization(frame, self._rules, *(*a, recover_signer))
        if function == "transfer":
            return fr.transfer(frame, sender, *a)
        if function == "approve":
            return p2.approve(frame, sender, *a)
        if function == "transferFrom":
            return p2.transfer_from(frame, sender, *a)
        if function == "permit":
            return p2.permit(frame, self._rules, timestamp, *(*a, recover_signer))
        if function == "invalidateUnorderedNonces":
            return p2.invalidate_unordered_nonces(frame, sender, *a)
        if function == "settle":
            # a transaction's sender is also its origin
            return p2.settle(frame, self._context, timestamp, sender, sender, a[0], recover_signer)
        if function == "batch":
            return br.run(frame, self._batch, timestamp, sender, a[0], recover_signer)
        return fr.mint(frame, self._rules, sender, *a)

    def _commit(self, frame: fr.Frame, call: _Call) -> None:
        self._storage.words.update(frame.writes)
        if self.prune_authorizations_after is not None and call[0] == "transferWithAuthorization":
            from_, valid_before, nonce = call[1][0], call[1][4], call[1][5]
            heapq.heappush(self._expiry, (valid_before, fr.authorization_key(from_, nonce)))

    def _prune(self, before: int) -> None:
        expiry, words = self._expiry, self._storage.words
        while expiry and expiry[0][0] < before:
            words.pop(heapq.heappop(expiry)[1], None)

    @staticmethod
    def _intrinsic(data: bytes) -> tuple[int, int]:
        """(intrinsic gas, EIP-7623 floor) of a call with ``data``."""
        zeros = data.count(0)
        nonzero = len(data) - zeros
        intrinsic = TX_GAS + CALLDATA_ZERO * zeros + CALLDATA_NONZERO * nonzero
        return intrinsic, TX_GAS + FLOOR_PER_TOKEN * (zeros + 4 * nonzero)

    # -- reads ------------------------------------------------------------------------------------

    @property
    def block_number(self) -> int:
        return self._number

    @property
    def latest_timestamp(self) -> int:
        return self._timestamp

    @property
    def base_fee(self) -> int:
        """Base fee of the next block."""
        return self._next_base_fee

    def eth_balance(self, address: str) -> int:
        return self._eth.get(checksum(address), 0)

    def code(self, address: str) -> bytes:
        where = bytes(canonical(address))
        if where == self._token_bytes:
            return self._code
        names = {
            p2.PERMIT2: PERMIT2,
            p2.EXACT_PROXY: EXACT_PERMIT2_PROXY,
            p2.UPTO_PROXY: UPTO_PERMIT2_PROXY,
            br.BATCH: BATCH_SETTLEMENT,
            br.ERC3009_COLLECTOR: ERC3009_DEPOSIT_COLLECTOR,
            br.PERMIT2_COLLECTOR: PERMIT2_DEPOSIT_COLLECTOR,
        }
        return load_artifact(names[where]).runtime_bytecode if where in names else b""

    def token_variant(self, address: str) -> str | None:
        return self.token if canonical(address) == self._token_bytes else None

    def _token(self, token: str | None) -> None:
        if token is not None and canonical(token) != self._token_bytes:
            raise ChainError(f"no token at {token} on the ledger backend")

    def balance_of(self, address: str, token: str | None = None) -> int:
        self._token(token)
        return self._storage.get(fr.balance_key(canonical(address)))

    def total_supply(self, token: str | None = None) -> int:
        self._token(token)
        return self._storage.get(fr.SUPPLY)

    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool:
        self._token(token)
        return bool(self._storage.get(fr.authorization_key(canonical(authorizer), nonce)))

    def name_of(self, token: str | None = None) -> str:
        self._token(token)
        return cast(str, self.token_name)  # set by __post_init__

    def version_of(self, token: str | None = None) -> str:
        self._token(token)
        return cast(str, self.token_version)  # set by __post_init__

    def token_state(self, asset: str) -> LedgerTokenState | None:
        """The token's state for ``state_verify`` (None for any other address)."""
        if canonical(asset) != self._token_bytes:
            return None
        return LedgerTokenState(self)

    def call(
        self,
        to: str,
        data: bytes,
        *,
        sender: str = "0x" + "00" * 20,
        timestamp: int | None = None,
        **_: object,
    ) -> CallResult:
        """Simulate a call to the token, Permit2 or a proxy in the next block (nothing is kept);
        views answer too (their gas is not modelled: 0)."""
        where = bytes(canonical(to))
        stamp = max(timestamp if timestamp is not None else self.now, self._timestamp)
        if where == self._token_bytes:
            view = VIEWS.get(data[:4])
            if view is not None:
                return CallResult(True, self._view(view, data[4:]), None, 0)
        elif where == p2.PERMIT2 and data[:4] == NONCE_BITMAP and len(data) == 68:
            word = self._storage.get(p2.bitmap_key(data[16:36], int.from_bytes(data[36:68], "big")))
            return CallResult(True, word.to_bytes(32, "big"), None, 0)
        elif where == p2.PERMIT2 and data == DOMAIN_SEPARATOR:
            return CallResult(True, self._context.permit2_domain, None, 0)
        elif where == br.BATCH and data[:4] in br.VIEWS:
            return CallResult(True, br.view(self._storage, self._batch, data), None, 0)
        elif where not in (p2.PERMIT2, p2.EXACT_PROXY, p2.UPTO_PROXY, *br.CONTRACTS):
            return CallResult(True, b"", None, 0)  # no code: a call to an account succeeds, empty
        try:
            reason, path, frame = self.exit_point(to, data, sender=sender, timestamp=stamp)
        except ChainError:
            return CallResult(False, b"", fr.BARE_REVERT, 0, reverted=True)
        try:
            gas = _execution_gas(EXECUTION_GAS[self.token], path) + frame.gas
        except KeyError:
            gas = frame.gas  # an exit point not calibrated (the calibration itself runs with none)
        if reason is None:
            return CallResult(True, br.call_output(path), None, gas)
        return CallResult(False, b"", reason, gas, reverted=True)

    def exit_point(
        self, to: str, data: bytes, *, sender: str, timestamp: int
    ) -> tuple[str | None, str, fr.Frame]:
        """Run a call to a modelled contract on a throwaway frame: (revert reason or None, exit
        point, the frame with its storage gas). ``ChainError`` when the call is not modelled."""
        call = self._parse(bytes(canonical(to)), data)
        if call is None:
            raise ChainError(f"no contract at {to} on the ledger backend")
        frame = fr.Frame(self._storage)
        reason, path = self._run(frame, call, canonical(sender), timestamp)
        return reason, path, frame

    def _view(self, view: str, args: bytes) -> bytes:
        if view == "balanceOf":
            return self._storage.get(fr.balance_key(args[12:32])).to_bytes(32, "big")
        if view == "authorizationState":
            return self._storage.get(fr.authorization_key(args[12:32], args[32:64])).to_bytes(32, "big")
        if view == "totalSupply":
            return self._storage.get(fr.SUPPLY).to_bytes(32, "big")
        if view == "decimals":
            return (6).to_bytes(32, "big")
        if view == "allowance":
            return self._storage.get(p2.allowance_key(args[12:32], args[44:64])).to_bytes(32, "big")
        if view == "nonces":
            return self._storage.get(p2.permit_nonce_key(args[12:32])).to_bytes(32, "big")
        if view == "DOMAIN_SEPARATOR":
            return self._rules.domain_separator
        text = cast(str, self.token_name if view == "name" else self.token_version).encode()
        padded = text.ljust(-(-len(text) // 32) * 32, b"\x00")
        return (32).to_bytes(32, "big") + len(text).to_bytes(32, "big") + padded


@dataclass(frozen=True)
class LedgerTokenState:
    """The ledger's token, seen by ``state_verify``: views plus ``predict``, as ``TokenState``."""

    chain: LedgerChain

    def balance_of(self, address: str, token: str | None = None) -> int:
        return self.chain.balance_of(address)

    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool:
        return self.chain.authorization_state(authorizer, nonce)

    def name_of(self, token: str | None = None) -> str:
        return cast(str, self.chain.token_name)  # set by the chain's __post_init__

    def version_of(self, token: str | None = None) -> str:
        return cast(str, self.chain.token_version)

    def predict(self, auth: Authorization, v: int, r: bytes, s: bytes, now: int) -> Prediction:
        c = self.chain
        stamp = max(now, c.latest_timestamp)
        name, version = cast(str, c.token_name), cast(str, c.token_version)  # set by __post_init__
        return predict(c._storage, c.token, name, version, c.chain_id, c.usdc, auth, v, r, s, stamp)


def _execution_gas(table: dict[str, int], path: str) -> int:
    """The storage-independent gas of an exit point, by the rules module that names it."""
    if path.startswith(("batch.", "collect.")):
        return br.execution_gas(table, path)
    return p2.execution_gas(table, path)


def _next_base_fee(parent: int, used: int, target: int) -> int:
    """EIP-1559: the base fee after a block of ``used`` gas."""
    if used == target:
        return parent
    if used > target:
        return parent + max(parent * (used - target) // target // BASE_FEE_CHANGE_DENOMINATOR, 1)
    return parent - parent * (target - used) // target // BASE_FEE_CHANGE_DENOMINATOR


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")
