"""AP2 payment mandates as SD-JWTs, bound to x402 payments: issue, close, verify, carry.

Follows AP2 v0.2 (Agent Payments Protocol, April 2026, google-agentic-commerce/AP2 at e1ea56d):
``docs/ap2/payment_mandate.md`` and ``agent_authorization.md`` (mandates, constraints, chain
verification), the JSON schemas in ``code/sdk/schemas/ap2`` (constraint shapes), the SDK's chain and
constraint code, and the human-not-present x402 sample (the EIP-3009 nonce binding).

The chain, two SD-JWTs (ES256 on P-256), as AP2 builds it:

* The **open Payment Mandate**, signed by the user. Its signed payload is only
  ``{"delegate_payload": [{"...": <digest>}], "_sd_alg": "sha-256"}``; the mandate content is that
  one selectively disclosable array element: ``vct`` = ``mandate.payment.open.1``, ``jti`` (the
  mandate id), ``constraints``, ``cnf`` = ``{"jwk": <agent's public key>}``, ``iat``, ``exp`` and
  any pre-set claims (``payee``, ``payment_amount``, ...). The header's ``kid`` is the RFC 7638
  thumbprint of the user's key: a verifier finds the key by it among the keys it trusts.
* The **closed Payment Mandate**, signed by the agent with the key in ``cnf``: a KB-SD-JWT (header
  ``typ`` ``kb+sd-jwt``) with ``iat``, ``aud``, ``nonce`` (fresh; single use), ``sd_hash`` (SHA-256
  of the open presentation exactly as sent) and one disclosed ``delegate_payload`` element:
  ``vct`` = ``mandate.payment.1``, ``transaction_id``, ``payee``, ``payment_amount``,
  ``payment_instrument``.
* Wire form (AP2's chain form): ``<open presentation without its last "~">~~<closed presentation>``.
  Only base64url characters, ``.`` and ``~``: it travels in a header as it is.
* x402 binding (AP2's x402 sample): the EIP-3009 ``nonce`` is keccak256 of the UTF-8 bytes of that
  whole wire string (``MandateChain.nonce``); the chain rides in the payment's
  ``extensions["ap2"]["info"]["mandate"]`` (``attach``; the sample has no x402 placement).

How AP2's terms map onto x402:

* Amounts: AP2 counts integer minor units of an ISO 4217 currency. Here the minor unit is the
  token's atomic unit (6 decimals) and ``currency`` names the token (``"USDC"`` by default), so
  ``payment_amount.amount``, ``payment.amount_range.min``/``max`` are atomic units exactly.
  ``payment.budget.max`` is a JSON number in whole tokens, as AP2 types it (``1.5`` = 1_500_000
  atomic); it is read back with ``repr`` and ``Decimal`` and rounded down to an atomic unit (exact up
  to 15 significant digits). The x402 sample instead counts US cents and multiplies by 10**4,
  which cannot express the sub-cent prices x402 is used for.
* Payees are AP2 Merchants whose ``id`` is the EVM address (``name`` defaults to it); addresses
  compare case-insensitively.
* ``payment_instrument`` is an instrument of ``type`` ``"x402"`` (AP2 lets a new type add
  properties): ``id`` is the CAIP-19 id of the token (``eip155:<chainId>/erc20:<asset>``, so network
  and asset), plus ``payer``, the address that signs the EIP-3009 authorization.
* x402 has no Checkout Mandate: ``transaction_id`` (AP2: hash of the checkout JWT) is the base64url
  SHA-256 of the paid resource URL, and ``payment.reference`` is not evaluated (an unknown
  constraint). ``aud`` defaults to the origin of the resource URL.

Selective disclosure, as AP2's schemas mark it: the whole mandate content is one disclosure (so the
signed JWT alone reveals nothing), and every entry of ``payment.allowed_payees.allowed`` and
``payment.allowed_payment_instruments.allowed`` is a disclosure of its own. Closing a mandate
discloses only the entries that match the payment (AP2: present only what the evaluation needs).
The amount range, budget and recurrence stay in clear inside the content: a verifier must see every
constraint, since one it cannot evaluate fails.

Rules of this module:

* Time is an argument (``issued_at``, ``now``); the clock is never read. Randomness (SD-JWT salts,
  the closed mandate's nonce) comes from a caller's ``random.Random`` when one is given, and then
  the ES256 signatures are deterministic too (RFC 6979), so simulations repeat; otherwise it comes
  from ``secrets`` and signatures are randomised as usual.
* ``REFUSALS`` lists the refusal codes in the order verification meets them; the first check that
  fails names the refusal (``MandateRefused.code``). Everything that does not depend on earlier
  payments runs outside the verifier's lock; replay, recurrence and budget run inside it and a pass
  reserves the amount, so concurrent payments never share a budget only one fits. A verifier keeps
  per mandate its totals and the nonces of its closed mandates, those only until the open mandate
  expires.
* AP2 rules kept as written: exact ``vct`` strings; an unknown constraint fails; pre-set claims of
  the open mandate must reappear unchanged in the closed one; ``payment.agent_recurrence`` needs
  ``payment.amount_range`` and ``payment.budget`` beside it (as the SDK demands); without
  ``payment.agent_recurrence`` an open mandate pays once (an agent may not present it again after a
  success). Budget and recurrence count settled payments plus reserved ones; a released payment
  frees its amount and its use, but its closed mandate stays spent.
* Where this reads AP2 for x402: the closed mandate's ``nonce`` is the agent's (x402 has no
  verifier challenge before the payment), and the verifier refuses one it has seen for the mandate;
  ``payment.agent_recurrence.frequency`` allows one payment per UTC calendar period (day, ISO week,
  two ISO weeks, month, quarter, year; ``ON_DEMAND``: no limit), where the SDK only counts;
  ``exp`` is the first second a mandate is invalid (RFC 7519), with ``leeway`` seconds of slack.
* Beyond AP2's x402 sample: the payment's amount, payee, asset, network, payer and resource are
  each checked against the closed mandate (the sample's payment processor compares neither the
  amount nor the asset with the mandate, and the payee only with a configured address).
* ``close_payment_mandate`` does not judge: it signs what it is given (an agent key that is not
  ``cnf``, an amount out of range); the verifier refuses it. That is how the tests reach every code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Literal, TypeGuard, cast, overload
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwcrypto.common import JWException
from jwcrypto.jwk import JWK
from jwcrypto.jws import InvalidJWSSignature
from sd_jwt.common import SDObj
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.verifier import SDJWTVerifier

from ..errors import Refused
from ..evm.hashing import keccak
from ..money import DECIMALS

__all__ = [
    "AGENT_RECURRENCE",
    "ALLOWED_INSTRUMENTS",
    "ALLOWED_PAYEES",
    "AMOUNT_RANGE",
    "BUDGET",
    "CONSTRAINTS",
    "DEFAULT_CURRENCY",
    "EXTENSION",
    "FREQUENCIES",
    "REFUSALS",
    "VCT_CLOSED",
    "VCT_OPEN",
    "AgentMandate",
    "MandateChain",
    "MandateRefused",
    "MandateVerifier",
    "PaymentFacts",
    "VerifiedMandate",
    "attach",
    "attached",
    "close_payment_mandate",
    "instrument_id",
    "key_id",
    "mandate_id_of",
    "new_key",
    "open_payment_mandate",
    "public_jwk",
    "transaction_id",
]

VCT_OPEN = "mandate.payment.open.1"
VCT_CLOSED = "mandate.payment.1"
ALG = "ES256"
OPEN_TYP = "dc+sd-jwt"  # SD-JWT VC media type; AP2 does not fix the root token's typ
CLOSED_TYP = "kb+sd-jwt"  # AP2's terminal delegation hop
EXTENSION = "ap2"
TOKEN_DECIMALS = DECIMALS
DEFAULT_CURRENCY = "USDC"
INSTRUMENT_TYPE = "x402"
MAX_CHAIN_CHARS = 32_768

AMOUNT_RANGE = "payment.amount_range"
BUDGET = "payment.budget"
AGENT_RECURRENCE = "payment.agent_recurrence"
ALLOWED_PAYEES = "payment.allowed_payees"
ALLOWED_INSTRUMENTS = "payment.allowed_payment_instruments"
CONSTRAINTS = (AMOUNT_RANGE, BUDGET, AGENT_RECURRENCE, ALLOWED_PAYEES, ALLOWED_INSTRUMENTS)
FREQUENCIES = ("ON_DEMAND", "DAILY", "WEEKLY", "BIWEEKLY", "MONTHLY", "QUARTERLY", "ANNUALLY")
PRESETS = ("payee", "payment_amount", "payment_instrument", "pisp", "execution_date", "risk_data")
_COPIED_PRESETS = ("pisp", "execution_date", "risk_data")  # closing copies these; it computes the rest

# code -> what failed, in the order ``MandateVerifier.check`` meets them: the open mandate, then the
# closed one (its iat, aud and vct after its signature and binding), pre-set claims, the constraints
# (in the mandate's own order), the payment's fields, and last, under the lock, the ledger.
REFUSALS: dict[str, str] = {
    "malformed": "not a well-formed AP2 payment mandate chain (structure, JSON or a required claim)",
    "untrusted_issuer": "the open mandate's kid names no user key this verifier trusts",
    "bad_signature": "the open mandate's signature does not verify under the user's key",
    "wrong_vct": "a mandate's vct is not exactly mandate.payment.open.1 (open) / mandate.payment.1 (closed)",
    "expired": "the open mandate's exp has passed",
    "not_yet_valid": "the open mandate's or the closed mandate's iat lies in the future",
    "bad_key_binding": "the closed mandate is not a kb+sd-jwt signed by the key in the open mandate's cnf",
    "broken_chain": "the closed mandate's sd_hash (or issuer_jwt_hash) is not the hash of this open mandate",
    "wrong_audience": "the closed mandate's aud is not this verifier's audience",
    "preset_mismatch": "a claim pre-set in the open mandate differs in the closed mandate",
    "unknown_constraint": "the open mandate has a constraint this verifier cannot evaluate (AP2: it fails)",
    "incomplete_constraints": "payment.agent_recurrence without payment.amount_range and payment.budget",
    "currency_mismatch": "the closed mandate's currency is not the constraint's currency",
    "amount_out_of_range": "the amount is outside payment.amount_range",
    "payee_not_allowed": "the payee is not among the disclosed payment.allowed_payees",
    "instrument_not_allowed": "the instrument is not among the disclosed payment.allowed_payment_instruments",
    "payee_mismatch": "the payment's payTo is not the closed mandate's payee",
    "amount_mismatch": "the payment's amount is not the closed mandate's amount",
    "asset_mismatch": "the payment's asset is not the closed mandate's instrument asset",
    "network_mismatch": "the payment's network is not the closed mandate's instrument network",
    "payer_mismatch": "the payment's payer is not the closed mandate's instrument payer",
    "resource_mismatch": "the paid resource is not the one the closed mandate's transaction_id hashes",
    "nonce_mismatch": "the EIP-3009 nonce is not keccak256 of the mandate chain",
    "mandate_id_conflict": "the mandate id is already tracked for another user's key",
    "replayed": "this closed mandate (its nonce) was already used",
    "recurrence_exceeded": "the mandate's uses are exhausted (max_occurrences, or one without recurrence)",
    "recurrence_too_soon": "the mandate was already used in this period of its frequency",
    "budget_exceeded": "settled plus reserved plus this amount exceeds payment.budget",
}

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_CHAIN_CHARS = re.compile(r"[A-Za-z0-9_.~-]+")
_INSTRUMENT_ID = re.compile(
    r"(?P<network>[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32})/erc20:(?P<asset>0x[0-9a-fA-F]{40})"
)
_DAY = 86_400


class MandateRefused(Refused):
    """A mandate chain refused: ``code`` (a key of ``REFUSALS``) and ``message``, naming the problem
    (``str()`` is the message alone)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"MandateRefused({self.code!r}, {self.message!r})"


# --- keys ---------------------------------------------------------------------------------------


def new_key(seed: str | bytes) -> JWK:
    """A P-256 private key (AP2 signs mandates with ES256) derived from ``seed``: same seed, same key."""
    raw = seed.encode() if isinstance(seed, str) else bytes(seed)
    scalar = int.from_bytes(hashlib.sha256(b"x402sim ap2 mandate key:" + raw).digest(), "big")
    return JWK.from_pyca(ec.derive_private_key(scalar % (_P256_ORDER - 1) + 1, ec.SECP256R1()))


def public_jwk(key: JWK | Mapping[str, Any]) -> dict:
    """The public members of a P-256 key (``kty``, ``crv``, ``x``, ``y``), as ``cnf.jwk`` carries it."""
    members = key.export_public(as_dict=True) if isinstance(key, JWK) else dict(key)
    if members.get("kty") != "EC" or members.get("crv") != "P-256":
        raise ValueError("AP2 mandate keys are EC P-256 keys (ES256)")
    x, y = members.get("x"), members.get("y")
    if not (isinstance(x, str) and isinstance(y, str) and len(x) == len(y) == 43):
        raise ValueError("an EC P-256 JWK needs x and y, 43 base64url characters each")
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y}


def verifying_key(members: Mapping[str, Any]) -> JWK:
    key = JWK(**public_jwk(members))
    try:
        key.get_op_key("verify")  # loads the point now, so a key off the curve fails here
    except (JWException, ValueError) as exc:
        raise ValueError(f"not a usable P-256 public key: {exc}") from None
    return key


def key_id(key: JWK | Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of ``key``'s public part: the ``kid`` of a user's mandates."""
    return JWK(**public_jwk(key)).thumbprint()


def instrument_id(network: str, asset: str) -> str:
    """The x402 payment instrument id: the token's CAIP-19 id, ``eip155:<chainId>/erc20:<asset>``."""
    return f"{network}/erc20:{asset}"


def transaction_id(resource: str) -> str:
    """What stands for AP2's checkout hash: base64url SHA-256 of the resource URL (UTF-8)."""
    return _b64url(hashlib.sha256(resource.encode("utf-8")).digest())


# --- small helpers ------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def sha256_b64(text: str) -> str:
    return _b64url(hashlib.sha256(text.encode("ascii")).digest())


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _same_address(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def _to_major(atomic: int) -> int | float:
    """Atomic units -> AP2's budget number in whole tokens (an int when whole)."""
    whole = Decimal(atomic).scaleb(-TOKEN_DECIMALS)
    return int(whole) if whole == whole.to_integral_value() else float(whole)


def _from_major(value: Any) -> int:
    """AP2's budget number in whole tokens -> atomic units, rounded down; ValueError if not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    try:
        amount = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("not a finite, non-negative number")
    return int(amount.scaleb(TOKEN_DECIMALS).to_integral_value(rounding=ROUND_FLOOR))


def _origin(resource: str) -> str:
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else resource


def _period(frequency: str, t: int) -> int | None:
    """Which UTC calendar period of ``frequency`` second ``t`` falls in (None: ON_DEMAND, no periods)."""
    day = t // _DAY
    if frequency == "DAILY":
        return day
    if frequency in ("WEEKLY", "BIWEEKLY"):
        week = (day + 3) // 7  # 1970-01-01 was a Thursday; ISO weeks start on Monday
        return week if frequency == "WEEKLY" else week // 2
    when = datetime.fromtimestamp(t, UTC)
    if frequency == "MONTHLY":
        return when.year * 12 + when.month - 1
    if frequency == "QUARTERLY":
        return when.year * 4 + (when.month - 1) // 3
    if frequency == "ANNUALLY":
        return when.year
    return None


# --- issuing ------------------------------------------------------------------------------------


class _Issuer(SDJWTIssuer):
    """The reference issuer, with salts from a caller's ``random.Random`` when one is given."""

    def __init__(self, claims: dict, key: JWK, header: dict, rng: random.Random | None) -> None:
        self._rng = rng
        super().__init__(claims, key, extra_header_parameters=header)

    def _generate_salt(self) -> str:
        if self._rng is None:
            return super()._generate_salt()
        return self._base64url_encode(self._rng.randbytes(16))


def _sign(key: JWK, claims: dict, header: dict, rng: random.Random | None) -> str:
    issued = _Issuer(claims, key, header, rng).sd_jwt_issuance
    if rng is None:
        return issued
    jws, sep, disclosures = issued.partition("~")
    return _signed_deterministically(jws, key) + sep + disclosures


def _signed_deterministically(jws: str, key: JWK) -> str:
    """The compact ES256 ``jws`` signed again by ``key`` with RFC 6979 ECDSA: the library signs with
    fresh randomness, which would make a seeded run's mandates (and their nonces) differ."""
    signing_input = jws.rpartition(".")[0]
    der = key.get_op_key("sign").sign(
        signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    )
    r, s = decode_dss_signature(der)
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _plain(node: Any) -> Any:
    """``node`` with its ``SDObj`` markers removed (what the verifier sees once all is disclosed)."""
    if isinstance(node, SDObj):
        return _plain(node.value)
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    return node


@overload
def _atomic(body: Mapping[str, Any], name: str, where: str, required: Literal[True] = ...) -> int: ...
@overload
def _atomic(body: Mapping[str, Any], name: str, where: str, required: bool) -> int | None: ...
def _atomic(body: Mapping[str, Any], name: str, where: str, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not _is_int(value) or value < 0:
        raise ValueError(f"{where}.{name} must be a non-negative int (atomic units)")
    return value


def _allowed(body: Any, where: str) -> list:
    entries = body.get("allowed") if isinstance(body, Mapping) else body
    if not isinstance(entries, list | tuple) or not entries:
        raise ValueError(f"{where} takes a non-empty list (or {{'allowed': [...]}})")
    return list(entries)


def _merchant(entry: Any, where: str) -> dict:
    if isinstance(entry, str):
        return {"id": entry, "name": entry}
    if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
        return {"name": entry["id"], **entry}
    raise ValueError(f"{where}: a payee is an address or a merchant dict with an 'id'")


def _instrument(entry: Any, where: str) -> dict:
    if isinstance(entry, str):
        return {"id": entry, "type": INSTRUMENT_TYPE}
    if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
        return {"type": INSTRUMENT_TYPE, **entry}
    raise ValueError(f"{where}: an instrument is an id (see instrument_id) or a dict with an 'id'")


def _wire_constraint(kind: str, body: Any) -> dict:
    """One constraint from the caller's shape (atomic ints) to AP2's wire shape, SD markers included."""
    where = f"constraints[{kind!r}]"
    if kind in (ALLOWED_PAYEES, ALLOWED_INSTRUMENTS):
        make = _merchant if kind == ALLOWED_PAYEES else _instrument
        return {"type": kind, "allowed": [SDObj(make(entry, where)) for entry in _allowed(body, where)]}
    if not isinstance(body, Mapping) or body.get("type", kind) != kind:
        raise ValueError(f"{where} must be a dict (its 'type', if given, must be {kind!r})")
    currency = body.get("currency", DEFAULT_CURRENCY)
    if kind in (AMOUNT_RANGE, BUDGET) and not isinstance(currency, str):
        raise ValueError(f"{where}.currency must be a string")
    if kind == AMOUNT_RANGE:
        wire = {"type": kind, "currency": currency, "max": _atomic(body, "max", where)}
        low = _atomic(body, "min", where, required=False)
        return wire if low is None else {**wire, "min": low}
    if kind == BUDGET:
        return {"type": kind, "max": _to_major(_atomic(body, "max", where)), "currency": currency}
    if kind == AGENT_RECURRENCE:
        frequency = body.get("frequency", "ON_DEMAND")
        if frequency not in FREQUENCIES:
            raise ValueError(f"{where}.frequency must be one of {', '.join(FREQUENCIES)}")
        wire = {"type": kind, "frequency": frequency}
        most = _atomic(body, "max_occurrences", where, required=False)
        return wire if most is None else {**wire, "max_occurrences": most}
    # A constraint this module does not evaluate travels as given (a verifier will refuse it).
    return {"type": kind, **{key: value for key, value in body.items() if key != "type"}}


def open_payment_mandate(
    user_key: JWK,
    *,
    agent_key: JWK | Mapping[str, Any],
    constraints: Mapping[str, Any],
    issued_at: int,
    expires_at: int,
    mandate_id: str | None = None,
    rng: random.Random | None = None,
    **fields: Any,
) -> str:
    """The open Payment Mandate SD-JWT (``vct`` ``mandate.payment.open.1``) that ``user_key`` signs.

    ``constraints`` maps a constraint type to its body, amounts in atomic units:
    ``{AMOUNT_RANGE: {"min": 1_000, "max": 50_000, "currency": "USDC"}, BUDGET: {"max": 2_000_000},
    AGENT_RECURRENCE: {"frequency": "ON_DEMAND", "max_occurrences": 100}, ALLOWED_PAYEES: ["0x..."],
    ALLOWED_INSTRUMENTS: [instrument_id("eip155:8453", "0x...")]}`` (``currency`` defaults to
    ``"USDC"``; payees may be merchant dicts). Any other type is written as given. ``fields`` are
    AP2's pre-set claims (``PRESETS``; ``payee`` may be an address, ``payment_amount`` an int), which
    the closed mandate must repeat. ``mandate_id`` becomes ``jti``; by default it is derived from the
    user's key and the content, so the same mandate issued twice has one budget.
    """
    if not (_is_int(issued_at) and _is_int(expires_at)) or expires_at <= issued_at:
        raise ValueError("issued_at and expires_at are unix seconds, expires_at after issued_at")
    unknown = sorted(set(fields) - set(PRESETS))
    if unknown:
        raise ValueError(f"unknown mandate fields {unknown}; AP2's pre-set claims are {', '.join(PRESETS)}")
    kinds = set(constraints)
    if AGENT_RECURRENCE in kinds and not {AMOUNT_RANGE, BUDGET} <= kinds:
        raise ValueError(f"{AGENT_RECURRENCE} needs {AMOUNT_RANGE} and {BUDGET} beside it (AP2 SDK rule)")
    wire = [_wire_constraint(kind, body) for kind, body in constraints.items()]
    presets = dict(fields)
    if isinstance(presets.get("payee"), str):
        presets["payee"] = _merchant(presets["payee"], "payee")
    if _is_int(presets.get("payment_amount")):
        currency = next(
            (c["currency"] for c in wire if c["type"] in (AMOUNT_RANGE, BUDGET)), DEFAULT_CURRENCY
        )
        presets["payment_amount"] = {"amount": presets["payment_amount"], "currency": currency}
    content = {
        "vct": VCT_OPEN,
        "constraints": wire,
        "cnf": {"jwk": public_jwk(agent_key)},
        "iat": issued_at,
        "exp": expires_at,
        **presets,
    }
    if mandate_id is None:
        canonical = json.dumps([key_id(user_key), _plain(content)], sort_keys=True).encode()
        mandate_id = "ap2-" + hashlib.sha256(canonical).hexdigest()[:32]
    elif not isinstance(mandate_id, str) or not mandate_id:
        raise ValueError("mandate_id must be a non-empty string")
    return _sign_open(user_key, {"vct": VCT_OPEN, "jti": mandate_id, **content}, rng)


def _sign_open(user_key: JWK, content: dict, rng: random.Random | None = None) -> str:
    header = {"typ": OPEN_TYP, "kid": key_id(user_key)}
    return _sign(user_key, {"delegate_payload": [SDObj(content)]}, header, rng)


# --- the chain ----------------------------------------------------------------------------------


def _split_token(token: str, label: str) -> tuple[str, list[str]]:
    """An SD-JWT presentation without a trailing KB-JWT -> (issuer-signed JWT, disclosures)."""
    if not token.endswith("~"):
        raise MandateRefused("malformed", f"the {label} mandate does not end with '~' (an SD-JWT, no KB-JWT)")
    jwt, *disclosures = token[:-1].split("~")
    if jwt.count(".") != 2 or not all(jwt.split(".")):
        raise MandateRefused("malformed", f"the {label} mandate does not start with a compact JWS")
    if not all(disclosures):
        raise MandateRefused("malformed", f"the {label} mandate has an empty disclosure")
    return jwt, disclosures


@dataclass(frozen=True)
class MandateChain:
    """An open mandate (as presented: only the disclosures this payment needs) and its closed mandate.

    Both are compact SD-JWTs ending in ``~``. ``serialize`` gives AP2's chain form, the exact bytes
    ``nonce`` hashes.
    """

    open: str
    closed: str

    def __post_init__(self) -> None:
        for label, token in (("open", self.open), ("closed", self.closed)):
            if not isinstance(token, str) or not token.endswith("~"):
                raise MandateRefused(
                    "malformed", f"the {label} mandate must be an SD-JWT string ending in '~'"
                )

    def serialize(self) -> str:
        """``<open without its last "~">~~<closed>``: AP2's chain form, header-safe."""
        return self.open[:-1] + "~~" + self.closed

    @classmethod
    def parse(cls, text: Any) -> MandateChain:
        """The chain in ``text`` (``serialize``'s form); ``MandateRefused("malformed")`` if it is not one."""
        if not isinstance(text, str):
            raise MandateRefused("malformed", "the mandate chain is not a string")
        if len(text) > MAX_CHAIN_CHARS:
            raise MandateRefused(
                "malformed", f"the mandate chain is longer than {MAX_CHAIN_CHARS} characters"
            )
        if not _CHAIN_CHARS.fullmatch(text):
            raise MandateRefused(
                "malformed", "the mandate chain has characters outside base64url, '.' and '~'"
            )
        parts = text.split("~~")
        if len(parts) != 2:
            raise MandateRefused(
                "malformed", f"expected two mandates joined by '~~', found {len(parts)} part(s)"
            )
        chain = cls(parts[0] + "~", parts[1])
        _split_token(chain.open, "open")
        _split_token(chain.closed, "closed")
        return chain

    def nonce(self) -> str:
        """The EIP-3009 nonce AP2's x402 sample binds: ``"0x"`` + keccak256(UTF-8 of ``serialize()``)."""
        return "0x" + keccak(self.serialize().encode("utf-8")).hex()


def _digest(entry: Any) -> str | None:
    if isinstance(entry, dict) and set(entry) == {"..."} and isinstance(entry["..."], str):
        return entry["..."]
    return None


def _holder_view(open_mandate: str) -> tuple[str, list[str], dict[str, Any], dict]:
    """The agent's (unverified) view of its own open mandate: JWT, disclosures, their values by
    digest, and the mandate content; ValueError if it is not one."""
    try:
        jwt, disclosures = _split_token(open_mandate, "open")
        signed = b64_json(jwt.split(".")[1])
        values = {sha256_b64(d): b64_json(d)[-1] for d in disclosures}
        digests = [_digest(item) for item in signed.get("delegate_payload", [])]
    except (MandateRefused, ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        raise ValueError(f"not an open mandate SD-JWT: {exc}") from None
    content = next((values[d] for d in digests if d in values), None)
    if not isinstance(content, dict) or not isinstance(content.get("constraints", []), list):
        raise ValueError("the open mandate discloses no mandate content")
    return jwt, disclosures, values, content


def mandate_id_of(open_mandate: str) -> str:
    """The id a verifier tracks ``open_mandate`` under: its ``jti``, else AP2's issuer_jwt_hash."""
    jwt, _, _, content = _holder_view(open_mandate)
    return _mandate_id(content, jwt)


def _mandate_id(content: dict, jwt: str) -> str:
    jti = content.get("jti")
    return jti if isinstance(jti, str) and jti else "sha256:" + sha256_b64(jwt)


def close_payment_mandate(
    open_mandate: str,
    agent_key: JWK,
    *,
    payee: str,
    amount: int,
    asset: str,
    network: str,
    payer: str,
    resource: str,
    now: int,
    audience: str | None = None,
    rng: random.Random | None = None,
) -> MandateChain:
    """The agent's closed Payment Mandate for one x402 payment, chained to ``open_mandate``.

    Presents the open mandate with only the allowed-payee and allowed-instrument disclosures that
    match this payment, then signs a KB-SD-JWT with ``agent_key`` over it: ``iat`` = ``now``,
    ``aud`` = ``audience`` (default: the resource's origin), a fresh ``nonce`` and
    ``sd_hash``, disclosing ``vct`` ``mandate.payment.1``, ``transaction_id`` (see
    ``transaction_id``), ``payee``, ``payment_amount`` (atomic units) and the x402
    ``payment_instrument``. Every call gives a new chain (and so a new EIP-3009 nonce).
    """
    jwt, disclosures, values, content = _holder_view(open_mandate)
    instrument = {
        "id": instrument_id(network, asset),
        "type": INSTRUMENT_TYPE,
        "description": f"x402 exact payment from {payer}",
        "payer": payer,
    }
    merchant = _merchant(payee, "payee")
    hidden: set[str] = set()
    currency = None
    for constraint in content.get("constraints", []):
        kind = constraint.get("type")
        currency = currency or (constraint.get("currency") if kind in (AMOUNT_RANGE, BUDGET) else None)
        if kind not in (ALLOWED_PAYEES, ALLOWED_INSTRUMENTS):
            continue
        for entry in constraint.get("allowed", []):
            digest = _digest(entry)
            value = values.get(digest, entry) if digest is not None else entry
            fits = isinstance(value, dict) and _same_address(
                value.get("id"), payee if kind == ALLOWED_PAYEES else instrument["id"]
            )
            if fits and kind == ALLOWED_PAYEES:
                merchant = value  # the user's own merchant object, name and all
            if digest is not None and not fits:
                hidden.add(digest)
    presentation = jwt + "~" + "".join(d + "~" for d in disclosures if sha256_b64(d) not in hidden)
    closed = {
        "vct": VCT_CLOSED,
        "transaction_id": transaction_id(resource),
        "payee": merchant,
        "payment_amount": {"amount": amount, "currency": currency or DEFAULT_CURRENCY},
        "payment_instrument": instrument,
        **{name: content[name] for name in _COPIED_PRESETS if name in content},
    }
    nonce = (rng.randbytes(16) if rng is not None else secrets.token_bytes(16)).hex()
    return _sign_closed(
        presentation, agent_key, closed, now=now, audience=audience or _origin(resource), nonce=nonce, rng=rng
    )


def _sign_closed(
    open_presentation: str,
    agent_key: JWK,
    content: dict,
    *,
    now: int,
    audience: str,
    nonce: str,
    rng: random.Random | None = None,
) -> MandateChain:
    claims = {
        "delegate_payload": [SDObj(content)],
        "iat": now,
        "aud": audience,
        "nonce": nonce,
        "sd_hash": sha256_b64(open_presentation),
    }
    return MandateChain(open_presentation, _sign(agent_key, claims, {"typ": CLOSED_TYP}, rng))


class AgentMandate:
    """What an agent carries: its open mandate and key; ``close`` makes one chain per x402 payment.

    ``offer`` is anything with ``pay_to``, ``amount``, ``asset`` and ``network`` (an
    ``x402sim.mechanisms.Offer``); ``rng`` makes the closed mandates repeatable.
    """

    def __init__(
        self,
        open_mandate: str,
        agent_key: JWK,
        rng: random.Random | None = None,
        *,
        audience: str | None = None,
    ) -> None:
        self.open_mandate = open_mandate
        self.agent_key = agent_key
        self.rng = rng
        self.audience = audience
        self.mandate_id = mandate_id_of(open_mandate)

    def close(self, offer: Any, payer: str, resource: str, now: int) -> MandateChain:
        return close_payment_mandate(
            self.open_mandate,
            self.agent_key,
            payee=offer.pay_to,
            amount=offer.amount,
            asset=offer.asset,
            network=offer.network,
            payer=payer,
            resource=resource,
            now=now,
            audience=self.audience,
            rng=self.rng,
        )


# --- carrying it in x402 ------------------------------------------------------------------------


def attach(extensions: Mapping[str, Any] | None, chain: MandateChain) -> dict:
    """A copy of a v2 PaymentPayload's ``extensions`` with ``{"ap2": {"info": {"mandate": <chain>}}}``."""
    return {**(extensions or {}), EXTENSION: {"info": {"mandate": chain.serialize()}}}


def attached(extensions: Any) -> MandateChain | None:
    """The chain carried in ``extensions`` (None when there is no ``"ap2"`` entry); a present but
    broken entry raises ``MandateRefused("malformed")``."""
    if extensions is None:
        return None
    if not isinstance(extensions, Mapping):
        raise MandateRefused("malformed", "extensions is not an object")
    if EXTENSION not in extensions:
        return None
    entry = extensions[EXTENSION]
    info = entry.get("info") if isinstance(entry, Mapping) else None
    mandate = info.get("mandate") if isinstance(info, Mapping) else None
    if not isinstance(mandate, str):
        raise MandateRefused("malformed", f"extensions.{EXTENSION}.info.mandate is not a string")
    return MandateChain.parse(mandate)


# --- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentFacts:
    """What the x402 payment itself says (the EIP-3009 authorization and the server's offer)."""

    payer: str
    pay_to: str
    asset: str
    network: str
    amount: int
    nonce: str  # "0x" + 64 hex digits, the authorization's nonce
    resource: str


@dataclass(frozen=True)
class VerifiedMandate:
    """A chain that passed ``MandateVerifier.check``; its amount is reserved until settled or released."""

    mandate_id: str
    closed_nonce: str  # the closed mandate's nonce: spent once it passes
    amount: int
    payee: str
    payer: str
    asset: str
    network: str
    resource: str
    at: int
    chain_nonce: str
    open_claims: dict
    closed_claims: dict


@dataclass
class OpenMandateTerms:
    content: dict
    kid: str
    jwt: str
    agent: JWK
    mandate_id: str


@dataclass
class _Closed:
    content: dict
    nonce: str
    payee: str
    amount: int
    currency: str
    instrument: str
    network: str
    asset: str
    payer: str


@dataclass
class _Limits:
    budgets: list[int] = field(default_factory=list)
    recurrences: list[tuple[str, int | None]] = field(default_factory=list)


@dataclass
class _Ledger:
    owner: str  # the kid of the user key whose mandate first used the id
    committed: int = 0
    uses: int = 0
    last_use: int | None = None
    reserved: dict[str, tuple[int, int]] = field(default_factory=dict)  # closed nonce -> (amount, at)
    burned: dict[str, int] = field(default_factory=dict)  # closed nonce -> when replay stops mattering


def _verified_payload(token: str, key: JWK, label: str, bad_signature: str) -> dict:
    try:
        return SDJWTVerifier(token, lambda _iss, _header: key).get_verified_payload()
    except InvalidJWSSignature:
        who = "the user's key" if label == "open" else "the agent key in cnf"
        raise MandateRefused(
            bad_signature, f"the {label} mandate's signature does not verify under {who}"
        ) from None
    except (JWException, ValueError, KeyError, TypeError, IndexError, AttributeError, binascii.Error) as exc:
        raise MandateRefused("malformed", f"the {label} mandate does not parse as an SD-JWT: {exc}") from None


def _header(jwt: str, label: str) -> dict:
    try:
        header = b64_json(jwt.split(".")[0])
    except (ValueError, binascii.Error):
        raise MandateRefused("malformed", f"the {label} mandate's JWS header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise MandateRefused("malformed", f"the {label} mandate's JWS header is not an object")
    return header


def _check_disclosures(jwt: str, disclosures: list[str], label: str) -> None:
    """RFC 9901: every disclosure presented must be referenced, from the signed payload or another one."""
    by_digest = {sha256_b64(d): d for d in disclosures}
    seen: set[str] = set()

    def visit(digest: Any) -> None:
        if isinstance(digest, str) and digest in by_digest and digest not in seen:
            seen.add(digest)
            walk(b64_json(by_digest[digest])[-1])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if _digest(node) is not None:
                visit(node["..."])
                return
            for digest in node.get("_sd", []) if isinstance(node.get("_sd"), list) else []:
                visit(digest)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    try:
        walk(b64_json(jwt.split(".")[1]))
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error):
        raise MandateRefused(
            "malformed", f"the {label} mandate has a disclosure of the wrong shape"
        ) from None
    if len(seen) != len(by_digest):
        raise MandateRefused("malformed", f"the {label} mandate carries a disclosure nothing refers to")


def _one_content(payload: dict, label: str) -> dict:
    items = payload.get("delegate_payload")
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise MandateRefused(
            "malformed", f"the {label} mandate must disclose exactly one delegate_payload object"
        )
    return items[0]


def _verify_open(token: str, trusted: Mapping[str, JWK], now: int, leeway: int) -> OpenMandateTerms:
    jwt, disclosures = _split_token(token, "open")
    header = _header(jwt, "open")
    kid = header.get("kid")
    key = trusted.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise MandateRefused("untrusted_issuer", f"the open mandate's kid {kid!r} names no trusted user key")
    if header.get("alg") != ALG:
        raise MandateRefused(
            "bad_signature", f"the open mandate is signed with {header.get('alg')!r}, not {ALG}"
        )
    payload = _verified_payload(token, key, "open", "bad_signature")
    _check_disclosures(jwt, disclosures, "open")
    content = _one_content(payload, "open")
    if content.get("vct") != VCT_OPEN:
        raise MandateRefused(
            "wrong_vct", f"the open mandate's vct is {content.get('vct')!r}, not {VCT_OPEN!r}"
        )
    cnf = content.get("cnf")
    # Decoded JSON of any shape (None when absent): verifying_key refuses a non-key with TypeError/ValueError.
    jwk: Any = cnf.get("jwk") if isinstance(cnf, dict) else None
    try:
        agent = verifying_key(jwk)
    except (TypeError, ValueError):
        raise MandateRefused(
            "malformed", "the open mandate's cnf.jwk is not an EC P-256 public key"
        ) from None
    for name in ("iat", "exp"):
        if name in content and not _is_int(content[name]):
            raise MandateRefused("malformed", f"the open mandate's {name} is not an integer")
    if "exp" in content and now >= content["exp"] + leeway:
        raise MandateRefused("expired", f"the open mandate expired at {content['exp']} (now {now})")
    if "iat" in content and content["iat"] > now + leeway:
        raise MandateRefused("not_yet_valid", f"the open mandate is issued at {content['iat']} (now {now})")
    constraints = content.get("constraints")
    if not isinstance(constraints, list) or not all(
        isinstance(c, dict) and isinstance(c.get("type"), str) for c in constraints
    ):
        raise MandateRefused("malformed", "the open mandate's constraints are not a list of typed objects")
    jti = content.get("jti")
    mandate_id = jti if isinstance(jti, str) and jti else "sha256:" + sha256_b64(jwt)  # AP2's issuer_jwt_hash
    return OpenMandateTerms(content, cast(str, kid), jwt, agent, mandate_id)  # a str: it found a key


def closed_terms(content: dict, nonce: str) -> _Closed:
    payee, money, instrument = (
        content.get("payee"),
        content.get("payment_amount"),
        content.get("payment_instrument"),
    )
    if not isinstance(content.get("transaction_id"), str):
        raise MandateRefused("malformed", "the closed mandate has no transaction_id string")
    if not (isinstance(payee, dict) and isinstance(payee.get("id"), str)):
        raise MandateRefused("malformed", "the closed mandate's payee is not a merchant with an id")
    if not (
        isinstance(money, dict)
        and _is_int(money.get("amount"))
        and money["amount"] >= 0
        and isinstance(money.get("currency"), str)
    ):
        raise MandateRefused(
            "malformed", "the closed mandate's payment_amount is not {amount: int, currency}"
        )
    if not (isinstance(instrument, dict) and instrument.get("type") == INSTRUMENT_TYPE):
        raise MandateRefused(
            "malformed", f"the closed mandate's payment_instrument is not of type {INSTRUMENT_TYPE!r}"
        )
    found = (
        _INSTRUMENT_ID.fullmatch(cast(str, instrument.get("id")))
        if isinstance(instrument.get("id"), str)
        else None
    )
    if found is None or not isinstance(instrument.get("payer"), str):
        raise MandateRefused(
            "malformed", "the x402 instrument needs id 'eip155:<chain>/erc20:<asset>' and a payer"
        )
    return _Closed(
        content,
        nonce,
        payee["id"],
        money["amount"],
        money["currency"],
        instrument["id"],
        found["network"],
        found["asset"],
        instrument["payer"],
    )


def _verify_closed(
    chain: MandateChain, opened: OpenMandateTerms, now: int, leeway: int, audience: str | None
) -> _Closed:
    jwt, disclosures = _split_token(chain.closed, "closed")
    header = _header(jwt, "closed")
    if header.get("typ") != CLOSED_TYP or header.get("alg") != ALG:
        raise MandateRefused(
            "bad_key_binding",
            f"the closed mandate's header is typ {header.get('typ')!r} alg {header.get('alg')!r}, "
            f"not {CLOSED_TYP!r} {ALG!r}",
        )
    payload = _verified_payload(chain.closed, opened.agent, "closed", "bad_key_binding")
    _check_disclosures(jwt, disclosures, "closed")
    if ("sd_hash" in payload) == ("issuer_jwt_hash" in payload):
        raise MandateRefused(
            "malformed", "the closed mandate needs exactly one of sd_hash and issuer_jwt_hash"
        )
    claim, expected = (
        ("sd_hash", sha256_b64(chain.open))
        if "sd_hash" in payload
        else ("issuer_jwt_hash", sha256_b64(opened.jwt))
    )
    if payload[claim] != expected:
        raise MandateRefused(
            "broken_chain", f"the closed mandate's {claim} does not hash the open mandate sent"
        )
    iat, aud, nonce = payload.get("iat"), payload.get("aud"), payload.get("nonce")
    if not (_is_int(iat) and isinstance(aud, str) and isinstance(nonce, str) and 0 < len(nonce) <= 256):
        raise MandateRefused(
            "malformed", "the closed mandate needs iat (int), aud (string) and nonce (string)"
        )
    if iat > now + leeway:
        raise MandateRefused("not_yet_valid", f"the closed mandate is issued at {iat} (now {now})")
    if audience is not None and aud != audience:
        raise MandateRefused("wrong_audience", f"the closed mandate is for {aud!r}, not {audience!r}")
    content = _one_content(payload, "closed")
    if content.get("vct") != VCT_CLOSED:
        raise MandateRefused(
            "wrong_vct", f"the closed mandate's vct is {content.get('vct')!r}, not {VCT_CLOSED!r}"
        )
    if "cnf" in content:
        raise MandateRefused("malformed", "a closed mandate is the last hop: it must not carry cnf")
    return closed_terms(content, nonce)


def _check_presets(open_content: dict, closed: _Closed) -> None:
    for name in PRESETS:
        if name not in open_content:
            continue
        want, got = open_content[name], closed.content.get(name)
        if name == "payee":
            same = (
                isinstance(want, dict)
                and isinstance(got, dict)
                and _same_address(want.get("id"), got.get("id"))
            )
        else:
            same = want == got
        if not same:
            raise MandateRefused(
                "preset_mismatch", f"the open mandate pre-sets {name} {want!r}; the closed has {got!r}"
            )


def _check_constraints(constraints: list[dict], closed: _Closed) -> _Limits:
    """Every constraint evaluated on the closed mandate alone; budgets and recurrences returned for later."""
    kinds = [c["type"] for c in constraints]
    for kind in kinds:
        if kind not in CONSTRAINTS:
            raise MandateRefused("unknown_constraint", f"cannot evaluate constraint {kind!r}; AP2: it fails")
    if AGENT_RECURRENCE in kinds and not (AMOUNT_RANGE in kinds and BUDGET in kinds):
        raise MandateRefused(
            "incomplete_constraints", f"{AGENT_RECURRENCE} needs {AMOUNT_RANGE} and {BUDGET}"
        )
    limits = _Limits()
    for c in constraints:
        kind = c["type"]
        if kind in (AMOUNT_RANGE, BUDGET):
            if not isinstance(c.get("currency"), str):
                raise MandateRefused("malformed", f"{kind} has no currency")
            if c["currency"] != closed.currency:
                raise MandateRefused(
                    "currency_mismatch",
                    f"{kind} is in {c['currency']!r}, the closed mandate in {closed.currency!r}",
                )
        if kind == AMOUNT_RANGE:
            low, high = c.get("min", 0), c.get("max")
            if not (_is_int(low) and _is_int(high)):
                raise MandateRefused("malformed", f"{kind} min and max must be integers (atomic units)")
            if not low <= closed.amount <= high:
                raise MandateRefused(
                    "amount_out_of_range", f"amount {closed.amount} is outside [{low}, {high}]"
                )
        elif kind == BUDGET:
            try:
                limits.budgets.append(_from_major(c.get("max")))
            except ValueError:
                raise MandateRefused("malformed", f"{kind} max is not a non-negative number") from None
        elif kind == AGENT_RECURRENCE:
            frequency, most = c.get("frequency"), c.get("max_occurrences")
            if frequency not in FREQUENCIES or not (most is None or (_is_int(most) and most >= 0)):
                raise MandateRefused(
                    "malformed", f"{kind} needs a known frequency and an int max_occurrences"
                )
            limits.recurrences.append((frequency, most))
        elif kind in (ALLOWED_PAYEES, ALLOWED_INSTRUMENTS):
            allowed = c.get("allowed")
            if not isinstance(allowed, list):
                raise MandateRefused("malformed", f"{kind} has no allowed list")
            wanted = closed.payee if kind == ALLOWED_PAYEES else closed.instrument
            if not any(isinstance(a, dict) and _same_address(a.get("id"), wanted) for a in allowed):
                code = "payee_not_allowed" if kind == ALLOWED_PAYEES else "instrument_not_allowed"
                raise MandateRefused(
                    code, f"{wanted} is not among the {len(allowed)} disclosed entries of {kind}"
                )
    return limits


def _check_payment(chain: MandateChain, closed: _Closed, facts: PaymentFacts) -> str:
    """The x402 payment against the closed mandate, field by field; returns the chain's nonce."""
    if not _same_address(facts.pay_to, closed.payee):
        raise MandateRefused("payee_mismatch", f"the payment pays {facts.pay_to}, the mandate {closed.payee}")
    if facts.amount != closed.amount:
        raise MandateRefused(
            "amount_mismatch", f"the payment is for {facts.amount}, the mandate for {closed.amount}"
        )
    if not _same_address(facts.asset, closed.asset):
        raise MandateRefused("asset_mismatch", f"the payment moves {facts.asset}, the mandate {closed.asset}")
    if facts.network != closed.network:
        raise MandateRefused(
            "network_mismatch", f"the payment is on {facts.network}, the mandate on {closed.network}"
        )
    if not _same_address(facts.payer, closed.payer):
        raise MandateRefused(
            "payer_mismatch", f"the payment is from {facts.payer}, the mandate from {closed.payer}"
        )
    if transaction_id(facts.resource) != closed.content["transaction_id"]:
        raise MandateRefused(
            "resource_mismatch", f"the closed mandate's transaction_id is not for {facts.resource}"
        )
    expected = chain.nonce()
    given = facts.nonce.lower() if isinstance(facts.nonce, str) else ""
    if (given if given.startswith("0x") else "0x" + given) != expected:
        raise MandateRefused(
            "nonce_mismatch", f"the EIP-3009 nonce is {facts.nonce}, keccak256(chain) is {expected}"
        )
    return expected


class MandateVerifier:
    """Verifies mandate chains for x402 payments and keeps each mandate's budget and uses.

    ``trusted_users``: the user keys (or Agent Provider keys, in AP2's trusted-provider model) whose
    open mandates count. ``audience``: when given, a closed mandate's ``aud`` must equal it.
    ``leeway``: seconds of slack on ``iat``/``exp``. Thread-safe.

    Hooks, the mandate checks, in the order ``check`` runs them (a variant, such as the conformance
    suite's loose verifiers, overrides one): ``verify_chain(chain, now)``, the signatures, digests,
    types and times of the chain; ``check_constraints(constraints, closed)``, the open mandate's
    constraints; ``check_payment(chain, closed, facts)``, the payment against the closed mandate.
    """

    def __init__(
        self,
        trusted_users: Iterable[JWK | Mapping[str, Any]],
        *,
        audience: str | None = None,
        leeway: int = 0,
    ) -> None:
        if not _is_int(leeway) or leeway < 0:
            raise ValueError("leeway is a non-negative number of seconds")
        self._trusted = {key_id(key): verifying_key(public_jwk(key)) for key in trusted_users}
        self._audience = audience
        self._leeway = leeway
        self._lock = threading.Lock()
        self._ledgers: dict[str, _Ledger] = {}
        self._burned_total = 0
        self._purge_above = 1024

    def check(self, chain: MandateChain, facts: PaymentFacts, now: int) -> VerifiedMandate:
        """Verify ``chain`` for the payment ``facts`` at ``now`` and reserve its amount (see ``REFUSALS``
        for the order of the checks); ``MandateRefused`` otherwise."""
        if not isinstance(chain, MandateChain):
            raise MandateRefused("malformed", "not a MandateChain")
        opened, closed = self.verify_chain(chain, now)
        _check_presets(opened.content, closed)
        limits = self.check_constraints(opened.content["constraints"], closed)
        chain_nonce = self.check_payment(chain, closed, facts)
        expires = opened.content.get("exp")
        with self._lock:
            self._reserve(opened, closed, limits, now, expires + self._leeway if _is_int(expires) else None)
        return VerifiedMandate(
            mandate_id=opened.mandate_id,
            closed_nonce=closed.nonce,
            amount=closed.amount,
            payee=closed.payee,
            payer=closed.payer,
            asset=closed.asset,
            network=closed.network,
            resource=facts.resource,
            at=now,
            chain_nonce=chain_nonce,
            open_claims=opened.content,
            closed_claims=closed.content,
        )

    # The steps of ``check``, one method each so that the conformance suite's controls can leave
    # exactly one of them out (``conformance.trust_controls``).

    def verify_chain(self, chain: MandateChain, now: int) -> tuple[OpenMandateTerms, _Closed]:
        """The open mandate verified against the trusted users, and the closed one against it."""
        opened = _verify_open(chain.open, self._trusted, now, self._leeway)
        return opened, _verify_closed(chain, opened, now, self._leeway, self._audience)

    def check_constraints(self, constraints: list, closed: _Closed) -> _Limits:
        """Every constraint checked against the closed mandate; the limits kept across payments."""
        return _check_constraints(constraints, closed)

    def check_payment(self, chain: MandateChain, closed: _Closed, facts: PaymentFacts) -> str:
        """The closed mandate against the x402 payment, and the nonce binding; the chain's nonce."""
        return _check_payment(chain, closed, facts)

    def _reserve(
        self, opened: OpenMandateTerms, closed: _Closed, limits: _Limits, now: int, expires: int | None
    ) -> None:
        ledger = self._ledgers.get(opened.mandate_id)
        if ledger is not None and ledger.owner != opened.kid:
            raise MandateRefused(
                "mandate_id_conflict", f"mandate id {opened.mandate_id!r} belongs to another user"
            )
        if ledger is not None and closed.nonce in ledger.burned:
            raise MandateRefused("replayed", f"closed mandate nonce {closed.nonce} was already used")
        ledger = ledger or _Ledger(owner=opened.kid)
        in_flight = sum(amount for amount, _ in ledger.reserved.values())
        uses = ledger.uses + len(ledger.reserved)
        if not limits.recurrences and uses:
            raise MandateRefused(
                "recurrence_exceeded", f"without {AGENT_RECURRENCE} a mandate pays once; used {uses}"
            )
        used_at = [at for _, at in ledger.reserved.values()] + (
            [ledger.last_use] if ledger.last_use is not None else []
        )
        for frequency, most in limits.recurrences:
            if most is not None and uses >= most:
                raise MandateRefused("recurrence_exceeded", f"{uses} of max_occurrences {most} already used")
            period = _period(frequency, now)
            if period is not None and any(_period(frequency, at) == period for at in used_at):
                raise MandateRefused("recurrence_too_soon", f"already used in this {frequency} period")
        for limit in limits.budgets:
            if ledger.committed + in_flight + closed.amount > limit:
                raise MandateRefused(
                    "budget_exceeded",
                    f"{ledger.committed} settled + {in_flight} reserved + {closed.amount} > budget {limit}",
                )
        self._ledgers[opened.mandate_id] = ledger
        ledger.reserved[closed.nonce] = (closed.amount, now)
        # Past the open mandate's exp no chain of it passes, so its nonces need not be kept longer.
        ledger.burned[closed.nonce] = expires if expires is not None else 2**63
        self._burned_total += 1
        if self._burned_total > self._purge_above:
            self._purge(now)

    def _purge(self, now: int) -> None:
        for ledger in self._ledgers.values():
            ledger.burned = {nonce: until for nonce, until in ledger.burned.items() if until > now}
        self._burned_total = sum(len(ledger.burned) for ledger in self._ledgers.values())
        self._purge_above = max(1024, 2 * self._burned_total)

    def _finish(self, verified: VerifiedMandate, settle: bool) -> None:
        with self._lock:
            ledger = self._ledgers.get(verified.mandate_id)
            entry = ledger.reserved.pop(verified.closed_nonce, None) if ledger else None
            if entry is None or ledger is None:  # no entry without a ledger; the second test is for mypy
                raise ValueError(f"no reservation for {verified.closed_nonce} (already settled or released?)")
            if settle:
                amount, at = entry
                ledger.committed += amount
                ledger.uses += 1
                ledger.last_use = at if ledger.last_use is None else max(ledger.last_use, at)

    def settled(self, verified: VerifiedMandate) -> None:
        """The payment settled: its reserved amount and use become committed."""
        self._finish(verified, settle=True)

    def release(self, verified: VerifiedMandate) -> None:
        """The payment failed: free its amount and use (its closed mandate stays spent)."""
        self._finish(verified, settle=False)

    def spent(self, mandate_id: str) -> int:
        """Atomic units settled under ``mandate_id`` (reservations not included)."""
        with self._lock:
            ledger = self._ledgers.get(mandate_id)
            return ledger.committed if ledger else 0

    def reserved(self, mandate_id: str) -> int:
        """Atomic units reserved under ``mandate_id`` by payments not yet settled or released."""
        with self._lock:
            ledger = self._ledgers.get(mandate_id)
            return sum(amount for amount, _ in ledger.reserved.values()) if ledger else 0

    def uses(self, mandate_id: str) -> int:
        """Settled payments under ``mandate_id``."""
        with self._lock:
            ledger = self._ledgers.get(mandate_id)
            return ledger.uses if ledger else 0
