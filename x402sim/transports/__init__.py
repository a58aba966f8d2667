"""x402 over other carriers than HTTP: MCP tool calls and A2A tasks.

Each transport is a sans-IO carry (``mcp_carry``, ``a2a_carry``: a call or a task as the request the
roles read, and their answer back) and drivers on the protocol's official SDK. The roles, the
mechanisms, the governor and the trust checks are the HTTP ones, unchanged: a transport is one more
way to carry the same effects. ``mcp_tools`` declares paid tools and the role selling them (no SDK);
``mcp`` is the paid tool server and the paying MCP client. The SDK-backed modules need
``x402sim[agents]``.
"""

from .mcp_carry import (
    MCP_PAYMENT,
    MCP_PAYMENT_RESPONSE,
    TOOL_BASE_URL,
    McpProtocolError,
    ToolCall,
    call_of_request,
    payment_required_of_result,
    response_of_result,
    result_of_response,
    tool_answer,
    tool_failure,
    tool_request,
    tool_route_key,
)
from .mcp_tools import PaidTool, ToolSellingServer, tool_routes

__all__ = [
    "MCP_PAYMENT",
    "MCP_PAYMENT_RESPONSE",
    "TOOL_BASE_URL",
    "McpProtocolError",
    "PaidTool",
    "ToolCall",
    "ToolSellingServer",
    "call_of_request",
    "payment_required_of_result",
    "response_of_result",
    "result_of_response",
    "tool_answer",
    "tool_failure",
    "tool_request",
    "tool_route_key",
    "tool_routes",
]
