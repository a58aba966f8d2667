"""Server controls: the reference resource server with one rule broken on purpose.

Each control is the from-env reference server (``reference.reference_server``) built with a
subclass of ``ResourceServer`` that overrides one step, with one of its own switches, or wrapped
in an ASGI middleware that rewrites one thing in its answers. ``kills`` lists the cases each must
fail; the calibration tests prove it, and prove the reference passes them.

A control whose 402 must stay readable keeps the exact offer's scheme, network and asset intact:
the runner reads the payee from it before any case runs.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import posixpath
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
from .harness import EXTENSION_PROBE, EXTENSION_RESPONSES
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
    (``router``: query dropped, case folded, slashes collapsed): a variant of a paid path reaches
    the handler unpaid."""

    @staticmethod
    def router(path: str) -> str:
        return _canonical(path)

    def handle(self, request: HttpRequest, now: int | None = None):
        if f"{request.method.upper()} {request.path}" not in self.routes:
            for key in self.routes:
                method, path = key.split(" ", 1)
                if method == request.method.upper() and self.router(request.path) == self.router(path):
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


def _raw_paths(app):
    """A middleware handing the app the path as it was sent, percent-escapes kept (as a paywall
    matching the escaped path sees it)."""

    async def wrapper(scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("raw_path"):
            scope = {**scope, "path": scope["raw_path"].decode("latin-1")}
        await app(scope, receive, send)

    return wrapper


def _fully_decoded(path: str) -> str:
    path = path.split("?", 1)[0]
    while unquote(path) != path:
        path = unquote(path)
    return re.sub("/+", "/", path.replace("\\", "/"))


def _dots_resolved(path: str) -> str:
    return posixpath.normpath(path.split("?", 1)[0])


def _slashes_collapsed(path: str) -> str:
    return re.sub("/+", "/", path.split("?", 1)[0]).rstrip("/") or "/"


def _case_folded(path: str) -> str:
    return path.split("?", 1)[0].lower()


def _params_dropped(path: str) -> str:
    return re.sub(";[^/]*", "", path.split("?", 1)[0])


def _line_read(path: str) -> str:
    return unquote(path.split("?", 1)[0]).split("\0", 1)[0].rstrip("\r\n")


# family of spellings -> (what the loose router does, the router)
LOOSE_ROUTERS: dict[str, tuple[str, Callable[[str], str]]] = {
    "encoded": (
        "decodes percent-escapes until none is left, reads \\ as / and collapses slashes",
        _fully_decoded,
    ),
    "dot-segments": ("resolves . and .. segments", _dots_resolved),
    "slashes": ("collapses repeated slashes and drops a trailing one", _slashes_collapsed),
    "case": ("ignores letter case", _case_folded),
    "params": ("drops ; parameters", _params_dropped),
    "control-chars": ("decodes the path and reads it up to a NUL, without a final line break", _line_read),
}


def _loose_router(family: str, how: str, router: Callable[[str], str]) -> None:
    role_class = type(
        f"Loose{family.title().replace('-', '')}", (LoosePaths,), {"router": staticmethod(router)}
    )

    def build() -> InProcessService:
        return InProcessService(
            "server",
            lambda env: _raw_paths(reference_server(env, role_class=role_class)[1]),
            name=f"control loose-router-{family}",
            kind="control",
        )

    control(
        f"server.loose-router-{family}",
        "server",
        f"The paywall matches the escaped path as sent; the router {how}: those spellings are free",
        kills=(f"server.routes.{family}-not-free",),
    )(build)


for _family, (_how, _router) in LOOSE_ROUTERS.items():
    _loose_router(_family, _how, _router)


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
    kills=(
        "server.settle.response-transaction",
        "server.settle.pending-names-transaction",
        "server.settle.pending-has-transaction",
    ),
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
    """Takes a /settle that did not answer as settled and serves; with ``verify_fails_open``, also
    serves when /verify did not answer."""

    verify_fails_open = False

    def verify_serve_settle(self, route, request, payment, requirements, version):
        try:
            verdict = yield Verify(payment, requirements)
        except Unreachable:
            if not self.verify_fails_open:
                raise
            return (yield Handle(request))
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

    def settle_payment(self, payment, requirements):
        try:
            return (yield Settle(payment, requirements))
        except Unreachable:
            return (yield Settle(payment, requirements))


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

    def extensions(self, route=None):
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


# ================================================================================================
# caching
# ================================================================================================


def _no_cache_control(scope, status, headers, body):
    return status, [(k, v) for k, v in headers if k.lower() != "cache-control"], body


@control(
    "server.no-cache-control",
    "server",
    "No answer carries Cache-Control: a shared cache may store a 402 or a buyer's paid answer",
    kills=("server.caching.no-store-402", "server.caching.private-paid"),
)
def no_cache_control():
    return _wrapped("no-cache-control", rewriting(_no_cache_control))


# ================================================================================================
# facilitator trouble
# ================================================================================================


def _stale_when_slow(env: dict[str, str]):
    """The reference behind an edge that serves the last paid answer of a path when the paywall
    takes longer than half of FACILITATOR_TIMEOUT_SECONDS."""
    app = reference_server(env)[1]
    patience = float(env.get("FACILITATOR_TIMEOUT_SECONDS") or 30) / 2
    stale: dict[str, tuple[int, list, bytes]] = {}

    async def wrapper(scope, receive, send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        answer = asyncio.ensure_future(capture(app, scope, receive))
        try:
            status, headers, body = await asyncio.wait_for(asyncio.shield(answer), patience)
        except TimeoutError:
            if scope["path"] not in stale:
                status, headers, body = await answer
            else:
                status, headers, body = stale[scope["path"]]
        if 200 <= status < 300:
            stale[scope["path"]] = (status, headers, body)
        await send_raw(send, status, headers, body)

    return wrapper


@control(
    "server.serves-when-facilitator-slow",
    "server",
    "When the paywall is slow (its facilitator hangs), the last paid answer of the path is served",
    kills=("server.facilitator.hung-not-served", "server.facilitator.hung-answered"),
)
def serves_when_facilitator_slow():
    return InProcessService(
        "server", _stale_when_slow, name="control serves-when-facilitator-slow", kind="control"
    )


class FailsOpen(ServesOnLostAnswer):
    """Serves when the facilitator cannot be understood: a /verify or /settle that raised is skipped."""

    verify_fails_open = True


@control(
    "server.fails-open-on-facilitator",
    "server",
    "A /verify or /settle answer the server cannot read is skipped: the handler's answer is served",
    kills=("server.facilitator.malformed-reply-not-served", "server.facilitator.malformed-reply-502"),
)
def fails_open_on_facilitator():
    return _server("fails-open-on-facilitator", FailsOpen)


# ================================================================================================
# settle: pending, redirects
# ================================================================================================


class SettlesOnce(ResourceServer):
    """A single /settle: a pending settlement is never sent again."""

    def settle_payment(self, payment, requirements):
        return (yield Settle(payment, requirements))


@control(
    "server.no-pending-retry",
    "server",
    "A settlement_pending answer carrying a transaction is not settled again",
    kills=("server.settle.pending-retried-once",),
)
def no_pending_retry():
    return _server("no-pending-retry", SettlesOnce)


class SkipsSettleOnRedirect(ResourceServer):
    """Passes a handler's 3xx through unsettled, as it does a 4xx (x402#2826)."""

    def verify_serve_settle(self, route, request, payment, requirements, version):
        verdict = yield Verify(payment, requirements)
        if not verdict.is_valid:
            return self.challenge(route, version, verdict.invalid_reason or "invalid payment")
        response = yield Handle(request)
        if response.status >= 300:
            return response
        settlement = yield Settle(payment, requirements)
        return self.deliver(route, version, response, settlement)


@control(
    "server.skips-settle-on-redirect",
    "server",
    "A paid request whose handler redirects (3xx) gets the redirect without any settlement",
    kills=("server.settle.redirect-settled",),
)
def skips_settle_on_redirect():
    return _server("skips-settle-on-redirect", SkipsSettleOnRedirect)


# ================================================================================================
# payment flows
# ================================================================================================


def _flow_removed(entry: dict) -> None:
    entry.get("extra", {}).pop("paymentFlow", None)


@control(
    "server.upfront-unadvertised",
    "server",
    "Settles before the handler runs (upfront) while its offers advertise no paymentFlow",
    kills=("server.flow.advertised",),
)
def upfront_unadvertised():
    return InProcessService(
        "server",
        lambda env: editing_header("PAYMENT-REQUIRED", _each_offer(_flow_removed))(
            reference_server(env, upfront=True)[1]
        ),
        name="control upfront-unadvertised",
        kind="control",
    )


def _unknown_flow(entry: dict) -> None:
    entry["extra"] = {**entry.get("extra", {}), "paymentFlow": "prepaid"}


@control(
    "server.unknown-payment-flow",
    "server",
    "Its offers advertise extra.paymentFlow prepaid, a flow no client recognises",
    kills=("server.flow.advertised",),
)
def unknown_payment_flow():
    return _wrapped("unknown-payment-flow", editing_header("PAYMENT-REQUIRED", _each_offer(_unknown_flow)))


# ================================================================================================
# the facilitator's side channel
# ================================================================================================


def _leaks_extension_responses(scope, status, headers, body):
    if any(k.lower() == "payment-response" for k, _ in headers):
        probe = base64.b64encode(json.dumps(EXTENSION_PROBE).encode()).decode()
        headers = [*headers, (EXTENSION_RESPONSES, probe)]
    return status, headers, body


@control(
    "server.leaks-extension-responses",
    "server",
    "Answers that report a settlement carry the facilitator's EXTENSION-RESPONSES header",
    kills=("server.extensions.extension-responses-not-forwarded",),
)
def leaks_extension_responses():
    return _wrapped("leaks-extension-responses", rewriting(_leaks_extension_responses))
