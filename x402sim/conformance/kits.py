"""Role kits: what the harness sets up for each role, and the context its cases get.

* **server**: the harness makes the payee the target is told to use, and plays the client: it reads
  the target's 402, signs payments (right or wrong on purpose) with fresh funded payers, and judges
  by the payee's balance, ``Transfer`` logs and ``authorizationState``.
* **facilitator**: the harness funds the key the target settles with, and plays the resource server:
  it builds requirements for a fresh payee and posts ``/verify`` and ``/settle`` bodies.
* **client**: the harness plays the resource server (often a hostile one, ``HostileServer``), runs
  the client command once per case with a fresh funded payer, and judges by what the client signed
  and what moved on chain.

Every role gets the run's ``TrustKit`` (``trust.py``): for servers the harness also serves its Web Bot
Auth key directory on loopback, and when the target advertises ``web-bot-auth`` every request a case
sends is signed with the conformance agent key unless the case says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from ..money import UNIT
from .context import CaseContext, Endpoint
from .evidence import Recorder, body_value, decode_lenient, message_of
from .forge import header_value, payment_v1, payment_v2, sign_exact
from .harness import Account, Harness
from .hostile import HostileServer
from .results import Exchange
from .trust import AP2, DIRECTORY_APP, WEB_BOT_AUTH, TrustKit

SECOND_PATH_SUFFIX = "-2"
FAILING_PATH_SUFFIX = "-fails"
REDIRECT_PATH_SUFFIX = "-redirect"  # a paid route whose handler redirects, when the target sells one
QUIET_POLL = 0.02  # seconds between looks at the facilitator's calls while waiting for them to end


@dataclass
class Setup:
    payee: str | None = None
    key_hex: str | None = None
    hostile: HostileServer | None = None
    trust_kit: TrustKit = field(default_factory=TrustKit)
    trust: frozenset[str] = frozenset()  # the trust features the target advertises
    mcp_front: Any = None  # over MCP, a client run's ``mcp_kit.ClientFront`` (the server as tools)
    a2a_front: Any = None  # over A2A, a client run's ``a2a_kit.A2aFront`` (the server as an agent)


def harness_apps(role: str, harness: Harness) -> dict[str, Any]:
    if role == "client":
        harness.hostile = HostileServer()
        return {"hostile": harness.hostile.app}
    if role == "server":
        return {DIRECTORY_APP: TrustKit(harness.options.seed).directory_app()}
    if role == "facilitator":
        from .bazaar_kit import SHOP_APP, BazaarShop

        harness.shop = BazaarShop()
        return {SHOP_APP: harness.shop.app}
    return {}


def trust_kit(harness: Harness) -> TrustKit:
    """The run's trust material, naming the harness's key directory when it serves one."""
    return TrustKit(harness.options.seed, harness.extra_apps.get(DIRECTORY_APP, ""))


def prepare(role: str, harness: Harness, options, trust: frozenset[str] = frozenset()) -> Setup:
    kit = trust_kit(harness)
    if role == "server":
        return Setup(payee=harness.new_account("payee").address, trust_kit=kit, trust=trust)
    if role == "facilitator":
        account = harness.funded_account(usdc=0, eth=100 * 10**18, label="facilitator-target")
        return Setup(key_hex=account.key_hex, trust_kit=kit, trust=trust)
    harness.hostile.url = harness.extra_apps["hostile"]
    return Setup(hostile=harness.hostile, trust_kit=kit, trust=trust)


def context_for(role, case, harness, target, base_url, http, setup, options, evidence, rng) -> CaseContext:
    kind = {"server": ServerContext, "facilitator": FacilitatorContext, "client": ClientContext}[role]
    ctx = kind(case, harness, target, base_url, http, rng, evidence)
    ctx.setup = setup
    ctx.options = options
    ctx.trust = setup.trust
    if role == "server" and WEB_BOT_AUTH in setup.trust:
        ctx.recorder.signer = setup.trust_kit.sign_request
    return ctx


class _AsIs:
    """The part of an ``httpx.AsyncClient`` a ``Recorder`` uses, sending every request with ``target``
    as its request target (httpcore's ``target`` extension)."""

    def __init__(self, http: httpx.AsyncClient, target: str) -> None:
        self.http, self.target = http, target.encode("ascii")

    def build_request(self, *args, **kwargs) -> httpx.Request:
        request = self.http.build_request(*args, **kwargs)
        request.extensions["target"] = self.target
        return request

    async def send(self, request: httpx.Request) -> httpx.Response:
        return await self.http.send(request)


@dataclass
class Challenge:
    """A 402 as the harness read it."""

    status: int
    version: int | None
    required: dict | None  # the decoded PAYMENT-REQUIRED (v2) or the body (v1)
    accepts: list[dict]
    headers: Any = None

    def offer(self, harness: Harness) -> dict | None:
        """The ``exact`` offer on the harness's chain and asset, if any."""
        for entry in self.accepts:
            if not isinstance(entry, dict):
                continue
            network = entry.get("network")
            if (
                entry.get("scheme") == "exact"
                and network in (harness.network, _v1_name(harness.chain_id))
                and str(entry.get("asset", "")).lower() == harness.asset.lower()
            ):
                return entry
        return None


def _v1_name(chain_id: int) -> str | None:
    from ..protocol import V1_EVM_CHAIN_IDS

    return next((name for name, cid in V1_EVM_CHAIN_IDS.items() if cid == chain_id), None)


@dataclass
class Paid:
    """A paid request the harness sent, and what it cost on chain."""

    response: Any
    payer: Account
    nonce: str
    payment: dict
    payer_delta: int
    payee_delta: int
    transfers: list


@dataclass
class ServerContext(CaseContext):
    setup: Setup = field(default=None)  # type: ignore[assignment]
    options: Any = None
    last_challenge: Challenge | None = None  # the last 402 read in this case
    _mandates: dict = field(default_factory=dict)  # EIP-3009 nonce -> the mandate chain it is bound to

    PAYMENT_IDENTIFIER = "payment-identifier"

    @property
    def payee(self) -> str:
        assert self.setup.payee is not None  # a server run learns its payee before its first case
        return self.setup.payee

    @property
    def price(self) -> int:
        return self.options.harness.price

    @property
    def endpoint(self) -> Endpoint:
        return self.options.endpoints[0]

    def path(self, which: str = "main") -> str:
        """The path of the ``main``, ``second`` or ``failing`` paid route (skipping the case when the
        target's test.config.json does not declare that route), or of the ``redirect`` one (the main
        path plus its suffix: no config declares it)."""
        if which == "redirect":
            return self.endpoint.path + REDIRECT_PATH_SUFFIX
        route = self.options.route(which)
        if route is None:
            self.skip(f"the target's test.config.json declares no {which} paid route")
        return route.path

    @property
    def facilitator_timeout(self) -> float:
        """Seconds the target was told it may wait for the facilitator (FACILITATOR_TIMEOUT_SECONDS)."""
        return self.options.harness.facilitator_timeout

    async def send_target(self, label: str, target: str, headers=None):
        """A request to the paid endpoint's method whose request target is ``target`` byte for byte
        (httpx would resolve ``.`` and ``..`` segments before sending)."""
        sent = urlsplit(self.base_url).path.rstrip("/") + target  # a base URL may carry a path
        recorder = Recorder(cast(httpx.AsyncClient, _AsIs(self.http, sent)), self.evidence)
        recorder.signer = self.recorder.signer
        return await recorder.send(
            f"{label} (request target {target!r})", self.endpoint.method, self.url(target), headers=headers
        )

    async def facilitator_quiet(self, within: float) -> bool:
        """Wait until every call the harness's facilitator received has been answered, for at most
        ``within`` seconds; whether it got quiet."""
        deadline = asyncio.get_running_loop().time() + within
        control = self.harness.control
        while not control.quiet() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(QUIET_POLL)
        return control.quiet()

    async def challenge(
        self, path: str | None = None, label: str = "unpaid request", headers=None
    ) -> Challenge:
        response = await self.send(label, self.endpoint.method, path or self.endpoint.path, headers=headers)
        self.check(response is not None, f"{label}: no answer from the server")
        challenge = read_challenge(response)
        if challenge.status == 402 and challenge.required is not None:
            self.last_challenge = challenge
        return challenge

    async def offer(self, path: str | None = None) -> tuple[Challenge, dict]:
        """The target's 402 and its exact offer on the harness's chain; fails the case when absent."""
        challenge = await self.challenge(path)
        self.check(challenge.status == 402, f"an unpaid request got {challenge.status}, not 402")
        offer = challenge.offer(self.harness)
        self.check(
            offer is not None,
            f"the 402 offers no exact payment in {self.harness.asset} on "
            f"{self.harness.network}: {json.dumps(challenge.accepts)[:300]}",
        )
        assert offer is not None  # checked just above
        amount = offer.get("amount", offer.get("maxAmountRequired"))
        self.check(
            isinstance(amount, str) and amount.isdigit(),
            f"the exact offer's amount {amount!r} is no integer in atomic units: it cannot be paid",
        )
        return challenge, offer

    async def optional_path(self, which: str) -> str:
        """The ``second`` or ``failing`` paid path, or skip the case when the target does not sell it."""
        path = self.path(which)
        challenge = await self.challenge(path, label=f"probe of the {which} paid path")
        if challenge.status != 402 or challenge.offer(self.harness) is None:
            self.skip(f"the target sells no {which} paid route at {path} (answered {challenge.status})")
        return path

    def sign(
        self,
        offer: dict,
        payer: Account | None = None,
        *,
        mandate: bool | None = None,
        chain=None,
        **overrides,
    ) -> tuple[Account, dict]:
        """A signed EIP-3009 authorization paying ``offer`` from ``payer`` (default: a fresh funded
        one). With ``mandate`` (default: when the server verifies AP2 mandates and no ``nonce`` is
        given) the payment is made under a fresh mandate of the conformance user, as a compliant
        agent's would be, or under ``chain`` (a ``MandateChain``) when given: the nonce is bound to
        the chain (unless ``nonce`` says otherwise), and ``payment`` attaches it."""
        payer = payer or self.harness.funded_account()
        wanted = mandate or (mandate is None and "nonce" not in overrides and self.mandates_verified(offer))
        if chain is None and wanted:
            chain = self.mandate_for(offer, payer)
        if chain is not None:
            overrides.setdefault("nonce", bytes.fromhex(chain.nonce().removeprefix("0x")))
        payload = sign_exact(payer.key, payer.address, offer, self.harness.now(), self.rng, **overrides)
        if chain is not None:
            self._mandates[payload["authorization"]["nonce"]] = chain
        return payer, payload

    def declares_mandates(self) -> bool:
        """Whether the last 402 declares the ``ap2`` extension (payments need an AP2 mandate)."""
        from ..trust.mandates import EXTENSION

        required = self.last_challenge.required if self.last_challenge else None
        extensions = required.get("extensions") if isinstance(required, dict) else None
        return isinstance(extensions, dict) and EXTENSION in extensions

    def mandates_verified(self, offer: dict) -> bool:
        """Whether payments of ``offer`` need an AP2 mandate: a v2 offer of a server said to verify
        them, or whose last 402 declares so."""
        return "amount" in offer and (AP2 in self.trust or self.declares_mandates())

    def open_mandate_for(self, offer: dict, **terms) -> str:
        """A fresh open mandate of the conformance user allowing ``offer``: to its payee, in its asset,
        up to ten times its price per payment and a hundred in all (``terms``, the arguments of
        ``TrustKit.open_mandate``, change that)."""
        price = int(offer["amount"])
        settings = {
            "pay_to": [offer["payTo"]],
            "network": offer["network"],
            "asset": offer["asset"],
            "amount_range": (0, 10 * price),
            "budget": 100 * price,
        }
        return self.setup.trust_kit.open_mandate(**{**settings, **terms})

    def mandate_for(self, offer: dict, payer: Account, opened: str | None = None, **terms):
        """The ``MandateChain`` for one payment of ``offer`` from ``payer``, closing ``opened``
        (default: a fresh ``open_mandate_for(offer)``) for the last 402's resource; ``terms`` (another
        ``amount`` or ``pay_to``) change the closed mandate."""
        required = self.last_challenge.required if self.last_challenge else {}
        resource = required.get("resource") if isinstance(required, dict) else None
        settings = {
            "pay_to": offer["payTo"],
            "amount": int(offer["amount"]),
            "network": offer["network"],
            "asset": offer["asset"],
            "payer": payer.address,
            "resource": (resource.get("url") if isinstance(resource, dict) else None) or "",
        }
        opened = opened if opened is not None else self.open_mandate_for(offer)
        return self.setup.trust_kit.close_mandate(opened, **{**settings, **terms})

    def payment(self, offer: dict, payload: dict, **extra) -> dict:
        """The payment document for ``offer``: v1 when the offer is a v1 one (``maxAmountRequired``),
        else v2 echoing ``offer`` as ``accepted`` (``extra`` adds top-level v2 fields; a mandate
        ``sign`` made for ``payload`` goes in ``extensions`` unless ``extra`` gives them)."""
        if "maxAmountRequired" in offer and "amount" not in offer:
            return payment_v1(offer, payload)
        chain = self._mandates.get(str(payload.get("authorization", {}).get("nonce")))
        if chain is not None and "extensions" not in extra:
            from ..trust.mandates import attach

            extra["extensions"] = attach(None, chain)
        return payment_v2(offer, payload, **extra)

    @property
    def identifier_declaration(self) -> dict | None:
        """The ``payment-identifier`` extension the last 402 declared (v2), or None."""
        required = self.last_challenge.required if self.last_challenge else None
        extensions = required.get("extensions") if isinstance(required, dict) else None
        declared = extensions.get(self.PAYMENT_IDENTIFIER) if isinstance(extensions, dict) else None
        return declared if isinstance(declared, dict) else None

    @property
    def identifier_required(self) -> bool:
        declared = self.identifier_declaration or {}
        info = declared.get("info")
        return isinstance(info, dict) and info.get("required") is True

    def new_payment_id(self) -> str:
        """A fresh payment identifier (``[A-Za-z0-9_-]``, 16-128 characters), from the case's rng."""
        return "conformance_" + self.rng.randbytes(12).hex()

    def with_payment_id(self, payment: dict, payment_id: str | None = None) -> dict:
        """``payment`` carrying ``payment_id`` (a fresh one when None) in its extensions, echoing the
        server's declaration as the extension's clients do."""
        declared = self.identifier_declaration or {"info": {"required": False}}
        info = {**(declared.get("info") or {}), "id": payment_id or self.new_payment_id()}
        extensions = {
            **(payment.get("extensions") or {}),
            self.PAYMENT_IDENTIFIER: {**declared, "info": info},
        }
        return {**payment, "extensions": extensions}

    def header_for(self, payment: Any) -> str:
        """The request header that carries ``payment``: ``X-PAYMENT`` for v1, else ``PAYMENT-SIGNATURE``."""
        v1 = isinstance(payment, dict) and payment.get("x402Version") == 1
        return "X-PAYMENT" if v1 else "PAYMENT-SIGNATURE"

    def complete(self, payment: Any) -> Any:
        """What a compliant client adds on its own: a payment identifier when the server requires one
        and ``payment`` (a v2 document) carries none."""
        if not (self.identifier_required and isinstance(payment, dict) and payment.get("x402Version") == 2):
            return payment
        extension = (payment.get("extensions") or {}).get(self.PAYMENT_IDENTIFIER)
        info = extension.get("info") if isinstance(extension, dict) else None
        if isinstance(info, dict) and "id" in info:
            return payment
        return self.with_payment_id(payment)

    async def pay(
        self,
        offer: dict,
        payment: dict,
        *,
        path: str | None = None,
        label: str = "paid request",
        header: str | None = None,
        complete: bool = True,
    ):
        """Send ``payment`` (completed as a compliant client would unless ``complete`` is False)."""
        if complete:
            payment = self.complete(payment)
        return await self.send(
            label,
            self.endpoint.method,
            path or self.endpoint.path,
            headers={header or self.header_for(payment): header_value(payment)},
        )

    async def send_headers(self, label: str, headers: list[tuple[str, str]], path: str | None = None):
        """A request to ``path`` (the main paid path) with exactly these header lines (repeats kept)."""
        return await self.send(label, self.endpoint.method, path or self.endpoint.path, headers=headers)

    def snapshot(self) -> tuple[int, int]:
        """``(block number, payee balance)`` now: what ``moved_since`` measures from."""
        return self.harness.block_number(), self.harness.balance(self.payee)

    def moved_since(self, snapshot: tuple[int, int], *parties: str) -> tuple[int, list]:
        """``(payee balance delta, Transfer logs from or to the payee or any of ``parties``)`` since
        ``snapshot``."""
        block, balance = snapshot
        watched = {a.lower() for a in (self.payee, *parties)}
        transfers = [
            t
            for t in self.harness.transfers_since(block)
            if t.from_.lower() in watched or t.to.lower() in watched
        ]
        return self.harness.balance(self.payee) - balance, transfers

    @staticmethod
    def settlement_header(response) -> tuple[str | None, Any]:
        """``(raw value, leniently decoded JSON)`` of ``PAYMENT-RESPONSE`` (or ``X-PAYMENT-RESPONSE``);
        ``(None, None)`` when the response has neither."""
        if response is None:
            return None, None
        for name in ("payment-response", "x-payment-response"):
            value = response.headers.get(name)
            if value is not None:
                return value, decode_lenient(value)
        return None, None

    def transfer_facts(self, name: str, transfers: list) -> list[dict]:
        return self.fact(name, [transfer_json(t) for t in transfers])

    async def paid(
        self,
        offer: dict | None = None,
        *,
        path: str | None = None,
        label: str = "paid request",
        payer: Account | None = None,
        **overrides,
    ) -> Paid:
        """Sign a valid (or overridden) payment for ``offer``, send it, and measure the chain around it."""
        if offer is None:
            _, offer = await self.offer(path)
        payer, payload = self.sign(offer, payer, **overrides)
        payment = self.complete(self.payment(offer, payload))
        before = (
            self.harness.block_number(),
            self.harness.balance(payer.address),
            self.harness.balance(self.payee),
        )
        response = await self.pay(offer, payment, path=path, label=label)
        after_payer, after_payee = self.harness.balance(payer.address), self.harness.balance(self.payee)
        transfers = self.harness.transfers_since(before[0])
        return Paid(
            response,
            payer,
            payload["authorization"]["nonce"],
            payment,
            after_payer - before[1],
            after_payee - before[2],
            transfers,
        )

    def chain_facts(self, paid: Paid, name: str = "payment") -> None:
        self.fact(f"{name}.payer_delta", paid.payer_delta)
        self.fact(f"{name}.payee_delta", paid.payee_delta)
        self.fact(f"{name}.transfers", [transfer_json(t) for t in paid.transfers])
        self.fact(f"{name}.authorization_used", self.harness.used(paid.payer.address, paid.nonce))


def check_settlement(ctx: CaseContext, settlement: Any, offer: dict, paid: Any, what: str) -> None:
    """Judge a settlement a server reported over a transport other than HTTP (``what`` names where it
    was read): a successful one, on the offer's network, naming the transaction that moved the price
    to the payee (``paid``: the chain's account of the paid request)."""
    ctx.check(isinstance(settlement, dict), f"{what} is {settlement!r}, not an object")
    assert isinstance(settlement, dict)  # checked just above
    ctx.check(settlement.get("success") is True, f"{what}'s success is {settlement.get('success')!r}")
    ctx.check(
        settlement.get("network") == offer.get("network"),
        f"{what}'s network {settlement.get('network')!r} is not the offer's {offer.get('network')!r}",
    )
    tx = settlement.get("transaction")
    ctx.check(isinstance(tx, str) and tx, f"{what}'s transaction is {tx!r}")
    assert isinstance(tx, str)  # checked just above
    price = int(offer["amount"])
    ctx.check(paid.payee_delta == price, f"the payee received {paid.payee_delta}, not the price {price}")
    hashes = sorted({"0x" + t.tx_hash.hex() for t in paid.transfers})
    ctx.fact("transfer_transactions", hashes)
    ctx.check(
        tx.lower() in hashes,
        f"{what} names {tx}, not the transaction that moved the price ({', '.join(hashes) or 'none'})",
    )


def same_address(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same address, whatever their case (False for a non-string)."""
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def transfer_json(t) -> dict:
    """A ``Transfer`` log as evidence: who, to whom, how much, in which transaction and block."""
    return {
        "from": t.from_,
        "to": t.to,
        "value": t.value,
        "tx": "0x" + t.tx_hash.hex(),
        "block": t.block_number,
    }


def read_challenge(response) -> Challenge:
    """Read a 402 leniently: the v2 header when present, else a v1 body."""
    header = response.headers.get("payment-required")
    if header is not None:
        required = decode_lenient(header)
        accepts = required.get("accepts") if isinstance(required, dict) else None
        return Challenge(
            response.status_code, 2, required, accepts if isinstance(accepts, list) else [], response.headers
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("x402Version") == 1:
        accepts = body.get("accepts")
        return Challenge(
            response.status_code, 1, body, accepts if isinstance(accepts, list) else [], response.headers
        )
    return Challenge(response.status_code, None, None, [], response.headers)


@dataclass
class FacilitatorContext(CaseContext):
    setup: Setup = field(default=None)  # type: ignore[assignment]
    options: Any = None

    def requirements(self, amount: int = 1_000, pay_to: str | None = None, **fields) -> dict:
        """Requirements the harness (as a resource server) would send, for a fresh payee."""
        document = {
            "scheme": "exact",
            "network": self.harness.network,
            "amount": str(amount),
            "asset": self.harness.asset,
            "payTo": pay_to or self.harness.new_account("payee").address,
            "maxTimeoutSeconds": 60,
            "extra": {"name": self.harness.asset_name, "version": self.harness.asset_version},
        }
        document.update(fields)
        return document

    def sign(self, requirements: dict, payer: Account | None = None, **overrides) -> tuple[Account, dict]:
        payer = payer or self.harness.funded_account()
        payload = sign_exact(
            payer.key, payer.address, requirements, self.harness.now(), self.rng, **overrides
        )
        return payer, payload

    async def call(self, endpoint: str, payment: Any, requirements: Any, label: str | None = None, **kwargs):
        body = {"x402Version": 2, "paymentPayload": payment, "paymentRequirements": requirements}
        return await self.send(label or endpoint, "POST", f"/{endpoint}", json_body=body, **kwargs)

    # -- raw requests -----------------------------------------------------------------------------

    async def post_raw(
        self, endpoint: str, content: bytes | str, label: str | None = None, content_type="application/json"
    ):
        """POST ``content`` as it is (not JSON-encoded) to ``/verify`` or ``/settle``."""
        return await self.send(
            label or endpoint, "POST", f"/{endpoint}", headers={"content-type": content_type}, content=content
        )

    async def supported(self, label: str = "GET /supported"):
        return await self.send(label, "GET", "/supported")

    @staticmethod
    def answer(response) -> Any:
        """The JSON body of ``response`` (None when there is no response or it is not JSON)."""
        if response is None:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    # -- the chain, as a resource server and its payers see it -----------------------------------

    @property
    def facilitator_address(self) -> str | None:
        """The address of the key the target was given to settle with (None when none was)."""
        from ..evm.eip712 import address_of_key

        key_hex = getattr(self.setup, "key_hex", None)
        return address_of_key(bytes.fromhex(key_hex.removeprefix("0x"))) if key_hex else None

    def transfers_from(self, address: str, since_block: int) -> list:
        """Token ``Transfer`` logs from ``address`` in blocks after ``since_block``."""
        return [t for t in self.harness.transfers_since(since_block) if t.from_.lower() == address.lower()]

    def landed(self, tx_hash: Any, payer: str, pay_to: str, amount: int):
        """``(receipt, ok)``: the receipt of ``tx_hash`` (None when there is none) and whether it
        succeeded holding the token ``Transfer`` of ``amount`` from ``payer`` to ``pay_to``."""
        if not isinstance(tx_hash, str) or len(tx_hash.removeprefix("0x")) != 64:
            return None, False
        receipt = self.harness.receipt(tx_hash)
        if receipt is None:
            return None, False
        ok = receipt.success and any(
            t.token.lower() == self.harness.asset.lower()
            and t.from_.lower() == payer.lower()
            and t.to.lower() == pay_to.lower()
            and t.value == amount
            for t in receipt.transfers()
        )
        return receipt, ok

    def authorization_txs(self, nonce_hex: str, since_block: int) -> list[str]:
        """Hashes of the transactions mined after ``since_block`` whose calldata carries the
        authorization nonce ``nonce_hex``: every attempt to settle it, landed or reverted."""
        needle = nonce_hex.removeprefix("0x").lower()
        found = []
        for number in range(since_block + 1, self.harness.block_number() + 1):
            block = self.harness.chain.rpc("eth_getBlockByNumber", hex(number), True) or {}
            for tx in block.get("transactions", []):
                if isinstance(tx, dict) and needle in str(tx.get("input") or tx.get("data") or "").lower():
                    found.append(tx["hash"])
        return found

    def cancel_authorization(self, account: Account, nonce_hex: str, requirements: dict) -> str:
        """EIP-3009 ``cancelAuthorization`` of ``account``'s nonce, signed over the EIP-712 domain of
        ``requirements`` and sent by ``account`` (which needs ETH); returns the tx hash."""
        from eth_hash.auto import keccak
        from eth_utils import to_canonical_address

        from ..evm.eip712 import sign_digest, split_signature, typed_data_digest
        from ..evm.token import encode_call
        from .forge import domain_of

        nonce = bytes.fromhex(nonce_hex.removeprefix("0x"))
        typehash = keccak(b"CancelAuthorization(address authorizer,bytes32 nonce)")
        struct_hash = keccak(typehash + to_canonical_address(account.address).rjust(32, b"\0") + nonce)
        v, r, s = split_signature(
            sign_digest(account.key, typed_data_digest(domain_of(requirements), struct_hash))
        )
        data = encode_call(
            "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)", account.address, nonce, v, r, s
        )
        return self.transact(account, requirements["asset"], data, gas=100_000)

    def transact(self, account: Account, to: str | None, data: bytes, gas: int = 200_000) -> str:
        """Sign and send a transaction from ``account`` (which needs ETH); returns the tx hash. The
        chain mines it at once."""
        return "0x" + self.harness.chain.transact(account.key, to, data, gas=gas).hex()

    def send_token(self, account: Account, to: str, amount: int) -> str:
        """A plain ERC-20 ``transfer`` of the harness asset from ``account``."""
        from eth_utils import to_checksum_address

        from ..evm.token import encode_call

        data = encode_call("transfer(address,uint256)", to_checksum_address(to), amount)
        return self.transact(account, self.harness.asset, data, gas=100_000)

    def deploy(self, runtime: bytes) -> str:
        """Deploy a contract whose code is ``runtime`` (at most 255 bytes); returns its address."""
        if len(runtime) > 0xFF:
            raise ValueError("runtime code longer than 255 bytes")
        n = len(runtime)
        # PUSH1 n PUSH1 12 PUSH1 0 CODECOPY PUSH1 n PUSH1 0 RETURN, then the runtime code
        init = bytes([0x60, n, 0x60, 12, 0x60, 0, 0x39, 0x60, n, 0x60, 0, 0xF3]) + runtime
        deployer = self.harness.funded_account(usdc=0, eth=10**18, label="deployer")
        tx_hash = self.transact(deployer, None, init, gas=200_000)
        receipt = self.harness.chain.rpc("eth_getTransactionReceipt", tx_hash) or {}
        if int(receipt.get("status", "0x0"), 16) != 1 or not receipt.get("contractAddress"):
            raise RuntimeError(f"deploying a test contract failed: {receipt}")
        from eth_utils import to_checksum_address

        return to_checksum_address(receipt["contractAddress"])

    def transaction_count(self, address: str) -> int:
        """How many transactions ``address`` has sent, its pending ones included (its next nonce)."""
        return int(self.harness.chain.rpc("eth_getTransactionCount", address, "pending"), 16)

    def transactions_since(self, since_block: int) -> list[dict]:
        """``{"hash", "from", "to"}`` of every transaction mined after ``since_block``, whoever sent it."""
        found = []
        for number in range(since_block + 1, self.harness.block_number() + 1):
            block = self.harness.chain.rpc("eth_getBlockByNumber", hex(number), True) or {}
            found += [
                {"hash": tx.get("hash"), "from": tx.get("from"), "to": tx.get("to")}
                for tx in block.get("transactions", [])
                if isinstance(tx, dict)
            ]
        return found

    def chain_knows(self, tx_hash: Any) -> bool:
        """Whether ``tx_hash`` (0x and 32 bytes of hex) names a transaction the chain holds, mined
        or pending."""
        if not isinstance(tx_hash, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", tx_hash):
            return False
        return self.harness.chain.rpc("eth_getTransactionByHash", tx_hash) is not None


@dataclass
class ClientContext(CaseContext):
    setup: Setup = field(default=None)  # type: ignore[assignment]
    options: Any = None

    @property
    def hostile(self) -> HostileServer:
        assert self.setup.hostile is not None  # prepare() gives a client run its hostile server
        return self.setup.hostile

    def client_env(self, payer: Account, path: str = "/resource") -> dict[str, str]:
        """The environment a client run gets: the official e2e harness's variables for ``payer``. Over
        MCP, as the official e2e MCP clients read them: ``RESOURCE_SERVER_URL`` is the harness's tool
        server, ``ENDPOINT_PATH`` the tool's name (the path without its slash); ``MCP_SERVER_URL``
        (x402sim's) its streamable HTTP endpoint. Over A2A: ``RESOURCE_SERVER_URL`` is the harness's
        paid agent, ``ENDPOINT_PATH`` the skill's id."""
        if self.setup.a2a_front is not None:
            skill = path.removeprefix("/")
            self.setup.a2a_front.tools.add(skill)
            return {
                "RESOURCE_SERVER_URL": self.setup.a2a_front.url,
                "ENDPOINT_PATH": skill,
                "EVM_PRIVATE_KEY": payer.key_hex,
                "CLIENT_EVM_PRIVATE_KEY": payer.key_hex,
                "EVM_NETWORK": self.harness.network,
                "EVM_RPC_URL": self.harness.rpc_url,
            }
        front = self.setup.mcp_front
        if front is not None:
            tool = path.removeprefix("/")
            front.tools.add(tool)
            return {
                "RESOURCE_SERVER_URL": front.url.removesuffix("/mcp"),
                "ENDPOINT_PATH": tool,
                "MCP_SERVER_URL": front.url,
                "EVM_PRIVATE_KEY": payer.key_hex,
                "CLIENT_EVM_PRIVATE_KEY": payer.key_hex,
                "EVM_NETWORK": self.harness.network,
                "EVM_RPC_URL": self.harness.rpc_url,
            }
        return {
            "RESOURCE_SERVER_URL": self.hostile.url,
            "ENDPOINT_PATH": path,
            "EVM_PRIVATE_KEY": payer.key_hex,
            "CLIENT_EVM_PRIVATE_KEY": payer.key_hex,
            "EVM_NETWORK": self.harness.network,
            "EVM_RPC_URL": self.harness.rpc_url,
        }

    async def run_client(
        self,
        path: str = "/resource",
        *,
        usdc: int = 10 * UNIT,
        label: str = "client run",
        payer: Account | None = None,
    ):
        """Run the client once against the harness's server at ``path`` with a fresh funded payer
        (or ``payer``).

        Returns ``(run, payer, before_block)``; the run's output and verdict, and every request the
        harness's server saw during the run, go into the evidence."""
        payer = payer or self.harness.funded_account(usdc=usdc, label="client-payer")
        before, first_seen = self.harness.block_number(), len(self.hostile.seen)
        run = await self.target.run(self.client_env(payer, path))
        self._record_run(label, run)
        self._record_seen(first_seen)
        return run, payer, before

    async def run_clients(
        self, k: int, path: str = "/resource", *, payer: Account, label: str = "concurrent client run"
    ):
        """Run the client ``k`` times at once, all with ``payer``; returns ``(runs, before_block)``."""
        before, first_seen = self.harness.block_number(), len(self.hostile.seen)
        env = self.client_env(payer, path)
        runs = await asyncio.gather(*(self.target.run(dict(env)) for _ in range(k)))
        for i, run in enumerate(runs):
            self._record_run(f"{label} {i + 1}/{k}", run)
        self._record_seen(first_seen)
        return runs, before

    def _record_run(self, label: str, run) -> None:
        """Note the run; its verdict and output tail become the facts ``client.verdict`` and
        ``client.output_tail`` (``client.run<n>.…`` for the n-th run of a case, n >= 2)."""
        self.note(f"{label}: exit code {run.exit_code} after {run.duration} s")
        n = 1 + sum(1 for name in self.evidence.chain if name.endswith(".verdict"))
        prefix = "client" if n == 1 else f"client.run{n}"
        self.fact(f"{prefix}.verdict", run.verdict)
        self.fact(f"{prefix}.output_tail", run.output[-2000:])

    def _record_seen(self, first: int) -> None:
        for seen in self.hostile.seen[first:]:
            answer = seen.answer
            self.evidence.exchanges.append(
                Exchange(
                    label="client request seen by the harness server",
                    request=message_of(
                        seen.headers, method=seen.method, url=seen.path, body=body_value(seen.body)
                    ),
                    response=None
                    if answer is None
                    else message_of(
                        dict(answer.headers),
                        status=answer.status,
                        body=answer.body if not isinstance(answer.body, bytes) else body_value(answer.body),
                    ),
                )
            )

    def payer_transfers(self, payer: Account, before: int, name: str = "transfers") -> list[dict]:
        """The token transfers from ``payer`` since block ``before``, recorded as the fact ``name``."""
        return self.fact(
            name,
            [
                transfer_json(t)
                for t in self.harness.transfers_since(before)
                if t.from_.lower() == payer.address.lower()
            ],
        )
