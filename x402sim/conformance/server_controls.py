"""Server controls: the reference resource server with one rule broken on purpose.

Each control is the from-env reference server (``reference.reference_server``) built with a
subclass of ``ResourceServer`` that overrides one step, with one of its own switches, or wrapped
in an ASGI middleware that rewrites one thing in its answers. ``kills`` lists the cases each must
fail; the calibration tests prove it, and prove the reference passes them.

A control whose 402 must stay readable keeps the exact offer's scheme, network and asset intact:
the runner reads the payee from it before any case runs.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import unquote

from ..actors.messages import Handle, HttpRequest, HttpResponse, Settle, Unreachable, Verify
from ..actors.server import ResourceServer
from ..money import UNIT
from ..protocol import (
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    PaymentPayload,
    ProtocolError,
    ReasonClass,
    SettleResponse,
    encode_header,
    read_payment,
    reason_class,
    response_header_name,
)
from .asgi import capture, send_raw
from .controls import control
from .reference import InProcessService, reference_server

OVERSIZED_LIMIT = 16 * 1024


@dataclass
class OnNetwork(InProcessService):
    """A server target that needs the harness on a given network preset (v1 servers cannot name the
    local chain): tests run it with ``HarnessOptions(network=target.network)``."""

    network: str = "local"


def _server(name: str, role_class: type[ResourceServer] = ResourceServer, **switches) -> InProcessService:
    return InProcessService(
        "server",
        lambda env: reference_server(env, role_class=role_class, **switches)[1],
        name=f"control {name}",
        kind="control",
    )


def _wrapped(name: str, middleware: Callable, **switches) -> InProcessService:
    return InProcessService(
        "server",
        lambda env: middleware(reference_server(env, **switches)[1]),
        name=f"control {name}",
        kind="control",
    )


# -- ASGI: rewrite the reference's answers ----------------------------------------------------------

Rewrite = Callable[[dict, int, list[tuple[str, str]], bytes], tuple[int, list[tuple[str, str]], bytes]]


def rewriting(rewrite: Rewrite) -> Callable:
    """A middleware that buffers each HTTP answer of the app and passes it through ``rewrite``."""

    def middleware(app):
        async def wrapper(scope, receive, send) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            status, raw_headers, content = await capture(app, scope, receive)
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]
            status, headers, body = rewrite(scope, status, headers, content)
            raw = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in headers
                if k.lower() != "content-length"
            ]
            raw.append((b"content-length", str(len(body)).encode()))
            await send_raw(send, status, raw, body)

        return wrapper

    return middleware


def _standard(document) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def editing_header(name: str, edit: Callable[[dict], dict | None], encode: Callable[[dict], str] = _standard):
    """A middleware that decodes header ``name`` of every answer, edits the document and encodes it
    back with ``encode``."""

    def rewrite(scope, status, headers, body):
        out = []
        for key, value in headers:
            if key.lower() == name.lower():
                document = edit(json.loads(base64.b64decode(value)))
                if document is None:
                    continue
                value = encode(document)
            out.append((key, value))
        return status, out, body

    return rewriting(rewrite)


def _each_offer(edit: Callable[[dict], None]) -> Callable[[dict], dict]:
    def apply(document: dict) -> dict:
        for entry in document.get("accepts", []):
            edit(entry)
        return document

    return apply


# ================================================================================================
# the 402
# ================================================================================================


def _bare_402_elsewhere(env: dict[str, str]):
    main = env.get("PROTECTED_PATH", "/protected")

    def rewrite(scope, status, headers, body):
        if status != 402 or scope["path"] == main:
            return status, headers, body
        return status, [(k, v) for k, v in headers if k.lower() != "payment-required"], b"Payment Required"

    return rewriting(rewrite)(reference_server(env)[1])


@control(
    "server.bare-402-elsewhere",
    "server",
    "Paid routes other than the main one answer a bare 402: no PAYMENT-REQUIRED, a text body",
    kills=("server.handshake.header-present",),
)
def bare_402_elsewhere():
    return InProcessService("server", _bare_402_elsewhere, name="control bare-402-elsewhere", kind="control")


def _unpadded(document) -> str:
    text = json.dumps(document, separators=(",", ":"))
    while len(text.encode()) % 3 == 0:  # make sure standard base64 would need padding
        text += " "
    return base64.b64encode(text.encode()).decode().rstrip("=")


@control(
    "server.unpadded-base64",
    "server",
    "PAYMENT-REQUIRED is base64 without its = padding",
    kills=("server.handshake.base64-standard",),
)
def unpadded_base64():
    return _wrapped("unpadded-base64", editing_header("PAYMENT-REQUIRED", lambda d: d, _unpadded))


def _mojibake(document: dict) -> dict:
    document["resource"]["description"] = "Caf\u00e9 \u20ae0 resource".encode().decode("latin-1")
    return document


@control(
    "server.double-encoded-text",
    "server",
    "Non-ASCII text in PAYMENT-REQUIRED is UTF-8 read as Latin-1 and encoded again (x402#865)",
    kills=("server.handshake.utf8-json",),
)
def double_encoded_text():
    return _wrapped("double-encoded-text", editing_header("PAYMENT-REQUIRED", _mojibake))


def _without(key: str) -> Callable[[dict], dict]:
    def edit(document: dict) -> dict:
        document.pop(key, None)
        return document

    return edit


@control(
    "server.drops-resource",
    "server",
    "PAYMENT-REQUIRED has no resource object",
    kills=("server.handshake.v2-required-fields", "server.handshake.resource-url"),
)
def drops_resource():
    return _wrapped("drops-resource", editing_header("PAYMENT-REQUIRED", _without("resource")))


@control(
    "server.drops-extra",
    "server",
    "The accepts entries carry no extra (no EIP-712 name and version)",
    kills=("server.handshake.v2-accepts-fields", "server.handshake.eip712-extra"),
)
def drops_extra():
    return _wrapped(
        "drops-extra", editing_header("PAYMENT-REQUIRED", _each_offer(lambda e: e.pop("extra", None)))
    )


@control(
    "server.zero-timeout",
    "server",
    "maxTimeoutSeconds is 0",
    kills=("server.handshake.max-timeout-positive",),
)
def zero_timeout():
    return _wrapped(
        "zero-timeout",
        editing_header("PAYMENT-REQUIRED", _each_offer(lambda e: e.update(maxTimeoutSeconds=0))),
    )


def _decimal(entry: dict) -> None:
    entry["amount"] = f"{int(entry['amount']) / UNIT:.6f}"  # the price in dollars, not atomic units


@control(
    "server.decimal-amount",
    "server",
    "The amount is a decimal figure in token units (0.001000), not atomic units",
    kills=("server.handshake.atomic-amount",),
)
def decimal_amount():
    return _wrapped("decimal-amount", editing_header("PAYMENT-REQUIRED", _each_offer(_decimal)))


def _v1_named_copy(document: dict) -> dict:
    document["accepts"].append({**document["accepts"][0], "network": "base-sepolia"})
    return document


@control(
    "server.v1-network-name",
    "server",
    "A v2 accepts entry names its network the v1 way (base-sepolia), not in CAIP-2",
    kills=("server.handshake.caip2-network",),
)
def v1_network_name():
    return _wrapped("v1-network-name", editing_header("PAYMENT-REQUIRED", _v1_named_copy))


def _wrong_name(entry: dict) -> None:
    entry["extra"] = {**entry["extra"], "name": entry["extra"]["name"] + " (bridged)"}


@control(
    "server.wrong-token-name",
    "server",
    "extra.name is not the token's EIP-712 name",
    kills=("server.handshake.eip712-extra",),
)
def wrong_token_name():
    return _wrapped("wrong-token-name", editing_header("PAYMENT-REQUIRED", _each_offer(_wrong_name)))


ELSEWHERE = "0x000000000000000000000000000000000000dEaD"


@control(
    "server.ignores-configured-payee",
    "server",
    "The offer's payTo is a fixed address, not the payee the server was configured with",
    kills=("server.handshake.addresses",),
)
def ignores_configured_payee():
    return _wrapped(
        "ignores-configured-payee",
        editing_header("PAYMENT-REQUIRED", _each_offer(lambda e: e.update(payTo=ELSEWHERE))),
    )


def _unstable():
    counter = itertools.count()
    return _each_offer(lambda e: e.update(maxTimeoutSeconds=60 + next(counter)))


@control(
    "server.unstable-requirements",
    "server",
    "Every 402 carries different requirements (maxTimeoutSeconds changes per request)",
    kills=("server.handshake.stable-requirements",),
)
def unstable_requirements():
    return InProcessService(
        "server",
        lambda env: editing_header("PAYMENT-REQUIRED", _unstable())(reference_server(env)[1]),
        name="control unstable-requirements",
        kind="control",
    )


class PaywallsEverything(ResourceServer):
    """Answers every unpriced path with the 402 of its first route."""

    def handle(self, request: HttpRequest, now: int | None = None):
        if request.route_key not in self.routes:
            return self.challenge(next(iter(self.routes.values())), self.x402_version, "payment required")
        return (yield from super().handle(request, now))


@control(
    "server.paywalls-everything",
    "server",
    "Paths the server does not sell are answered 402 too",
    kills=("server.handshake.unpriced-path-free",),
)
def paywalls_everything():
    return _server("paywalls-everything", PaywallsEverything)


def _v1_sloppy(scope, status, headers, body):
    if status == 402:
        document = json.loads(body)
        for entry in document.get("accepts", []):
            entry.pop("resource", None)
            entry["maxAmountRequired"] = int(entry["maxAmountRequired"])
        body = json.dumps(document).encode()
    return status, headers, body


@control(
    "server.v1-sloppy-body",
    "server",
    "A v1 server whose 402 body drops resource and gives maxAmountRequired as a number",
    kills=("server.handshake.v1-body",),
)
def v1_sloppy_body():
    return OnNetwork(
        "server",
        lambda env: rewriting(_v1_sloppy)(reference_server(env, x402_version=1)[1]),
        name="control v1-sloppy-body",
        kind="control",
        network="base-sepolia",
    )


# ================================================================================================
# payments
# ================================================================================================

INVALID_PAYMENT_CASES = (
    "server.payment.bad-signature",
    "server.payment.high-s-signature",
    "server.payment.signer-not-from",
    "server.payment.amount-under",
    "server.payment.amount-over",
    "server.payment.wrong-recipient",
    "server.payment.wrong-asset",
    "server.payment.eoa-asset",
    "server.payment.wrong-network",
    "server.payment.wrong-chain-id",
    "server.payment.wrong-scheme",
    "server.payment.expired",
    "server.payment.not-yet-valid",
    "server.payment.unfunded-payer",
    "server.payment.tampered-accepted",
    "server.payment.tampered-payto",
)


class ServesAnyHeader(ResourceServer):
    """Serves a priced route to any request that carries a payment header, verifying and settling
    nothing."""

    def handle(self, request: HttpRequest, now: int | None = None):
        paid_route = request.route_key in self.routes
        if paid_route and (request.header(PAYMENT_SIGNATURE) or request.header(X_PAYMENT)):
            return (yield Handle(request))
        return (yield from super().handle(request, now))


@control(
    "server.serves-any-header",
    "server",
    "Any payment header opens the route: nothing is verified or settled",
    kills=(
        "server.payment.valid-pays-once",
        *INVALID_PAYMENT_CASES,
        "server.payment.undecodable-not-served",
        "server.payment.undecodable-status",
        "server.payment.bad-json",
        "server.payment.malformed-status",
        "server.payment.malformed-no-5xx",
        "server.payment.null-accepted",
        "server.replay.after-settlement",
        "server.replay.concurrent",
        "server.replay.concurrent-distinct",
        "server.headers.oversized",
        "server.headers.oversized-refused",
        "server.headers.duplicate-valid-invalid",
        "server.headers.duplicate-two-valid",
    ),
)
def serves_any_header():
    return _server("serves-any-header", ServesAnyHeader)


# Refused by the reference before any /verify: accepted matches none of its offers.
REFUSED_BEFORE_VERIFY = (
    "server.payment.wrong-asset",
    "server.payment.eoa-asset",
    "server.payment.wrong-network",
    "server.payment.wrong-scheme",
    "server.payment.tampered-accepted",
    "server.payment.tampered-payto",
)


class IgnoresInvalidVerdict(ResourceServer):
    """Fails open: when /verify says invalid, serves the handler anyway (and settles nothing)."""

    def verify_serve_settle(self, route, request, payment, requirements, version):
        verdict = yield Verify(payment, requirements)
        response = yield Handle(request)
        if not verdict.is_valid or response.status >= 400:
            return response
        settlement = yield Settle(payment, requirements)
        return self.deliver(route, version, response, settlement)


@control(
    "server.ignores-invalid-verdict",
    "server",
    "A payment /verify calls invalid is served anyway (fail-open), though never settled",
    kills=(
        *(c for c in INVALID_PAYMENT_CASES if c not in REFUSED_BEFORE_VERIFY),
        "server.replay.after-settlement",
        "server.replay.cross-endpoint",
        "server.headers.duplicate-valid-invalid",
    ),
)
def ignores_invalid_verdict():
    return _server("ignores-invalid-verdict", IgnoresInvalidVerdict)


class ForwardsAccepted(ResourceServer):
    """Sends the client's ``accepted`` to the facilitator as the requirements."""

    def match_offer(self, route, payment):
        if isinstance(payment, PaymentPayload):
            return payment.accepted
        return super().match_offer(route, payment)


@control(
    "server.forwards-accepted",
    "server",
    "The client's accepted is forwarded to /verify and /settle as the requirements",
    kills=(
        "server.payment.tampered-accepted",
        "server.payment.tampered-payto",
        "server.payment.server-requirements",
    ),
)
def forwards_accepted():
    return _server("forwards-accepted", ForwardsAccepted)


class TrustsAuthorizationTo(ResourceServer):
    """Pays whoever the payer's authorization names: the requirements' payTo is ``authorization.to``."""

    def match_offer(self, route, payment):
        offer = super().match_offer(route, payment)
        auth = payment.payload.get("authorization") if isinstance(payment.payload, dict) else None
        if offer is None or not isinstance(auth, dict) or not isinstance(auth.get("to"), str):
            return offer
        return offer.model_copy(update={"pay_to": auth["to"]})


@control(
    "server.trusts-authorization-to",
    "server",
    "The requirements sent to the facilitator take payTo from the payer's authorization",
    kills=("server.payment.wrong-recipient",),
)
def trusts_authorization_to():
    return _server("trusts-authorization-to", TrustsAuthorizationTo)


class CrashesOnBadHeader(ResourceServer):
    """Lets the error of an unreadable payment header escape as a 500 that quotes it."""

    def handle(self, request: HttpRequest, now: int | None = None):
        if request.route_key in self.routes:
            try:
                read_payment(request.headers)
            except ProtocolError as exc:
                trace = f'Traceback (most recent call last):\n  File "server.py", line 1\nTypeError: {exc}'
                return HttpResponse.of_json(500, {"error": trace})
        return (yield from super().handle(request, now))


@control(
    "server.crashes-on-bad-header",
    "server",
    "An unreadable payment header is answered 500 with the exception's text",
    kills=(
        "server.payment.undecodable-status",
        "server.payment.malformed-status",
        "server.payment.malformed-no-5xx",
        "server.payment.null-accepted",
        "server.payment.null-accepted-no-leak",
        "server.headers.oversized",
    ),
)
def crashes_on_bad_header():
    return _server("crashes-on-bad-header", CrashesOnBadHeader)


def _canonical(path: str) -> str:
    path = unquote(path.split("?", 1)[0]).lower()
    return re.sub("/+", "/", path).rstrip("/") or "/"


class LoosePaths(ResourceServer):
    """The paywall matches the raw path (query included) while the application routes loosely
    (query dropped, case folded, slashes collapsed): a variant of a paid path reaches the handler
    unpaid."""

    def handle(self, request: HttpRequest, now: int | None = None):
        if f"{request.method.upper()} {request.path}" not in self.routes:
            for key in self.routes:
                method, path = key.split(" ", 1)
                if method == request.method.upper() and _canonical(request.path) == _canonical(path):
                    return (yield Handle(replace(request, path=path)))
        return (yield from super().handle(request, now))


@control(
    "server.loose-paths",
    "server",
    "The paywall matches the raw path, the router a normalised one: path variants are served free",
    kills=("server.payment.query-not-free", "server.payment.path-variants-not-free"),
)
def loose_paths():
    return _server("loose-paths", LoosePaths)


# ================================================================================================
# replay
# ================================================================================================


def _authorization(payment) -> tuple[str, str] | None:
    auth = payment.payload.get("authorization") if isinstance(payment.payload, dict) else None
    if isinstance(auth, dict) and isinstance(auth.get("from"), str) and isinstance(auth.get("nonce"), str):
        return auth["from"].lower(), auth["nonce"].lower()
    return None


class ServesReplays(ResourceServer):
    """Remembers paid authorizations as "sessions" and serves them again without verifying."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sessions: set[tuple[str, str]] = set()

    def handle(self, request: HttpRequest, now: int | None = None):
        try:
            payment = read_payment(request.headers)
        except ProtocolError:
            payment = None
        key = _authorization(payment) if payment is not None else None
        if key in self.sessions and request.route_key in self.routes:
            return (yield Handle(request))
        response = yield from super().handle(request, now)
        if key is not None and response.status == 200:
            self.sessions.add(key)
        return response


@control(
    "server.serves-replays",
    "server",
    "A payment that was settled once opens the server again (any route), unverified",
    kills=("server.replay.after-settlement", "server.replay.cross-endpoint"),
)
def serves_replays():
    return _server("serves-replays", ServesReplays)


class DuplicateIsPaid(ResourceServer):
    """Takes a facilitator's duplicate_settlement as proof of payment and serves (x402#1805)."""

    def deliver(self, route, version, response, settlement: SettleResponse):
        if (
            response is not None
            and not settlement.success
            and reason_class(settlement.error_reason) is ReasonClass.duplicate
        ):
            claimed = settlement.model_copy(update={"success": True, "error_reason": None})
            header = (response_header_name(version), encode_header(claimed))
            return HttpResponse(response.status, (*response.headers, header), response.body)
        return super().deliver(route, version, response, settlement)


@control(
    "server.duplicate-is-paid",
    "server",
    "A duplicate_settlement answer is taken as paid: every concurrent copy of a payment is served",
    kills=("server.replay.concurrent",),
)
def duplicate_is_paid():
    return _server("duplicate-is-paid", DuplicateIsPaid)


# ================================================================================================
# settle
# ================================================================================================


@control(
    "server.serves-unsettled",
    "server",
    "The handler's response is delivered although settlement failed (the reference's serve_unsettled)",
    kills=(
        "server.settle.body-withheld-on-failure",
        "server.settle.failure-response",
        "server.settle.pending-not-served",
        "server.replay.concurrent",
    ),
)
def serves_unsettled():
    return _server("serves-unsettled", serve_unsettled=True)


class SettlesFailedHandler(ResourceServer):
    """Settles although the handler answered an error (x402#664)."""

    def verify_serve_settle(self, route, request, payment, requirements, version):
        verdict = yield Verify(payment, requirements)
        if not verdict.is_valid:
            return self.challenge(route, version, verdict.invalid_reason or "invalid payment")
        response = yield Handle(request)
        settlement = yield Settle(payment, requirements)
        if response.status >= 400:
            return response
        return self.deliver(route, version, response, settlement)


@control(
    "server.settles-failed-handler",
    "server",
    "A payment is settled although the handler answered 500",
    kills=("server.settle.handler-error-not-settled",),
)
def settles_failed_handler():
    return _server("settles-failed-handler", SettlesFailedHandler)


class DropsErrorReason(ResourceServer):
    """The failed-settlement 402 carries PAYMENT-RESPONSE without errorReason (x402#3223)."""

    def deliver(self, route, version, response, settlement: SettleResponse):
        if not settlement.success:
            settlement = settlement.model_copy(update={"error_reason": None, "error_message": None})
        return super().deliver(route, version, response, settlement)


@control(
    "server.drops-error-reason",
    "server",
    "A failed settlement's PAYMENT-RESPONSE has no errorReason",
    kills=("server.settle.failure-response", "server.settle.failure-reason-class"),
)
def drops_error_reason():
    return _server("drops-error-reason", DropsErrorReason)


class NoFailureHeader(ResourceServer):
    """A failed settlement is answered with a plain 402: no PAYMENT-RESPONSE."""

    def deliver(self, route, version, response, settlement: SettleResponse):
        if not settlement.success:
            return self.challenge(route, version, settlement.error_reason or "settlement failed")
        return super().deliver(route, version, response, settlement)


@control(
    "server.no-failure-header",
    "server",
    "A failed or pending settlement is answered 402 without PAYMENT-RESPONSE",
    kills=("server.settle.failure-response", "server.settle.pending-names-transaction"),
)
def no_failure_header():
    return _server("no-failure-header", NoFailureHeader)


def _invent_transaction(document: dict) -> dict:
    if document.get("transaction"):
        document["transaction"] = "0x" + secrets.token_hex(32)
    return document


@control(
    "server.invents-transaction",
    "server",
    "PAYMENT-RESPONSE names a transaction hash that is not the settlement's",
    kills=("server.settle.response-transaction", "server.settle.pending-names-transaction"),
)
def invents_transaction():
    return _wrapped("invents-transaction", editing_header("PAYMENT-RESPONSE", _invent_transaction))


def _url_safe(document: dict) -> str:
    for pad in range(6):  # make sure the URL-safe alphabet shows (- or _)
        text = json.dumps({**document, "extensions": {"pad": "~" * pad}}, separators=(",", ":"))
        encoded = base64.urlsafe_b64encode(text.encode()).decode()
        if "-" in encoded or "_" in encoded:
            return encoded.rstrip("=")
    return encoded  # pragma: no cover - "~" always yields "-" in one of six alignments


@control(
    "server.url-safe-base64",
    "server",
    "PAYMENT-RESPONSE is URL-safe base64 without padding",
    kills=("server.settle.response-decodes",),
)
def url_safe_base64():
    return _wrapped("url-safe-base64", editing_header("PAYMENT-RESPONSE", lambda d: d, _url_safe))


def _sparse(document: dict) -> dict:
    return {k: v for k, v in document.items() if k not in ("payer", "network")}


@control(
    "server.sparse-payment-response",
    "server",
    "PAYMENT-RESPONSE names neither the payer nor the network",
    kills=("server.settle.response-payer", "server.settle.response-network"),
)
def sparse_payment_response():
    return _wrapped("sparse-payment-response", editing_header("PAYMENT-RESPONSE", _sparse))


class ServesOnLostAnswer(ResourceServer):
    """Takes a /settle that did not answer as settled and serves."""

    def verify_serve_settle(self, route, request, payment, requirements, version):
        verdict = yield Verify(payment, requirements)
        if not verdict.is_valid:
            return self.challenge(route, version, verdict.invalid_reason or "invalid payment")
        response = yield Handle(request)
        if response.status >= 400:
            return response
        try:
            settlement = yield Settle(payment, requirements)
        except Unreachable:
            return response
        return self.deliver(route, version, response, settlement)


@control(
    "server.serves-on-lost-answer",
    "server",
    "A settlement whose answer was lost is taken as done: the body is served",
    kills=("server.settle.lost-answer-not-served",),
)
def serves_on_lost_answer():
    return _server("serves-on-lost-answer", ServesOnLostAnswer)


class ResendsSettle(ResourceServer):
    """Sends /settle again when its answer was lost."""

    def verify_serve_settle(self, route, request, payment, requirements, version):
        verdict = yield Verify(payment, requirements)
        if not verdict.is_valid:
            return self.challenge(route, version, verdict.invalid_reason or "invalid payment")
        response = yield Handle(request)
        if response.status >= 400:
            return response
        try:
            settlement = yield Settle(payment, requirements)
        except Unreachable:
            settlement = yield Settle(payment, requirements)
        return self.deliver(route, version, response, settlement)


@control(
    "server.resends-settle",
    "server",
    "A /settle whose answer was lost is sent again",
    kills=("server.settle.lost-answer-not-resent",),
)
def resends_settle():
    return _server("resends-settle", ResendsSettle)


# ================================================================================================
# headers
# ================================================================================================


def _settlement_on_402(scope, status, headers, body):
    if status == 402 and not any(k.lower() == "payment-response" for k, _ in headers):
        headers = [
            *headers,
            ("PAYMENT-RESPONSE", _standard({"success": False, "transaction": "", "network": ""})),
        ]
    return status, headers, body


@control(
    "server.settlement-header-on-402",
    "server",
    "Every 402 carries a PAYMENT-RESPONSE, even when nothing was settled",
    kills=("server.headers.no-response-on-402",),
)
def settlement_header_on_402():
    return _wrapped("settlement-header-on-402", rewriting(_settlement_on_402))


class CrashesOnLargeHeaders(ResourceServer):
    """Fails with a 500 on a payment header above 16 KiB."""

    def handle(self, request: HttpRequest, now: int | None = None):
        value = request.header(PAYMENT_SIGNATURE) or request.header(X_PAYMENT) or ""
        if len(value) > OVERSIZED_LIMIT:
            return HttpResponse.of_json(500, {"error": "internal error"})
        return (yield from super().handle(request, now))


@control(
    "server.crashes-on-large-headers",
    "server",
    "A payment header above 16 KiB is answered 500",
    kills=("server.headers.oversized",),
)
def crashes_on_large_headers():
    return _server("crashes-on-large-headers", CrashesOnLargeHeaders)


# ================================================================================================
# extensions
# ================================================================================================


class IgnoresPaymentIdentifier(ResourceServer):
    """Declares the payment-identifier extension (required) and then ignores every id."""

    def serve_identified(self, route, request, payment, now):
        return (yield from self._paid(route, request, payment, now))


@control(
    "server.ignores-payment-identifier",
    "server",
    "Declares payment-identifier as required but neither checks nor deduplicates ids",
    kills=(
        "server.extensions.payment-id-cached",
        "server.extensions.payment-id-conflict",
        "server.extensions.payment-id-required",
        "server.extensions.payment-id-malformed",
    ),
)
def ignores_payment_identifier():
    return _server("ignores-payment-identifier", IgnoresPaymentIdentifier, payment_identifier="required")


class MalformedIdentifierDeclaration(ResourceServer):
    """Declares payment-identifier with a non-boolean ``required`` and no schema."""

    def extensions(self):
        return {"payment-identifier": {"info": {"required": "no"}}}


@control(
    "server.malformed-identifier-declaration",
    "server",
    "The payment-identifier declaration has info.required as a string and no schema",
    kills=("server.extensions.payment-id-declaration",),
)
def malformed_identifier_declaration():
    return _server(
        "malformed-identifier-declaration", MalformedIdentifierDeclaration, payment_identifier="optional"
    )
