"""JSON-RPC 2.0 error codes and ``RpcError``, the exception a handler raises to answer with one.

The codes are the ones the package docstring lists under "Refusals" (-32700 .. -32000), plus 3, the
code geth uses for a reverted call. ``RpcError.to_json`` is the ``error`` member of an answer.
"""

from __future__ import annotations

from typing import Any

from ...errors import WireError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # EIP-1474 "invalid input": the node refuses what it was asked
LIMIT_EXCEEDED = -32005  # EIP-1474: a request past a documented limit (e.g. eth_getLogs range)
RESPONSE_TOO_LARGE = -32003  # geth: a batch's answers past the response size limit
REVERTED = 3


class RpcError(WireError):
    """A JSON-RPC error answer: code, message and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error
