"""Parsing and validating the positional params of a JSON-RPC call.

Each parser takes one JSON value and returns it parsed (hex quantities, hex data, addresses with
their EIP-55 checksum, hashes, booleans, block references including EIP-1898 objects, call
objects, fee-history percentiles, log filters) or raises ``InvalidParam`` saying why. ``Params.take``
applies one to ``params[i]`` and turns ``InvalidParam`` into a -32602 answer naming the param.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils import is_checksum_address, to_checksum_address

from x402sim.evm.chain import ZERO_ADDRESS

from ...errors import WireError
from .errors import INVALID_PARAMS, RpcError

UINT256_MAX = 2**256 - 1

BLOCK_TAGS = ("latest", "pending", "earliest", "safe", "finalized")


class InvalidParam(WireError, ValueError):
    """One param is malformed; the text says why (the caller adds which param)."""


def parse_quantity(value: Any, *, limit: int = UINT256_MAX) -> int:
    """A hex quantity ("0x1a"); a non-negative JSON integer is accepted too."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value[:2] in ("0x", "0X") and len(value) > 2:
        try:
            number = int(value[2:], 16)
        except ValueError:
            raise InvalidParam(f"{value!r} is not a hex quantity") from None
    else:
        raise InvalidParam(f"expected a hex quantity like '0x1a', got {value!r}")
    if not 0 <= number <= limit:
        raise InvalidParam(f"{value!r} is out of range 0..{limit}")
    return number


def parse_data(value: Any) -> bytes:
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        raise InvalidParam(f"expected hex data starting with '0x', got {_short(value)}")
    digits = value[2:]
    if len(digits) % 2:
        raise InvalidParam("hex data must have an even number of digits")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise InvalidParam(f"{_short(value)} is not hex data") from None


def _fixed(value: Any, size: int, what: str) -> bytes:
    try:
        raw = parse_data(value)
    except InvalidParam:
        raise InvalidParam(f"expected a {what} ({size} bytes of hex), got {_short(value)}") from None
    if len(raw) != size:
        raise InvalidParam(f"expected a {what} of {size} bytes, got {len(raw)}")
    return raw


def parse_address(value: Any) -> str:
    raw = _fixed(value, 20, "20-byte address")
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        raise InvalidParam(f"{value} has an invalid EIP-55 checksum")
    return to_checksum_address(raw)


def parse_hash(value: Any) -> bytes:
    return _fixed(value, 32, "32-byte hash")


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidParam(f"expected true or false, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class BlockRef:
    """A block argument: a tag, a number, or (EIP-1898) a hash."""

    tag: str | None = None
    number: int | None = None
    hash: bytes | None = None


def parse_block_ref(value: Any) -> BlockRef:
    if isinstance(value, str) and value in BLOCK_TAGS:
        return BlockRef(tag=value)
    if isinstance(value, dict):  # EIP-1898
        if "blockHash" in value and "blockNumber" in value:
            raise InvalidParam("give blockHash or blockNumber, not both")
        if "blockHash" in value:
            if "requireCanonical" in value:
                parse_bool(value["requireCanonical"])  # every block we serve is canonical
            return BlockRef(hash=parse_hash(value["blockHash"]))
        if "blockNumber" in value:
            return parse_block_ref(value["blockNumber"])
        raise InvalidParam("a block object needs blockHash or blockNumber")
    try:
        return BlockRef(number=parse_quantity(value, limit=2**63 - 1))
    except InvalidParam:
        raise InvalidParam(
            f"expected a block number or one of {', '.join(BLOCK_TAGS)}, got {_short(value)}"
        ) from None


@dataclass(frozen=True)
class CallObject:
    sender: str
    to: str | None
    data: bytes
    gas: int | None
    value: int


def parse_call_object(value: Any) -> CallObject:
    if not isinstance(value, dict):
        raise InvalidParam(f"expected a transaction object, got {_short(value)}")

    def field(name: str, parse: Callable[[Any], Any]) -> Any:
        if value.get(name) is None:
            return None
        try:
            return parse(value[name])
        except InvalidParam as exc:
            raise InvalidParam(f"{name}: {exc}") from None

    data, input_ = field("data", parse_data), field("input", parse_data)
    if data is not None and input_ is not None and data != input_:
        raise InvalidParam('"data" and "input" are both set and differ')
    for name in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce", "type", "chainId"):
        field(name, parse_quantity)  # accepted and checked, not needed to simulate
    return CallObject(
        sender=field("from", parse_address) or ZERO_ADDRESS,
        to=field("to", parse_address),
        data=input_ if input_ is not None else (data or b""),
        gas=field("gas", lambda v: parse_quantity(v, limit=2**63 - 1)),
        value=field("value", parse_quantity) or 0,
    )


_REQUIRED = object()


class Params:
    """Positional params of one call; ``take`` parses one and names it in any error."""

    def __init__(self, method: str, values: list) -> None:
        self.method = method
        self.values = values

    def take(self, index: int, name: str, parse: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
        present = index < len(self.values) and self.values[index] is not None
        if not present and default is not _REQUIRED:
            return default
        if index >= len(self.values):
            raise RpcError(
                INVALID_PARAMS, f"invalid params for {self.method}: missing {name} (params[{index}])"
            )
        try:
            return parse(self.values[index])
        except InvalidParam as exc:
            raise RpcError(
                INVALID_PARAMS, f"invalid params for {self.method}: {name} (params[{index}]): {exc}"
            ) from None


def parse_percentiles(value: Any) -> list[float]:
    if not isinstance(value, list):
        raise InvalidParam(f"expected a list of percentiles, got {_short(value)}")
    out: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0 <= item <= 100:
            raise InvalidParam(f"each percentile must be a number in 0..100, got {_short(item)}")
        if out and item < out[-1]:
            raise InvalidParam("percentiles must be in increasing order")
        out.append(float(item))
    return out


def no_overrides(value: Any) -> None:
    raise InvalidParam("state overrides are not supported")


@dataclass(frozen=True)
class LogFilter:
    from_block: BlockRef
    to_block: BlockRef
    block_hash: bytes | None
    addresses: frozenset[bytes] | None  # None: any address
    topics: tuple[frozenset[bytes] | None, ...]  # per position; None: any topic


def parse_filter(value: Any) -> LogFilter:
    if not isinstance(value, dict):
        raise InvalidParam(f"expected a filter object, got {_short(value)}")

    def field(name: str, parse: Callable[[Any], Any], default: Any) -> Any:
        if value.get(name) is None:
            return default
        try:
            return parse(value[name])
        except InvalidParam as exc:
            raise InvalidParam(f"{name}: {exc}") from None

    def addresses(v: Any) -> frozenset[bytes]:
        items = v if isinstance(v, list) else [v]
        return frozenset(bytes.fromhex(parse_address(a)[2:]) for a in items)

    def topics(v: Any) -> tuple:
        if not isinstance(v, list) or len(v) > 4:
            raise InvalidParam("expected a list of at most 4 topic positions")
        out: list[frozenset[bytes] | None] = []
        for position in v:
            if position is None:
                out.append(None)
            elif isinstance(position, list):
                # an empty list or one holding null matches any topic, as in geth
                wanted = [parse_hash(t) for t in position if t is not None]
                out.append(frozenset(wanted) if wanted and None not in position else None)
            else:
                out.append(frozenset([parse_hash(position)]))
        return tuple(out)

    latest = BlockRef(tag="latest")
    block_hash = field("blockHash", parse_hash, None)
    if block_hash is not None and (value.get("fromBlock") is not None or value.get("toBlock") is not None):
        raise InvalidParam("blockHash cannot be combined with fromBlock or toBlock")
    return LogFilter(
        from_block=field("fromBlock", parse_block_ref, latest),
        to_block=field("toBlock", parse_block_ref, latest),
        block_hash=block_hash,
        addresses=field("address", addresses, None),
        topics=field("topics", topics, ()),
    )
