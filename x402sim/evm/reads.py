"""Views of an EIP-3009 token read through any chain that can simulate a call.

``TokenReads`` is shared by ``LocalChain`` (embedded) and ``RpcChain`` (JSON-RPC): both provide
``call(to, data)``, and a default token address in ``usdc`` (None when there is none, and then
every read must name its token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from eth_utils import to_checksum_address

from ..errors import ChainError
from .token import decode_single, encode_call


class CallOutcome(Protocol):
    """What a simulated call gives back (``chain.CallResult``)."""

    @property
    def success(self) -> bool: ...

    @property
    def output(self) -> bytes: ...

    @property
    def revert_reason(self) -> str | None: ...


class TokenReads:
    usdc: str | None = None

    if TYPE_CHECKING:  # provided by the chain classes; declared here for the type checker only

        def call(self, to: str, data: bytes) -> CallOutcome: ...

    def read(self, to: str | None, signature: str, *args: object, returns: str) -> Any:
        """Call a view function and decode its single return value; raises ChainError on revert."""
        to = to or self.usdc
        if to is None:
            raise ChainError(f"{signature}: no token address given")
        result = self.call(to, encode_call(signature, *args))
        if not result.success:
            raise ChainError(f"{signature} on {to} reverted: {result.revert_reason}")
        return decode_single(returns, result.output)

    def balance_of(self, address: str, token: str | None = None) -> int:
        return int(self.read(token, "balanceOf(address)", to_checksum_address(address), returns="uint256"))

    def total_supply(self, token: str | None = None) -> int:
        return int(self.read(token, "totalSupply()", returns="uint256"))

    def authorization_state(self, authorizer: str, nonce: bytes, token: str | None = None) -> bool:
        signature = "authorizationState(address,bytes32)"
        return bool(self.read(token, signature, to_checksum_address(authorizer), nonce, returns="bool"))

    def name_of(self, token: str | None = None) -> str:
        return str(self.read(token, "name()", returns="string"))

    def version_of(self, token: str | None = None) -> str:
        return str(self.read(token, "version()", returns="string"))
