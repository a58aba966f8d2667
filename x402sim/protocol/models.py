"""x402 wire messages (v1 and v2) as frozen pydantic models.

Job: the shapes of every message that crosses the wire (402 challenges, payment payloads, facilitator requests
and answers) and their conversion to and from wire dicts and JSON.

Rules:
- snake_case in Python, camelCase on the wire; unknown wire fields are kept and written back, so an echoed
  object (``accepted``) round-trips verbatim. Wire input is matched by wire names only: a snake_case key on
  the wire is an unknown field, not an alias.
- Optional fields that are None are omitted on the wire (unknown fields keep their nulls).
- ``from_wire`` is the way in for wire data. It applies the JSON rules of ``fields.py`` to JSON text and to
  dicts alike (a dict is re-serialized and parsed by the same strict parser) and raises only
  ``ProtocolError``, whose ``where`` is the camelCase field path.
- ``VerifyResponse`` and ``SettleResponse`` carry ``extension_responses``, what the facilitator's
  ``EXTENSION-RESPONSES`` header said: not a wire field (never serialized, never read from a body), so a
  settlement the server passes on to its buyer never carries it.
- Scheme-specific data (``payload``) stays a dict here; each scheme parses its own
  (``parse_exact_evm_payload``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from . import _json
from .errors import ProtocolError, from_validation_error, join_where
from .fields import (
    WIRE_CONTEXT,
    Address,
    AtomicAmount,
    Bytes32Hex,
    Caip2Network,
    HexBytes,
    UnixTime,
    V1Network,
    WireInt,
)

__all__ = [
    "AnyPaymentPayload",
    "AnyPaymentRequired",
    "AnyRequirements",
    "ExactEvmAuthorization",
    "ExactEvmPayload",
    "FacilitatorRequest",
    "PaymentPayload",
    "PaymentPayloadV1",
    "PaymentRequired",
    "PaymentRequiredV1",
    "PaymentRequirements",
    "PaymentRequirementsV1",
    "ResourceInfo",
    "SettleResponse",
    "SupportedKind",
    "SupportedResponse",
    "VerifyResponse",
    "WireModel",
    "parse_exact_evm_payload",
    "parse_facilitator_request",
]

NonEmptyStr = Annotated[str, Field(min_length=1)]
JsonObject = dict[str, Any]


def _is_none(value: Any) -> bool:
    return value is None


def _version(*allowed: int) -> PlainValidator:
    def check(value: Any) -> int:
        # Literal[...] alone would also take true and 2.0.
        if type(value) is int and value in allowed:
            return value
        expected = " or ".join(map(str, allowed))
        raise PydanticCustomError("x402_version", f"expected the JSON number {expected}")

    return PlainValidator(check)


class WireModel(BaseModel):
    """Base of every wire message: camelCase aliases, unknown fields kept, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # A field whose value is None is left out of every dump: pydantic-core skips it itself,
        # which costs a fraction of filtering each model's dict in Python. Unknown fields are not
        # model fields, so their nulls stay.
        super().__pydantic_init_subclass__(**kwargs)
        for field in cls.model_fields.values():
            field.exclude_if = _is_none
        cls.model_rebuild(force=True)

    def to_wire(self) -> dict[str, Any]:
        """The wire dict: camelCase keys, JSON values, None-valued optional fields omitted."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        """Compact JSON text of ``to_wire``, as ``json.dumps`` writes it (ASCII, Python's floats).

        pydantic-core writes the same text several times faster when it is ASCII and holds no
        float (those are the only places where the two differ), which is what x402 messages are."""
        if not _holds_float(self):
            text = self.__pydantic_serializer__.to_json(self, by_alias=True).decode("utf-8")
            if text.isascii():
                return text
        return _json.dumps(self.to_wire(), type(self).__name__)

    @classmethod
    def from_wire(cls, data: dict[str, Any] | str | bytes, where: str = "") -> Self:
        """Validate wire data (a dict parsed from JSON, or JSON text); raises only ``ProtocolError``."""
        return cls._validate_object(_wire_object(data, where, cls.__name__), where)

    @classmethod
    def _validate_object(cls, obj: dict[str, Any], where: str) -> Self:
        try:
            return cls.model_validate(obj, by_alias=True, by_name=False, context=WIRE_CONTEXT)
        except ValidationError as exc:
            raise from_validation_error(exc, where, root=cls.__name__) from None


def _holds_float(root: WireModel) -> bool:
    """Whether a float (or a value of any type but str, int, bool, None, dict, list, tuple and
    models) is anywhere in ``root``'s fields and unknown fields, at any depth."""
    stack: list[Any] = [root]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is dict:
            stack.extend(value.values())
        elif kind is list or kind is tuple:
            stack.extend(value)
        elif isinstance(value, BaseModel):
            stack.extend(value.__dict__.values())
            if value.__pydantic_extra__:
                stack.extend(value.__pydantic_extra__.values())
        else:
            return True  # a float, or something json.dumps and pydantic-core may write apart
    return False


def _wire_object(data: object, where: str, root: str) -> dict[str, Any]:
    """Bring wire input to a dict parsed by the strict JSON parser."""
    label = where or root
    if isinstance(data, dict):
        data = _json.dumps(data, label)
    elif not isinstance(data, str | bytes | bytearray):
        raise ProtocolError(label, "expected a JSON object")
    return _json.loads_object(data, label)


# -- v2 ------------------------------------------------------------------------------------------------------


class ResourceInfo(WireModel):
    url: str
    description: str | None = None
    mime_type: str | None = None
    service_name: str | None = None
    tags: list[str] | None = None
    icon_url: str | None = None


class PaymentRequirements(WireModel):
    """One entry of ``accepts`` (v2)."""

    scheme: NonEmptyStr
    network: Caip2Network
    amount: AtomicAmount
    asset: NonEmptyStr
    pay_to: NonEmptyStr
    max_timeout_seconds: WireInt
    extra: JsonObject | None = None


class PaymentRequired(WireModel):
    """The 402 challenge (v2), carried base64-encoded in ``PAYMENT-REQUIRED``."""

    x402_version: Annotated[Literal[2], _version(2)]
    error: str | None = None
    resource: ResourceInfo
    accepts: Annotated[list[PaymentRequirements], Field(min_length=1)]
    extensions: JsonObject | None = None


class PaymentPayload(WireModel):
    """The payment (v2), carried base64-encoded in ``PAYMENT-SIGNATURE``."""

    x402_version: Annotated[Literal[2], _version(2)]
    resource: ResourceInfo | None = None
    accepted: PaymentRequirements
    payload: JsonObject
    extensions: JsonObject | None = None


# -- v1 ------------------------------------------------------------------------------------------------------


class PaymentRequirementsV1(WireModel):
    """One entry of ``accepts`` (v1)."""

    scheme: NonEmptyStr
    network: V1Network
    max_amount_required: AtomicAmount
    asset: NonEmptyStr
    pay_to: NonEmptyStr
    resource: str
    description: str = ""
    mime_type: str = ""
    max_timeout_seconds: WireInt
    output_schema: JsonObject | None = None
    extra: JsonObject | None = None


class PaymentRequiredV1(WireModel):
    """The 402 challenge (v1), carried as the JSON body."""

    x402_version: Annotated[Literal[1], _version(1)]
    error: str = ""
    accepts: list[PaymentRequirementsV1]


class PaymentPayloadV1(WireModel):
    """The payment (v1), carried base64-encoded in ``X-PAYMENT``."""

    x402_version: Annotated[Literal[1], _version(1)]
    scheme: NonEmptyStr
    network: V1Network
    payload: JsonObject


AnyPaymentRequired = PaymentRequired | PaymentRequiredV1
AnyPaymentPayload = PaymentPayload | PaymentPayloadV1
AnyRequirements = PaymentRequirements | PaymentRequirementsV1


# -- exact scheme on EVM (EIP-3009) --------------------------------------------------------------------------


class ExactEvmAuthorization(WireModel):
    """The EIP-3009 ``TransferWithAuthorization`` message, as sent."""

    from_: Address = Field(alias="from")
    to: Address
    value: AtomicAmount
    valid_after: UnixTime
    valid_before: UnixTime
    nonce: Bytes32Hex


class ExactEvmPayload(WireModel):
    """``payload`` of the ``exact`` scheme on EVM with EIP-3009."""

    signature: HexBytes
    authorization: ExactEvmAuthorization


def parse_exact_evm_payload(payload: dict[str, Any], where: str = "payload") -> ExactEvmPayload:
    """Parse the scheme data of an ``exact`` EVM payment; errors name e.g. ``payload.authorization.nonce``."""
    return ExactEvmPayload.from_wire(payload, where)


# -- Permit2 on EVM (exact with assetTransferMethod "permit2", and upto) -------------------------------------


class Permit2TokenPermissions(WireModel):
    """``permitted``: the token and the (maximum) amount the Permit2 signature allows."""

    token: Address
    amount: AtomicAmount


class Permit2Witness(WireModel):
    """The witness the proxy checks: ``{to, validAfter}`` (exact), plus ``facilitator`` (upto)."""

    to: Address
    valid_after: UnixTime
    facilitator: Address | None = None


class Permit2Authorization(WireModel):
    """The signed ``PermitWitnessTransferFrom``, as sent (the nonce is a decimal uint256)."""

    from_: Address = Field(alias="from")
    permitted: Permit2TokenPermissions
    spender: Address
    nonce: AtomicAmount
    deadline: UnixTime
    witness: Permit2Witness


class Permit2Payload(WireModel):
    """``payload`` of a Permit2 payment (``exact`` with Permit2, and ``upto``)."""

    signature: HexBytes
    permit2_authorization: Permit2Authorization


def parse_permit2_payload(payload: dict[str, Any], where: str = "payload") -> Permit2Payload:
    """Parse the scheme data of a Permit2 payment; errors name e.g. ``payload.permit2Authorization.nonce``."""
    return Permit2Payload.from_wire(payload, where)


class Eip2612SponsoringInfo(WireModel):
    """``extensions.eip2612GasSponsoring.info`` of a payment: a signed EIP-2612 permit for Permit2."""

    from_: Address = Field(alias="from")
    asset: Address
    spender: Address
    amount: AtomicAmount
    nonce: AtomicAmount
    deadline: UnixTime
    signature: HexBytes
    version: str = "1"


class Erc20ApprovalSponsoringInfo(WireModel):
    """``extensions.erc20ApprovalGasSponsoring.info`` of a payment: a signed ``approve`` transaction."""

    from_: Address = Field(alias="from")
    asset: Address
    spender: Address
    amount: AtomicAmount
    signed_transaction: HexBytes
    version: str = "1"


# -- facilitator ---------------------------------------------------------------------------------------------


class _FacilitatorAnswer(WireModel):
    """An answer of ``/verify`` or ``/settle``, with what the facilitator's ``EXTENSION-RESPONSES``
    header said (None: no header, or one that could not be read)."""

    _extension_responses: JsonObject | None = PrivateAttr(default=None)

    @property
    def extension_responses(self) -> JsonObject | None:
        return self._extension_responses

    def with_extension_responses(self, responses: JsonObject | None) -> Self:
        """This answer carrying ``responses``: a copy, or the answer itself when it carries them
        already (none on a verify without a catalog: answers are frozen, so no copy is needed)."""
        if responses is None and self._extension_responses is None:
            return self
        copy = self.model_copy()
        copy._extension_responses = responses
        return copy


class VerifyResponse(_FacilitatorAnswer):
    is_valid: StrictBool
    invalid_reason: str | None = None
    invalid_message: str | None = None
    payer: str | None = None
    extra: JsonObject | None = None  # a scheme's own answer (batch-settlement: the channel snapshot)


class SettleResponse(_FacilitatorAnswer):
    """Answer of ``/settle``; also the body of ``PAYMENT-RESPONSE`` / ``X-PAYMENT-RESPONSE``."""

    success: StrictBool
    error_reason: str | None = None
    error_message: str | None = None
    payer: str | None = None
    transaction: str = ""
    network: str
    amount: str | None = None
    extensions: JsonObject | None = None
    extra: JsonObject | None = None  # a scheme's own answer (batch-settlement: extra.channelState)


class SupportedKind(WireModel):
    x402_version: Annotated[Literal[1, 2], _version(1, 2)]
    scheme: NonEmptyStr
    network: NonEmptyStr
    extra: JsonObject | None = None


class SupportedResponse(WireModel):
    """Answer of ``GET /supported``."""

    kinds: list[SupportedKind]
    extensions: list[str] = Field(default_factory=list)
    signers: dict[str, list[str]] = Field(default_factory=dict)


class FacilitatorRequest(WireModel):
    """Body of ``POST /verify`` and ``/settle``: v2 shapes when ``x402Version`` is 2, v1 shapes when 1."""

    x402_version: Annotated[Literal[1, 2], _version(1, 2)]
    payment_payload: AnyPaymentPayload
    payment_requirements: AnyRequirements

    @model_validator(mode="after")
    def _versions_agree(self) -> Self:
        v2 = self.x402_version == 2
        if self.payment_payload.x402_version != self.x402_version:
            raise PydanticCustomError(
                "version_mismatch", "paymentPayload.x402Version differs from x402Version"
            )
        if isinstance(self.payment_requirements, PaymentRequirements) != v2:
            raise PydanticCustomError(
                "version_mismatch", f"paymentRequirements is not a v{self.x402_version} requirements object"
            )
        return self

    @classmethod
    def from_wire(cls, data: dict[str, Any] | str | bytes, where: str = "") -> Self:
        # The version picks the inner shapes, so inner errors name their real path (not a union branch).
        obj = _wire_object(data, where, cls.__name__)
        version = obj.get("x402Version")
        if type(version) is not int or version not in (1, 2):
            raise ProtocolError(join_where(where, "x402Version"), "expected the JSON number 1 or 2")
        shapes: tuple[type[WireModel], type[WireModel]] = (
            (PaymentPayload, PaymentRequirements)
            if version == 2
            else (PaymentPayloadV1, PaymentRequirementsV1)
        )
        inner: dict[str, Any] = {}
        for key, model_type in zip(("paymentPayload", "paymentRequirements"), shapes, strict=True):
            path = join_where(where, key)
            if key not in obj:
                raise ProtocolError(path, "required field is missing")
            inner[key] = model_type._validate_object(_as_dict(obj[key], path), path)
        return cls._validate_object({**obj, **inner}, where)


def _as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(where, "expected a JSON object")
    return value


def parse_facilitator_request(data: dict[str, Any] | str | bytes, where: str = "") -> FacilitatorRequest:
    """Parse a ``/verify`` or ``/settle`` body; raises only ``ProtocolError``."""
    return FacilitatorRequest.from_wire(data, where)
