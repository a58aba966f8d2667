"""A chain reached over Ethereum JSON-RPC, with the same reading and sending surface as LocalChain.

The reference facilitator settles through this when the chain runs elsewhere (``x402sim serve
facilitator --rpc-url URL``); the conformance harness and ERC-8004 readers (``AgentDirectory``,
``evm.erc8004``) use it for the served chain. ``transact`` signs an EIP-1559 transaction locally and
sends it raw; ``mine`` does nothing, since an x402sim node mines each transaction as it arrives (on
another node a receipt may not be there yet, and ``evm.erc8004`` then says it was not mined).

It does blocking HTTP with httpx; callers on an event loop run it in a worker thread. Simulation
happens at the node's latest block (``timestamp`` is ignored: JSON-RPC has no way to ask for another
time); ``time`` says what that time is. Every transport or node failure, and every answer that is not
JSON-RPC, raises ``ChainError`` naming the URL and the method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from eth_utils import to_checksum_address

from ..errors import ChainError
from ..protocol import ProtocolError, parse_json
from .chain import CallResult, Log, Receipt
from .reads import TokenReads
from .token import revert_reason
from .txsign import Transacts


def _bytes(value: str | None) -> bytes:
    return bytes.fromhex(value[2:]) if value else b""


@dataclass
class RpcChain(TokenReads, Transacts):
    """The facilitator's view of a chain behind ``url``."""

    remote: ClassVar[bool] = True  # every call is a blocking round trip; the node keeps its own time
    url: str
    timeout: float = 10.0
    # where the ERC-8004 registries are read (None: their genesis addresses; see ``evm.erc8004``)
    identity_registry: str | None = None
    reputation_registry: str | None = None

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=self.timeout)
        self._id = 0
        self._knows_time = True  # until the node says it has no x402sim_info
        chain_id = self.rpc("eth_chainId")
        try:
            self.chain_id = int(chain_id, 16)
        except (TypeError, ValueError):
            raise ChainError(
                f"chain RPC {self.url} answered eth_chainId with {str(chain_id)[:40]!r}"
            ) from None

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"

    def rpc(self, method: str, *params: object) -> Any:  # the JSON-RPC result: any JSON value
        self._id += 1
        try:
            response = self._http.post(
                self.url, json={"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}
            )
            answer = parse_json(response.content, f"chain RPC answer to {method}")
        except httpx.HTTPError as exc:
            raise ChainError(f"chain RPC {self.url} unreachable ({method}): {exc}") from exc
        except ProtocolError as exc:
            raise ChainError(f"chain RPC {self.url}: {exc}") from exc
        if not isinstance(answer, dict):
            raise ChainError(f"chain RPC {self.url} answered {method} with something that is not JSON-RPC")
        if "error" in answer:
            error = (
                answer["error"] if isinstance(answer["error"], dict) else {"message": str(answer["error"])}
            )
            raise ChainError(f"chain RPC {method}: {error.get('message')}", error)
        return answer.get("result")

    def time(self, wall: int) -> int:
        """The time the node's next block will carry, as well as it can be known: an x402sim node
        says (``x402sim_info``, which follows its ``evm_increaseTime``); for another node, the later
        of the wall clock and its latest block."""
        if self._knows_time:
            try:
                info = self.rpc("x402sim_info")
                if isinstance(info, dict) and type(info.get("now")) is int:
                    now: int = info["now"]
                    return now
            except ChainError:
                pass
            self._knows_time = False
        block = self.rpc("eth_getBlockByNumber", "latest", False) or {}
        return max(wall, int(block.get("timestamp", "0x0"), 16))

    @property
    def now(self) -> int:
        """``time`` at the wall clock."""
        return self.time(int(time.time()))

    @property
    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def code(self, address: str) -> bytes:
        return _bytes(self.rpc("eth_getCode", address, "latest"))

    def call(
        self, to: str, data: bytes, *, timestamp: int | None = None, sender: str | None = None
    ) -> CallResult:
        tx = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        try:
            output = _bytes(self.rpc("eth_call", tx, "latest"))
        except ChainError as exc:
            error = exc.args[1] if len(exc.args) > 1 else {}
            data_hex = error.get("data") if isinstance(error, dict) else None
            raw = _bytes(data_hex) if isinstance(data_hex, str) else b""
            reason = revert_reason(raw) or str(error.get("message", exc) if isinstance(error, dict) else exc)
            if error.get("code") not in (3, -32000):  # not a revert: the node itself failed
                raise
            return CallResult(False, raw, reason, 0, reverted=error.get("code") == 3)
        return CallResult(True, output, None, 0)

    def pending_nonce(self, address: str) -> int:
        return int(self.rpc("eth_getTransactionCount", address, "pending"), 16)

    @property
    def base_fee(self) -> int:
        block = self.rpc("eth_getBlockByNumber", "latest", False)
        return int(block.get("baseFeePerGas", "0x0"), 16)

    def mine(self) -> None:
        """Nothing to do: the node mines on its own (module docstring)."""

    def token_state(self, asset: str) -> None:
        """No storage view over JSON-RPC: verification simulates."""
        return None

    def send_raw_transaction(self, raw: bytes) -> bytes:
        return _bytes(self.rpc("eth_sendRawTransaction", "0x" + raw.hex()))

    def send_bundle(self, raws: list[bytes]) -> list[bytes]:
        """Send the transactions one after the other (a plain node has no bundles: on a node that
        mines each transaction as it comes, as the local test nodes do, each lands in its turn)."""
        return [self.send_raw_transaction(raw) for raw in raws]

    def eth_balance(self, address: str) -> int:
        return int(self.rpc("eth_getBalance", address, "latest"), 16)

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        r = self.rpc("eth_getTransactionReceipt", "0x" + tx_hash.hex())
        if r is None:
            return None
        success = int(r["status"], 16) == 1
        reason = None
        if not success:
            reason = self._replay_reason(tx_hash, int(r["blockNumber"], 16))
        return Receipt(
            tx_hash=tx_hash,
            sender=to_checksum_address(r["from"]),
            to=to_checksum_address(r["to"]) if r.get("to") else None,
            success=success,
            gas_used=int(r["gasUsed"], 16),
            effective_gas_price=int(r.get("effectiveGasPrice", "0x0"), 16),
            block_number=int(r["blockNumber"], 16),
            block_timestamp=0,
            index=int(r["transactionIndex"], 16),
            logs=tuple(
                Log(
                    to_checksum_address(log["address"]),
                    tuple(_bytes(t) for t in log["topics"]),
                    _bytes(log["data"]),
                )
                for log in r["logs"]
            ),
            revert_reason=reason,
        )

    def _replay_reason(self, tx_hash: bytes, block_number: int) -> str | None:
        """Why a mined transaction reverted: re-run it as a call on the state before its block."""
        tx = self.rpc("eth_getTransactionByHash", "0x" + tx_hash.hex())
        if not tx:
            return None
        call = {
            "from": tx["from"],
            "to": tx["to"],
            "data": tx.get("input") or tx.get("data"),
            "gas": tx["gas"],
        }
        try:
            self.rpc("eth_call", call, hex(block_number - 1))
        except ChainError as exc:
            error = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            data = error.get("data")
            return (revert_reason(_bytes(data)) if isinstance(data, str) else None) or str(exc)
        return None

    def close(self) -> None:
        self._http.close()
