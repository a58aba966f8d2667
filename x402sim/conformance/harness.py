"""The harness's own world: an embedded chain served as JSON-RPC and a reference facilitator it controls.

Rules:

* Everything the harness serves binds loopback only, on one ``Services`` loop (the chain is not
  thread-safe); cases read the chain over JSON-RPC, like any observer, never behind its back.
* Isolation without reverting: each case pays with fresh payer keys funded for it, and judges by
  deltas measured around it (balances, ``Transfer`` logs since a block). Reverting the chain would
  desynchronise targets that cache their own transaction nonce.
* The facilitator is the reference one, behind ``FacilitatorControl``: a case may tell it to refuse
  a settlement, answer ``settlement_pending`` after really settling, settle and lose the answer,
  hold ``/verify`` until the case releases it, hold ``/settle`` a moment before answering it, answer
  outside the protocol, or add an ``EXTENSION-RESPONSES`` header to its answers. Every ``/verify``
  and ``/settle`` it receives is recorded (and marked done once answered), so a case can tell
  whether the target called it and when its calls are over. The control is reset after every case,
  which releases any hold.
* The facilitator offers both gas-sponsoring extensions of Permit2 payments (``eip2612GasSponsoring``,
  ``erc20ApprovalGasSponsoring``), so a server target's Permit2 routes can declare them.
* Keys are test keys derived from the run's seed; nothing here ever holds real value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

from eth_utils import to_checksum_address

from ..actors.facilitator import Facilitator
from ..evm.chain import ETHER, LocalChain
from ..evm.eip712 import address_of_key
from ..evm.permit2 import PERMIT2_ADDRESS, UINT256_MAX, allowance, approve_call, nonce_used
from ..evm.rpc_chain import RpcChain
from ..evm.token import TRANSFER_TOPIC, Transfer, decode_transfer
from ..http.chain_clock import ChainClock
from ..http.chain_rpc import chain_rpc_app
from ..http.facilitator_app import facilitator_app
from ..http.runner import LOOPBACK, Services
from ..mechanisms import SPONSORING_EXTENSIONS
from ..money import UNIT
from ..protocol import Reason
from .asgi import capture, read_body, replay, send_raw
from .hostile import HostileServer

BARRIER_WAIT = 2.0  # seconds a held /verify waits for the others (see FacilitatorControl)
HOLD_LIMIT = 120.0  # seconds a hung /verify waits for its release at most (a forgotten hold ends)
DEFAULT_FUNDING = 10 * UNIT
EXTENSION_RESPONSES = "EXTENSION-RESPONSES"
# An answer outside the protocol that no reading takes for a yes: a web server's page, as a
# misrouted proxy in front of a facilitator gives.
MALFORMED_REPLY = b"<html><body><h1>It works!</h1></body></html>"
# What the harness's facilitator says in EXTENSION-RESPONSES when told to: for the server only.
EXTENSION_PROBE = {"conformance-probe": {"note": "facilitator side channel, not for buyers"}}


@dataclass(frozen=True)
class Account:
    key: bytes
    address: str

    @property
    def key_hex(self) -> str:
        return "0x" + self.key.hex()


@dataclass
class FacilitatorCall:
    path: str
    body: Any
    answer: Any = None
    done: bool = False  # answered (or abandoned by the target)


@dataclass
class FacilitatorControl:
    """How the harness's facilitator answers for the current case, and what it was asked.

    ``settle_mode``: ``normal``; ``refuse`` (answer ``success: false``, ``transaction_failed``, and
    send nothing to the chain); ``pending`` (settle on chain, then answer ``success: false`` with
    ``settlement_pending`` and the transaction hash, as a facilitator whose receipt wait timed out
    does; a resent ``/settle`` of the same authorization gets the same pending answer, nothing is
    sent again); ``pending-once`` (the first ``/settle`` as ``pending``, a resent one is answered by
    the reference facilitator itself); ``lose`` (settle on chain, then answer 500 without the
    result); ``malformed`` (answer 200 with ``MALFORMED_REPLY``, an HTML page, and send nothing to
    the chain); ``hang`` (hold each ``/settle`` ``settle_hold`` seconds, or until ``release``, then
    answer it normally); ``hang-refuse`` (hold it so, then answer as ``refuse``): a settlement still
    unanswered while a server could already have answered its buyer.

    ``verify_mode``: ``normal``; ``hang`` (hold each ``/verify`` until ``release``, then answer it
    normally); ``malformed`` (answer 200 with ``MALFORMED_REPLY``).

    ``extension_responses``: add ``EXTENSION-RESPONSES`` (``EXTENSION_PROBE``) to every ``/verify``
    and ``/settle`` answer.

    ``verify_barrier``: when N > 1, each ``/verify`` answer is held until N of them have been judged
    (or ``barrier_wait`` seconds passed: ``BARRIER_WAIT``, or less when the servers are told to wait
    less for a facilitator), so that N concurrent copies of a payment are all verified before any can
    be settled: the race window of a slow network, made certain."""

    settle_mode: str = "normal"
    verify_mode: str = "normal"
    extension_responses: bool = False
    calls: list[FacilitatorCall] = field(default_factory=list)
    verify_barrier: int = 0
    barrier_wait: float = BARRIER_WAIT
    settle_hold: float = BARRIER_WAIT
    _arrived: int = 0
    _released: Any = None  # an asyncio.Event of the facilitator's loop, made when first needed
    _holds: list = field(default_factory=list)  # (loop, asyncio.Event) of each hung /verify
    _pending: dict = field(default_factory=dict)  # authorization nonce -> the pending answer given

    def reset(self) -> None:
        self.release()
        self.settle_mode, self.verify_mode, self.extension_responses = "normal", "normal", False
        self.calls.clear()
        self._pending.clear()
        self.verify_barrier, self._arrived, self._released = 0, 0, None

    async def hold_verify(self) -> None:
        if self.verify_barrier < 2:
            return
        if self._released is None:
            self._released = asyncio.Event()
        self._arrived += 1
        if self._arrived >= self.verify_barrier:
            self._released.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), self.barrier_wait)

    async def hang(self, limit: float = HOLD_LIMIT) -> None:
        """Wait (on the facilitator's loop) until ``release``, or ``limit`` seconds."""
        released = asyncio.Event()
        self._holds.append((asyncio.get_running_loop(), released))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), limit)

    def release(self) -> None:
        """Let every hung ``/verify`` go on (callable from any thread)."""
        holds, self._holds = self._holds, []
        for loop, released in holds:
            with contextlib.suppress(RuntimeError):  # the facilitator's loop has already stopped
                loop.call_soon_threadsafe(released.set)

    def count(self, path: str) -> int:
        return sum(1 for c in self.calls if c.path == path)

    def quiet(self) -> bool:
        """Whether every call received so far has been answered."""
        return all(c.done for c in self.calls)


def _network_of(parsed: Any) -> str:
    requirements = parsed.get("paymentRequirements") if isinstance(parsed, dict) else None
    return str(requirements.get("network", "")) if isinstance(requirements, dict) else ""


def _nonce_of(parsed: Any) -> str | None:
    payment = parsed.get("paymentPayload") if isinstance(parsed, dict) else None
    payload = payment.get("payload") if isinstance(payment, dict) else None
    authorization = payload.get("authorization") if isinstance(payload, dict) else None
    nonce = authorization.get("nonce") if isinstance(authorization, dict) else None
    return str(nonce).lower() if nonce is not None else None


def _json_answer(status: int, document: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps(document).encode()


def controlled(app, control: FacilitatorControl):
    """``app`` (the reference facilitator) behind ``control``."""

    async def wrapper(scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in ("/verify", "/settle"):
            return await app(scope, receive, send)
        body = await read_body(receive)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace")[:512]
        call = FacilitatorCall(scope["path"], parsed)
        control.calls.append(call)
        try:
            status, headers, content = await _answer(app, control, scope, body, parsed, call)
            if control.extension_responses:
                probe = base64.b64encode(json.dumps(EXTENSION_PROBE).encode())
                headers = [*headers, (EXTENSION_RESPONSES.lower().encode(), probe)]
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(content)).encode()))
            await send_raw(send, status, headers, content)
        finally:
            call.done = True

    return wrapper


async def _answer(app, control: FacilitatorControl, scope, body: bytes, parsed: Any, call: FacilitatorCall):
    """The facilitator's answer to one ``/verify`` or ``/settle`` under ``control``: (status, raw
    headers, body)."""
    verify = scope["path"] == "/verify"
    mode = control.verify_mode if verify else control.settle_mode
    if verify and mode == "hang":
        await control.hang()
    if not verify and mode in ("hang", "hang-refuse"):
        await control.hang(control.settle_hold)
        mode = "normal" if mode == "hang" else "refuse"
    nonce = _nonce_of(parsed)
    if mode == "refuse":
        call.answer = {
            "success": False,
            "errorReason": Reason.transaction_failed.value,
            "transaction": "",
            "network": _network_of(parsed),
        }
        return _json_answer(200, call.answer)
    if mode == "malformed":
        call.answer = MALFORMED_REPLY.decode()
        return 200, [(b"content-type", b"text/html")], MALFORMED_REPLY
    if mode == "pending" and nonce in control._pending:
        call.answer = control._pending[nonce]
        return _json_answer(200, call.answer)
    if mode == "pending-once" and nonce in control._pending:
        mode = "normal"  # the resend: the reference facilitator answers it
    status, headers, content = await capture(app, scope, replay(body))
    if verify:
        await control.hold_verify()  # judged now, answered when the others are judged too
    try:
        answer = json.loads(content)
    except ValueError:
        answer = None
    call.answer = answer
    if mode in ("pending", "pending-once") and isinstance(answer, dict) and answer.get("success"):
        call.answer = {**answer, "success": False, "errorReason": Reason.settlement_pending.value}
        if nonce is not None:
            control._pending[nonce] = call.answer
        return _json_answer(200, call.answer)
    if mode == "lose":
        return _json_answer(500, {"error": "internal error (answer lost on purpose)"})
    return status, list(headers), content


@dataclass
class HarnessOptions:
    network: str = "local"  # a preset name: local, base-sepolia, base
    seed: int = 0
    price: int = 1_000  # atomic units a server target is told to charge
    settle_timeout: float = 10.0
    # Seconds a server target may wait for the facilitator (FACILITATOR_TIMEOUT_SECONDS); a case that
    # hangs the facilitator expects an answer within it. Shorter than the 30 s a server should use in
    # production (x402#2961), so that the hung-facilitator cases take seconds, not minutes.
    facilitator_timeout: float = 5.0
    chain_port: int = 0  # 0: any free port; fixed ports let a server started by hand find the harness
    facilitator_port: int = 0


class Harness:
    """The chain, its JSON-RPC URL and the controlled reference facilitator, served on loopback."""

    # Set by start():
    local_chain: LocalChain
    rpc_url: str
    facilitator: Facilitator
    facilitator_url: str
    chain: RpcChain
    network: str
    chain_id: int
    asset: str
    asset_name: str
    asset_version: str
    # Set by kits.harness_apps for a client target:
    hostile: HostileServer
    # ... and for a facilitator target: the Bazaar cases' shop (``bazaar_kit.BazaarShop``)
    shop: Any

    def __init__(self, options: HarnessOptions | None = None) -> None:
        self.options = options or HarnessOptions()
        self._counter = 0
        # A held /verify must be answered well inside the bound servers are given for a facilitator.
        quarter = min(BARRIER_WAIT, self.options.facilitator_timeout / 4)
        self.control = FacilitatorControl(barrier_wait=quarter, settle_hold=quarter)
        self.services = Services(LOOPBACK)
        self.extra_apps: dict[str, str] = {}
        self._started = False

    # -- life -------------------------------------------------------------------------------------

    def start(self, extra_apps: dict[str, Any] | None = None) -> Harness:
        chain = _preset_chain(self.options.network, self.options.seed)
        self.local_chain = chain
        clock = ChainClock(chain, time.time)
        self.rpc_url = self.services.add(
            "chain", chain_rpc_app(chain, chain_clock=clock), self.options.chain_port
        )
        facilitator_key = self._derive("facilitator")
        chain.fund(address_of_key(facilitator_key), eth=100 * ETHER)
        self.facilitator = Facilitator(chain, facilitator_key, sponsoring=frozenset(SPONSORING_EXTENSIONS))
        app = facilitator_app(self.facilitator, chain_clock=clock, settle_timeout=self.options.settle_timeout)
        self.facilitator_url = self.services.add(
            "facilitator", controlled(app, self.control), self.options.facilitator_port
        )
        for name, extra in (extra_apps or {}).items():
            self.extra_apps[name] = self.services.add(name, extra)
        self.services.start()
        self._started = True
        self.chain = RpcChain(self.rpc_url)
        self.network = chain.network
        self.chain_id = chain.chain_id
        self.asset = to_checksum_address(chain.usdc)
        # a chain's token name and version are None only until its __post_init__ fills in the defaults
        self.asset_name = cast(str, chain.token_name)
        self.asset_version = cast(str, chain.token_version)
        return self

    def stop(self) -> None:
        if self._started:
            self.chain.close()
            self.services.stop()
            self._started = False

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- accounts ---------------------------------------------------------------------------------

    def _derive(self, label: str) -> bytes:
        return hashlib.sha256(f"x402sim-conformance:{self.options.seed}:{label}".encode()).digest()

    def new_account(self, label: str = "account") -> Account:
        """A fresh test key no one has used (not funded)."""
        self._counter += 1
        key = self._derive(f"{label}:{self._counter}")
        return Account(key, address_of_key(key))

    def funded_account(self, usdc: int = DEFAULT_FUNDING, eth: int = 0, label: str = "payer") -> Account:
        account = self.new_account(label)
        self.fund(account.address, usdc=usdc, eth=eth)
        return account

    def fund(self, address: str, *, usdc: int = 0, eth: int = 0) -> None:
        self.chain.rpc("x402sim_fund", address, hex(usdc), hex(eth))

    def approve_permit2(self, account: Account, amount: int = UINT256_MAX) -> None:
        """``account`` approves Permit2 for ``amount`` of the asset, paying the gas from ether the
        harness gives it first (mined at once)."""
        self.fund(account.address, eth=ETHER // 100)
        self.chain.transact(account.key, self.asset, approve_call(PERMIT2_ADDRESS, amount), gas=100_000)

    def permit2_payer(self, usdc: int = DEFAULT_FUNDING, label: str = "payer") -> Account:
        """A fresh payer funded with ``usdc`` that has approved Permit2 without limit."""
        account = self.funded_account(usdc=usdc, label=label)
        self.approve_permit2(account)
        return account

    # -- facts ------------------------------------------------------------------------------------

    def permit2_allowance(self, owner: str) -> int:
        """The asset allowance ``owner`` gives Permit2."""
        return allowance(self.chain, self.asset, owner, PERMIT2_ADDRESS)

    def permit2_nonce_used(self, owner: str, nonce: int) -> bool:
        """Whether ``owner``'s unordered Permit2 ``nonce`` is spent."""
        return nonce_used(self.chain, owner, nonce)

    def now(self) -> int:
        return self.chain.time(int(time.time()))

    def block_number(self) -> int:
        return int(self.chain.rpc("eth_blockNumber"), 16)

    def balance(self, address: str) -> int:
        return self.chain.balance_of(address, self.asset)

    def used(self, authorizer: str, nonce_hex: str) -> bool:
        return self.chain.authorization_state(
            authorizer, bytes.fromhex(nonce_hex.removeprefix("0x")), self.asset
        )

    def transfers_since(self, block: int) -> list[Transfer]:
        """Token ``Transfer`` logs in blocks after ``block``."""
        if self.block_number() <= block:
            return []
        logs = self.chain.rpc(
            "eth_getLogs",
            {
                "fromBlock": hex(block + 1),
                "toBlock": "latest",
                "address": self.asset,
                "topics": ["0x" + TRANSFER_TOPIC.hex()],
            },
        )
        found = []
        for log in logs:
            transfer = decode_transfer(
                bytes.fromhex(log["address"][2:]),
                [bytes.fromhex(t[2:]) for t in log["topics"]],
                bytes.fromhex(log["data"][2:]),
                int(log["blockNumber"], 16),
                bytes.fromhex(log["transactionHash"][2:]),
            )
            if transfer is not None:
                found.append(transfer)
        return found

    def receipt(self, tx_hash_hex: str):
        try:
            return self.chain.receipt(bytes.fromhex(tx_hash_hex.removeprefix("0x")))
        except ValueError:
            return None


def _preset_chain(network: str, seed: int) -> LocalChain:
    try:
        from ..evm.presets import preset  # the presets module arrives with the network presets
    except ImportError:  # pragma: no cover - until presets exist, only the local chain is known
        if network != "local":
            raise ValueError(f"unknown network preset {network!r}") from None
        return LocalChain(seed=seed, start_time=int(time.time()))
    return LocalChain.from_preset(preset(network).name, seed=seed, start_time=int(time.time()))
