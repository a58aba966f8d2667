"""Hypothesis strategies for x402 wire messages: valid models, their parts, and JSON building blocks.

Public for every test folder: ``from tests.protocol.strategies import payment_requirements``.
Every model strategy may add unknown wire fields (keys ``x-...``) so that round trips also prove that unknown
fields survive. Sizes stay small so that property tests are fast.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

from x402sim.protocol import (
    UINT256_LIMIT,
    V1_NETWORKS,
    ExactEvmAuthorization,
    ExactEvmPayload,
    FacilitatorRequest,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequiredV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    ResourceInfo,
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyResponse,
    WireModel,
    caip2_for_chain,
)

_HEX = "0123456789abcdefABCDEF"


def hex_strings(n_bytes: int) -> st.SearchStrategy[str]:
    """``0x`` + exactly ``2 * n_bytes`` hex digits of mixed case."""
    return st.text(_HEX, min_size=2 * n_bytes, max_size=2 * n_bytes).map(lambda digits: "0x" + digits)


addresses = hex_strings(20)
nonces = hex_strings(32)
signatures = st.one_of(hex_strings(65), st.integers(1, 128).flatmap(hex_strings))
uint256s = st.one_of(st.integers(0, UINT256_LIMIT - 1), st.sampled_from([0, 1, 10**6, UINT256_LIMIT - 1]))
amounts = uint256s
unix_times = uint256s
timeouts = st.integers(0, 10**6)

chain_ids = st.one_of(st.sampled_from([1, 8453, 84532, 31337]), st.integers(1, 10**30))
evm_networks = chain_ids.map(caip2_for_chain)
_namespaces = st.from_regex(r"[-a-z0-9]{3,8}", fullmatch=True).filter(lambda ns: ns != "eip155")
_references = st.from_regex(r"[-_a-zA-Z0-9]{1,32}", fullmatch=True)
caip2_networks = st.one_of(evm_networks, st.builds(lambda ns, ref: f"{ns}:{ref}", _namespaces, _references))
v1_networks = st.sampled_from(sorted(V1_NETWORKS))

short_text = st.text(max_size=12)
urls = st.builds(
    lambda path: f"http://127.0.0.1:4021/{path}", st.text(string.ascii_letters + "/-_", max_size=12)
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    short_text,
)
#: Any JSON value (as parsed by ``json.loads``).
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(short_text, json_values, max_size=4)

#: Unknown wire fields; the ``x-`` prefix keeps them apart from every declared field.
unknown_fields = st.dictionaries(
    st.text(string.ascii_letters, min_size=1, max_size=6).map(lambda key: "x-" + key), json_values, max_size=2
)


def _model(model_type: type[WireModel], **fields: st.SearchStrategy) -> st.SearchStrategy:
    """Build ``model_type`` from Python values, plus unknown wire fields."""
    return st.builds(
        lambda known, unknown: model_type(**known, **unknown), st.fixed_dictionaries(fields), unknown_fields
    )


def _optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


eip712_extras = st.fixed_dictionaries(
    {"name": st.sampled_from(["USDC", "USD Coin"]), "version": st.just("2")}
)

resource_infos = _model(
    ResourceInfo, url=urls, description=_optional(short_text), mime_type=_optional(short_text)
)

payment_requirements = _model(
    PaymentRequirements,
    scheme=st.sampled_from(["exact", "upto"]),
    network=caip2_networks,
    amount=amounts,
    asset=addresses,
    pay_to=addresses,
    max_timeout_seconds=timeouts,
    extra=_optional(eip712_extras | json_objects),
)

payment_requireds = _model(
    PaymentRequired,
    x402_version=st.just(2),
    error=_optional(short_text),
    resource=resource_infos,
    accepts=st.lists(payment_requirements, min_size=1, max_size=3),
    extensions=_optional(json_objects),
)

payment_requirements_v1 = _model(
    PaymentRequirementsV1,
    scheme=st.just("exact"),
    network=v1_networks,
    max_amount_required=amounts,
    asset=addresses,
    pay_to=addresses,
    resource=urls,
    description=short_text,
    mime_type=st.sampled_from(["", "application/json"]),
    max_timeout_seconds=timeouts,
    output_schema=_optional(json_objects),
    extra=_optional(eip712_extras),
)

payment_requireds_v1 = _model(
    PaymentRequiredV1,
    x402_version=st.just(1),
    error=short_text,
    accepts=st.lists(payment_requirements_v1, max_size=3),
)

exact_evm_authorizations = _model(
    ExactEvmAuthorization,
    from_=addresses,
    to=addresses,
    value=amounts,
    valid_after=unix_times,
    valid_before=unix_times,
    nonce=nonces,
)

exact_evm_payloads = _model(ExactEvmPayload, signature=signatures, authorization=exact_evm_authorizations)

#: Scheme data of a payment: an exact-EVM payload in wire form, or any JSON object.
scheme_payloads = st.one_of(exact_evm_payloads.map(lambda payload: payload.to_wire()), json_objects)

payment_payloads = _model(
    PaymentPayload,
    x402_version=st.just(2),
    resource=_optional(resource_infos),
    accepted=payment_requirements,
    payload=scheme_payloads,
    extensions=_optional(json_objects),
)

payment_payloads_v1 = _model(
    PaymentPayloadV1,
    x402_version=st.just(1),
    scheme=st.just("exact"),
    network=v1_networks,
    payload=scheme_payloads,
)

reason_codes = st.sampled_from(["", "invalid_exact_evm_payload_signature", "network_mismatch", "whatever"])

verify_responses = _model(
    VerifyResponse,
    is_valid=st.booleans(),
    invalid_reason=_optional(reason_codes),
    invalid_message=_optional(short_text),
    payer=_optional(addresses),
)

settle_responses = _model(
    SettleResponse,
    success=st.booleans(),
    error_reason=_optional(reason_codes),
    error_message=_optional(short_text),
    payer=_optional(addresses),
    transaction=st.one_of(st.just(""), hex_strings(32)),
    network=st.one_of(caip2_networks, v1_networks),
    amount=_optional(amounts.map(str)),
    extensions=_optional(json_objects),
)

supported_kinds = st.one_of(
    _model(SupportedKind, x402_version=st.just(2), scheme=st.just("exact"), network=caip2_networks),
    _model(SupportedKind, x402_version=st.just(1), scheme=st.just("exact"), network=v1_networks),
)

supported_responses = _model(
    SupportedResponse,
    kinds=st.lists(supported_kinds, max_size=3),
    extensions=st.lists(short_text, max_size=2),
    signers=st.dictionaries(st.just("eip155:*"), st.lists(addresses, max_size=2), max_size=1),
)

facilitator_requests = st.one_of(
    _model(
        FacilitatorRequest,
        x402_version=st.just(2),
        payment_payload=payment_payloads,
        payment_requirements=payment_requirements,
    ),
    _model(
        FacilitatorRequest,
        x402_version=st.just(1),
        payment_payload=payment_payloads_v1,
        payment_requirements=payment_requirements_v1,
    ),
)

#: (model type, strategy of valid instances) for every wire message.
MESSAGE_STRATEGIES: tuple[tuple[type[WireModel], st.SearchStrategy], ...] = (
    (PaymentRequired, payment_requireds),
    (PaymentRequiredV1, payment_requireds_v1),
    (PaymentPayload, payment_payloads),
    (PaymentPayloadV1, payment_payloads_v1),
    (PaymentRequirements, payment_requirements),
    (PaymentRequirementsV1, payment_requirements_v1),
    (ResourceInfo, resource_infos),
    (ExactEvmPayload, exact_evm_payloads),
    (VerifyResponse, verify_responses),
    (SettleResponse, settle_responses),
    (SupportedResponse, supported_responses),
    (FacilitatorRequest, facilitator_requests),
)

#: Any valid wire message.
messages = st.one_of(*(strategy for _, strategy in MESSAGE_STRATEGIES))

#: The models carried in x402 headers (the fuzzing targets).
HEADER_MODELS: tuple[type[WireModel], ...] = (
    PaymentRequired,
    PaymentRequiredV1,
    PaymentPayload,
    PaymentPayloadV1,
    SettleResponse,
)
