"""Probes: one HTTP request each, valid or broken on purpose, for every x402sim service.

A ``Target`` describes a running set of services as seen from outside (the paid route, its 402
challenge, a funded payer, the chain's token). ``draw(rng, target, endpoint)`` makes one ``Probe`` for
that endpoint: most are one mutation of a valid input (``mutations``), some are valid controls that
must succeed. The same probes drive the Hypothesis suite (over ASGI, no sockets) and the ``x402sim
fuzz`` campaign (over loopback HTTP).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..actors.client import Client
from ..protocol import (
    PAYMENT_SIGNATURE,
    X_PAYMENT,
    PaymentRequired,
    ProtocolError,
    get_header,
    parse_payment_required,
)
from .mutations import b64, deep, header_values, mutate_json

ENDPOINTS = ("server", "proxy", "verify", "settle", "rpc", "rpc-batch")
CONTROL_SHARE = 0.05  # probes that are valid payments and must be served and settled


@dataclass(frozen=True)
class Probe:
    endpoint: str  # one of ENDPOINTS
    service: str  # which service answers: "server", "proxy", "facilitator" or "chain"
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    mutation: str  # what was done to a valid input ("control" when nothing was)

    @property
    def control(self) -> bool:
        return self.mutation == "control"


@dataclass
class Target:
    """What a prober needs to know of running services."""

    server_path: str  # a priced route of the resource server, "/weather"
    server_challenge: PaymentRequired  # its 402 requirements
    proxy_path: str | None  # a priced route of the paywall proxy, if one runs
    proxy_challenge: PaymentRequired | None
    payer_key: bytes
    network: str
    token: str
    now: Callable[[], int]
    seed: int = 0
    _client: Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = Client(self.payer_key, networks=(self.network,), seed=self.seed)

    @property
    def payer(self) -> str:
        return self._client.address

    def payment(self, challenge: PaymentRequired) -> dict:
        """A fresh valid payment (a new nonce each time) for ``challenge``, as a wire dict."""
        return self._client.create_payment(challenge, self.now()).to_wire()


def draw(rng: random.Random, target: Target, endpoint: str) -> Probe:
    """One probe for ``endpoint``."""
    if endpoint in ("server", "proxy"):
        return _paid_route(rng, target, endpoint)
    if endpoint in ("verify", "settle"):
        return _facilitator(rng, target, endpoint)
    if endpoint == "rpc":
        label, text = mutate_json(rng, _rpc_call(rng, target, 1))
        return _post("rpc", "chain", "/", text.encode("utf-8", "surrogatepass"), label)
    if endpoint == "rpc-batch":
        return _rpc_batch(rng, target)
    raise ValueError(f"unknown endpoint {endpoint!r} (known: {', '.join(ENDPOINTS)})")


def _post(endpoint: str, service: str, path: str, body: bytes, mutation: str) -> Probe:
    return Probe(endpoint, service, "POST", path, (("content-type", "application/json"),), body, mutation)


def _paid_route(rng: random.Random, target: Target, endpoint: str) -> Probe:
    if endpoint == "proxy" and target.proxy_path is not None and target.proxy_challenge is not None:
        path, challenge = target.proxy_path, target.proxy_challenge
    else:
        endpoint, path, challenge = "server", target.server_path, target.server_challenge
    payment = target.payment(challenge)
    valid = b64(json.dumps(payment, separators=(",", ":")))

    def probe(mutation: str, headers: list[tuple[str, str]], body: bytes = b"") -> Probe:
        return Probe(endpoint, endpoint, "GET", path, tuple(headers), body, mutation)

    roll = rng.random()
    if roll < CONTROL_SHARE:
        return probe("control", [(PAYMENT_SIGNATURE, valid)])
    if roll < 0.55:
        label, text = mutate_json(rng, payment)
        return probe(f"payment {label}", [(PAYMENT_SIGNATURE, b64(text))])
    if roll < 0.75:
        label, value = rng.choice(header_values(rng, valid))
        return probe(f"header {label}", [(PAYMENT_SIGNATURE, value)])
    other = b64(json.dumps(target.payment(challenge), separators=(",", ":")))
    label, headers = rng.choice(
        [
            ("duplicated header, same value", [(PAYMENT_SIGNATURE, valid), (PAYMENT_SIGNATURE, valid)]),
            ("duplicated header, two payments", [(PAYMENT_SIGNATURE, valid), (PAYMENT_SIGNATURE, other)]),
            ("v2 payment in X-PAYMENT", [(X_PAYMENT, valid)]),
            ("both payment headers", [(X_PAYMENT, other), (PAYMENT_SIGNATURE, valid)]),
            ("huge unrelated header", [("X-Filler", "a" * 7000), (PAYMENT_SIGNATURE, valid)]),
        ]
    )
    body = rng.choice((b"", b"\xff\xfe not utf-8", b"{" * 5000))
    return probe(label + (" with a body" if body else ""), headers, body)


def _facilitator(rng: random.Random, target: Target, endpoint: str) -> Probe:
    challenge = target.server_challenge
    request = {
        "x402Version": 2,
        "paymentPayload": target.payment(challenge),
        "paymentRequirements": challenge.accepts[0].to_wire(),
    }
    path = "/" + endpoint
    roll = rng.random()
    if roll < 0.8:
        label, text = mutate_json(rng, request)
        return _post(endpoint, "facilitator", path, text.encode("utf-8", "surrogatepass"), label)
    label, body = rng.choice(
        [
            ("empty body", b""),
            ("invalid utf-8", b'{"x402Version":2,"a":"\xff"}'),
            ("oversized body", b'{"a":"' + b"x" * 70_000 + b'"}'),
            ("v1-shaped body", json.dumps({"x402Version": 1, "paymentPayload": {}}).encode()),
            ("null payload", json.dumps({**request, "paymentPayload": None}).encode()),
            ("null accepted", json.dumps(_with_accepted(request, None)).encode()),
            ("deep nesting", deep(rng.choice((101, 50_000))).encode()),
        ]
    )
    return _post(endpoint, "facilitator", path, body, label)


def _with_accepted(request: dict, value) -> dict:
    copy = json.loads(json.dumps(request))
    copy["paymentPayload"]["accepted"] = value
    return copy


def _rpc_call(rng: random.Random, target: Target, call_id: int) -> dict:
    payer, token = target.payer, target.token
    method, params = rng.choice(
        [
            ("eth_chainId", []),
            ("eth_blockNumber", []),
            ("eth_getBalance", [payer, "latest"]),
            ("eth_getTransactionCount", [payer, "pending"]),
            ("eth_getCode", [token, "latest"]),
            ("eth_call", [{"to": token, "data": "0x70a08231" + "00" * 12 + payer[2:]}, "latest"]),
            ("eth_estimateGas", [{"from": payer, "to": token, "data": "0x18160ddd"}]),
            ("eth_getBlockByNumber", ["latest", rng.random() < 0.5]),
            ("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest", "address": token}]),
            ("eth_feeHistory", ["0x400", "latest", [25, 75]]),
            ("eth_getTransactionReceipt", ["0x" + rng.randbytes(32).hex()]),
            ("eth_sendRawTransaction", ["0x02" + rng.randbytes(rng.randrange(1, 200)).hex()]),
            ("x402sim_info", []),
        ]
    )
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


def _rpc_batch(rng: random.Random, target: Target) -> Probe:
    size = rng.choice((0, 1, 2, 5, 20, 1001))
    calls = [_rpc_call(rng, target, i) for i in range(size)]
    if calls and rng.random() < 0.7:
        i = rng.randrange(len(calls))
        label, text = mutate_json(rng, calls[i])
        body = "[" + ",".join([*map(json.dumps, calls[:i]), text, *map(json.dumps, calls[i + 1 :])]) + "]"
        return _post(
            "rpc-batch",
            "chain",
            "/",
            body.encode("utf-8", "surrogatepass"),
            f"batch of {size}, call {i}: {label}",
        )
    return _post("rpc-batch", "chain", "/", json.dumps(calls).encode(), f"batch of {size}")


# -- judging an answer -----------------------------------------------------------------------------


def judge(probe: Probe, status: int, headers: list[tuple[str, str]], body: bytes) -> str | None:
    """What is wrong with the answer to ``probe`` (None when it is acceptable): never a 5xx but the
    503 of admission control, and every refusal names its problem."""
    if status == 503 and get_header(headers, "Retry-After") is None:
        return "503 without Retry-After"
    if status >= 500 and status != 503:
        return f"HTTP {status}"
    if probe.control and probe.service in ("server", "proxy") and status not in (200, 503):
        return f"a valid payment was answered {status}"
    if probe.service == "chain":
        return _judge_rpc(status, body)
    if status == 402:
        return _judge_challenge(headers, body)
    if status >= 400 or (probe.service == "facilitator" and status == 200):
        return _judge_json(probe, status, body)
    return None


def _json_or_none(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _judge_json(probe: Probe, status: int, body: bytes) -> str | None:
    data = _json_or_none(body)
    if not isinstance(data, dict):
        return f"HTTP {status} without a JSON object body"
    if status >= 400:
        return None if isinstance(data.get("error"), str) and data["error"] else "error body names no problem"
    key = "isValid" if probe.path == "/verify" else "success"
    if not isinstance(data.get(key), bool):
        return f"facilitator answer without {key}"
    reason = "invalidReason" if key == "isValid" else "errorReason"
    if data[key] is False and not data.get(reason):
        return f"facilitator refused without {reason}"
    return None


def _judge_challenge(headers: list[tuple[str, str]], body: bytes) -> str | None:
    try:
        required = parse_payment_required(headers, body)
    except ProtocolError as exc:
        return f"unreadable 402: {exc}"
    return None if required.error else "402 without an error naming the problem"


def _judge_rpc(status: int, body: bytes) -> str | None:
    if status == 204:
        return None
    data = _json_or_none(body)
    answers = data if isinstance(data, list) else [data]
    for answer in answers:
        if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
            return f"HTTP {status}: not a JSON-RPC answer"
        error = answer.get("error")
        if "result" not in answer and not (isinstance(error, dict) and error.get("message")):
            return "JSON-RPC error without a message"
    return None
