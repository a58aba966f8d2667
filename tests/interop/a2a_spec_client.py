"""A small A2A x402 client written from the specification alone (``specs/transports-v2/a2a.md``).

It shares nothing with x402sim's carry or client: plain httpx and JSON-RPC 2.0, the spec's wire
(A2A 0.3 ``message/send``, ``kind`` fields, ``taskId``), the extension activated with
``X-A2A-Extensions``, and an EIP-3009 ``TransferWithAuthorization`` signed with eth-account from the
``exact`` offer the agent's ``x402.payment.required`` names. It exists to check that x402sim's agent
speaks the specification, not x402sim's own reading of it.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data

EXTENSION = "https://github.com/google-a2a/a2a-x402/v0.1"


@dataclass
class Exchange:
    """What the client saw: the task asking for payment, the payload it sent, the final task."""

    challenge: dict[str, Any]
    payment: dict[str, Any] | None
    final: dict[str, Any] | None


def _metadata(task: dict[str, Any]) -> dict[str, Any]:
    return task["status"]["message"].get("metadata", {})


class SpecClient:
    """Talks JSON-RPC to the agent at ``url`` over ``http`` and pays with the account of ``key``."""

    def __init__(self, url: str, key: bytes, http: httpx.Client) -> None:
        self.url, self.account, self.http = url, Account.from_key(key), http

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params}
        answer = self.http.post(self.url, json=body, headers={"X-A2A-Extensions": EXTENSION})
        answer.raise_for_status()
        data = answer.json()
        if "error" in data:
            raise RuntimeError(f"{method}: JSON-RPC error {data['error']}")
        return data["result"]

    def send(self, text: str, *, task_id: str | None = None, metadata: dict | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "kind": "message",
            "messageId": uuid.uuid4().hex,
            "role": "user",
            "parts": [{"kind": "text", "text": text}],
        }
        if task_id is not None:
            message["taskId"] = task_id
        if metadata is not None:
            message["metadata"] = metadata
        task = self.rpc("message/send", {"message": message})
        assert task["kind"] == "task", task
        return task

    def sign(self, required: dict[str, Any], now: int) -> dict[str, Any]:
        """A PaymentPayload for the first ``exact`` EVM offer of ``required``."""
        offer = next(
            o for o in required["accepts"] if o["scheme"] == "exact" and o["network"].startswith("eip155:")
        )
        authorization = {
            "from": self.account.address,
            "to": offer["payTo"],
            "value": str(offer["amount"]),
            "validAfter": str(now - 600),
            "validBefore": str(now + int(offer["maxTimeoutSeconds"])),
            "nonce": "0x" + secrets.token_hex(32),
        }
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "TransferWithAuthorization": [
                    {"name": "from", "type": "address"},
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "validAfter", "type": "uint256"},
                    {"name": "validBefore", "type": "uint256"},
                    {"name": "nonce", "type": "bytes32"},
                ],
            },
            "primaryType": "TransferWithAuthorization",
            "domain": {
                "name": offer["extra"]["name"],
                "version": offer["extra"]["version"],
                "chainId": int(offer["network"].split(":", 1)[1]),
                "verifyingContract": offer["asset"],
            },
            "message": {
                **authorization,
                "value": int(authorization["value"]),
                "validAfter": int(authorization["validAfter"]),
                "validBefore": int(authorization["validBefore"]),
                "nonce": bytes.fromhex(authorization["nonce"][2:]),
            },
        }
        signed = self.account.sign_message(encode_typed_data(full_message=typed))
        signature = "0x" + signed.signature.hex().removeprefix("0x")
        # x402Version may arrive as 2.0: some A2A stacks keep metadata numbers as doubles
        return {
            "x402Version": int(required["x402Version"]),
            "resource": required.get("resource"),
            "accepted": offer,
            "payload": {"signature": signature, "authorization": authorization},
        }

    def buy(self, text: str, now: int) -> Exchange:
        """Ask, read the payment-required task, pay it on the same task, return what happened."""
        task = self.send(text)
        metadata = _metadata(task)
        if (
            task["status"]["state"] != "input-required"
            or metadata.get("x402.payment.status") != "payment-required"
        ):
            return Exchange(task, None, None)
        payment = self.sign(metadata["x402.payment.required"], now)
        paid = {"x402.payment.status": "payment-submitted", "x402.payment.payload": payment}
        final = self.send("Here is the payment authorization.", task_id=task["id"], metadata=paid)
        return Exchange(task, payment, final)
