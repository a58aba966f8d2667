"""RLP for transactions on the hot path: encode integers, byte strings and lists; split a list.

pyrlp infers a serializer for every item it encodes, which costs more than signing a transaction
once a payment's other work is fast. Transactions only hold non-negative integers, byte strings
and lists of those, so this module encodes exactly that (the test suite proves the bytes equal
pyrlp's), and ``split`` walks one list without decoding its items, so that a signed transaction's
unsigned fields can be re-hashed from the bytes received.

Rules: pure functions; malformed input raises ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

Item = int | bytes | list["Item"] | tuple["Item", ...]


def encode(item: Item) -> bytes:
    """The RLP encoding of ``item``: an int >= 0, bytes, or a (nested) list of those."""
    if isinstance(item, list | tuple):
        payload = b"".join([encode(x) for x in item])
        return _length_prefix(len(payload), 0xC0) + payload
    if isinstance(item, int):
        if item < 0:
            raise ValueError(f"RLP cannot encode a negative integer ({item})")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if len(item) == 1 and item[0] < 0x80:
        return item
    return _length_prefix(len(item), 0x80) + item


def _length_prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(encoded)]) + encoded


def list_header(payload_length: int) -> bytes:
    """The prefix of a list whose items' encodings total ``payload_length`` bytes."""
    return _length_prefix(payload_length, 0xC0)


def split(data: bytes) -> list[tuple[int, int, bool]]:
    """The items of the single RLP list ``data``: for each, (start, end) of its whole encoding in
    ``data`` and whether it is itself a list."""
    kind, start, end = _item(data, 0)
    if kind != "list" or end != len(data):
        raise ValueError("not a single RLP list")
    items, at = [], start
    while at < end:
        kind, _, stop = _item(data, at)
        if stop > end:
            raise ValueError("an RLP item runs past its list")
        items.append((at, stop, kind == "list"))
        at = stop
    return items


def payload(data: bytes, start: int, end: int) -> bytes:
    """The content of the string item encoded at ``data[start:end]``."""
    kind, body, stop = _item(data, start)
    if kind != "bytes" or stop != end:
        raise ValueError("not an RLP string")
    return data[body:end]


def _item(data: bytes, at: int) -> tuple[str, int, int]:
    """(kind, start of content, end of item) of the item at ``at``."""
    if at >= len(data):
        raise ValueError("RLP input ends early")
    b = data[at]
    if b < 0x80:
        return "bytes", at, at + 1
    if b < 0xB8:
        return "bytes", at + 1, at + 1 + b - 0x80
    if b < 0xC0:
        n = b - 0xB7
        length = int.from_bytes(data[at + 1 : at + 1 + n], "big")
        return "bytes", at + 1 + n, at + 1 + n + length
    if b < 0xF8:
        return "list", at + 1, at + 1 + b - 0xC0
    n = b - 0xF7
    length = int.from_bytes(data[at + 1 : at + 1 + n], "big")
    return "list", at + 1 + n, at + 1 + n + length
