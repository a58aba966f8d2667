"""The MCP controls: the reference tool server or MCP client with one MCP rule broken, each failing its case.

A server control is ``mcp_kit.McpService`` around the reference server (or a server control) with a
hook that breaks the rule; a client control is the reference MCP client (``mcp_pay_from_env``) whose
calls go through a broken ``McpBridge``. They run over MCP only (``tests/conformance/test_mcp_*.py``
calibrate them).
The SDK is imported when a control is built, so listing the controls needs no ``agents`` extra.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from .controls import control

PAID_CONTENT = {"message": "paid content", "path": "/protected", "paid": True}


def _service(name: str, *hooks, build=None, resources=None):
    from .mcp_kit import REFERENCE_RESOURCES, McpService, reference_tools

    served = dict(REFERENCE_RESOURCES) if resources is None else resources
    return McpService(build or reference_tools, name=name, kind="control", hooks=hooks, resources=served)


def _served(content: Any = None) -> dict[str, Any]:
    """A success result, as a tool that ran gives."""
    return {"content": [{"type": "text", "text": json.dumps(content or PAID_CONTENT)}]}


def _is_challenge(result: dict) -> bool:
    structured = result.get("structuredContent")
    return bool(result.get("isError")) and isinstance(structured, dict) and "accepts" in structured


@control(
    "server.mcp-text-only-payment-required",
    "server",
    "The payment-required result has the PaymentRequired in content[0].text only, no structuredContent",
    kills=("server.mcp.payment-required",),
)
def text_only_payment_required():
    async def hook(call, forward):
        result = await forward(call)
        if _is_challenge(result):
            result = {k: v for k, v in result.items() if k != "structuredContent"}
        return result

    return _service("server.mcp-text-only-payment-required", hook)


@control(
    "server.mcp-no-payment-response",
    "server",
    "A paid result carries no _meta['x402/payment-response'] (the settlement happens, but is not told)",
    kills=("server.mcp.payment-response",),
)
def no_payment_response():
    async def hook(call, forward):
        result = await forward(call)
        return result if result.get("isError") else {k: v for k, v in result.items() if k != "_meta"}

    return _service("server.mcp-no-payment-response", hook)


@control(
    "server.mcp-settles-tool-errors",
    "server",
    "A paid call of a tool that fails is settled (the server control settles-failed-handler as tools)",
    kills=("server.mcp.tool-error-not-settled",),
)
def settles_tool_errors():
    from .controls import load

    inner: Any = load()["server.settles-failed-handler"].build()  # an InProcessService
    return _service("server.mcp-settles-tool-errors", build=inner.build)


@control(
    "server.mcp-case-insensitive-names",
    "server",
    "Tools are found by name in any letter case, but only the exact name is paywalled",
    kills=("server.mcp.names-not-free",),
)
def case_insensitive_names():
    async def hook(call, forward):
        listed = {"protected"}
        if call.name not in listed and call.name.lower() in listed:
            return _served()
        return None

    return _service("server.mcp-case-insensitive-names", hook)


@control(
    "server.mcp-resource-mirror",
    "server",
    "The paid tool's content is also listed as a resource that resources/read gives freely",
    kills=("server.mcp.resource-read-not-free",),
)
def resource_mirror():
    return _service(
        "server.mcp-resource-mirror", resources={"x402sim://tools/protected": json.dumps(PAID_CONTENT)}
    )


@control(
    "server.mcp-serves-malformed-payment",
    "server",
    "A _meta['x402/payment'] that is no payment object is taken for a free call and served",
    kills=("server.mcp.malformed-payment",),
)
def serves_malformed_payment():
    async def hook(call, forward):
        payment = call.payment
        if payment is not None and not (
            isinstance(payment, dict) and isinstance(payment.get("payload"), dict)
        ):
            return _served()
        return None

    return _service("server.mcp-serves-malformed-payment", hook)


# -- client controls: the reference MCP client with one rule broken --------------------------------


def _mcp_client(name: str, bridge_class):
    from .mcp_kit import mcp_pay_from_env
    from .reference import InProcessClient

    return InProcessClient(lambda env: mcp_pay_from_env(env, bridge_class), name=name, kind="control")


@control(
    "client.mcp-resends-paid-call",
    "client",
    "Every paid tool call is sent twice (a retry on the same payment-required result)",
    kills=("client.mcp.pays-once",),
)
def resends_paid_call():
    from .mcp_kit import McpBridge

    class Twice(McpBridge):
        async def handle_async_request(self, request):
            answer = await super().handle_async_request(request)
            if "payment-signature" in request.headers:
                await super().handle_async_request(request)
            return answer

    return _mcp_client("client.mcp-resends-paid-call", Twice)


@control(
    "client.mcp-structured-only",
    "client",
    "A payment-required result is read from structuredContent only, never from content[0].text",
    kills=("client.mcp.reads-text-content",),
)
def structured_only():
    from .mcp_kit import McpBridge

    class StructuredOnly(McpBridge):
        async def handle_async_request(self, request):
            answer = await super().handle_async_request(request)
            result = answer.extensions.get("mcp_result")
            if isinstance(result, dict) and result.get("isError") and "structuredContent" not in result:
                return httpx.Response(500, json={"error": "tool error"}, request=request)
            return answer

    return _mcp_client("client.mcp-structured-only", StructuredOnly)
