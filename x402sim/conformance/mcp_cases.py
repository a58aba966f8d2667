"""The MCP cases: what the MCP transport (x402 ``specs/transports-v2/mcp.md``) adds to a paid tool server.

Rules:

* They run over MCP only (``transports=("mcp",)``). A case talks to the target through ``ctx.send``,
  which the harness's ``McpBridge`` carries as a tool call (the tool: the path without its slash;
  ``PAYMENT-SIGNATURE``: ``_meta["x402/payment"]``), and judges the raw tool result the bridge keeps
  under ``MCP_RESULT``, or a JSON-RPC error (the bridge's 400 with ``JSONRPC_ERROR``). Resources are
  read on the session itself (``ctx.mcp``), each read noted in the evidence.
* Verdicts rest on chain facts (balances, Transfer logs) wherever money could move.
* A malformed payment may be answered either way the transport allows: a JSON-RPC error (x402sim's
  carry answers ``-32602``, invalid params, as MCP treats unreadable parameters) or an ``isError``
  result (the spec's table lists "Payment Invalid" as a tool result with ``PaymentRequired``). What
  is never allowed: a success result, money moving, an internal error (``-32603``, the analogue of a
  5xx) or a session that stops answering.
* Importing this module needs no MCP SDK (the catalog lists without the ``agents`` extra).
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any
from urllib.parse import quote

from .catalog import case
from .kits import ServerContext, check_settlement
from .server_cases import not_charged, served

MCP = ("mcp",)
SPEC = "MCP transport spec v2"
MCP_RESULT = "mcp_result"  # as mcp_kit.MCP_RESULT (not imported: it needs the SDK)
JSONRPC_ERROR = "jsonrpc_error"
PAYMENT_RESPONSE_KEY = "x402/payment-response"
INTERNAL_ERROR = -32603
# _meta["x402/payment"] values no server may serve: not JSON objects, or objects that are no payment
MALFORMED_PAYMENTS: tuple[tuple[str, Any], ...] = (
    ("a string", "not a payment"),
    ("a number", 42),
    ("a list", [1, 2, 3]),
    ("an object that is no payment", {"x": 1}),
    ("a payment without payload", {"x402Version": 2}),
)


def result_of(response) -> Any:
    """The raw tool result (a dict) or JSON-RPC error the bridge read ``response`` from, else None."""
    return None if response is None else response.extensions.get(MCP_RESULT)


def is_jsonrpc_error(response) -> bool:
    if response is None or response.status_code != 400:
        return False
    with contextlib.suppress(ValueError):
        body = response.json()
        return isinstance(body, dict) and JSONRPC_ERROR in body
    return False


def _header(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode("ascii")


def _text_of(result: dict) -> str | None:
    content = result.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        text = content[0].get("text")
        return text if isinstance(text, str) else None
    return None


async def _unpaid_result(ctx: ServerContext, label: str, tool: str | None = None) -> dict:
    response = await ctx.send(label, ctx.endpoint.method, "/" + (tool or _tool(ctx)))
    ctx.check(response is not None, f"{label}: no answer from the tool server")
    result = result_of(response)
    ctx.check(
        isinstance(result, dict) and not is_jsonrpc_error(response),
        f"{label}: answered with a JSON-RPC error {result!r}, not a tool result",
    )
    return result


def _tool(ctx: ServerContext, which: str = "main") -> str:
    return ctx.path(which).removeprefix("/")


@case(
    "server.mcp.payment-required",
    "MUST",
    f"{SPEC} (payment required signaling)",
    "An unpaid call of a paid tool is an isError result with the PaymentRequired as structuredContent and, "
    "identical, as JSON in content[0].text (x402Version 2, accepts, resource)",
    kind="spec",
    transports=MCP,
)
async def payment_required(ctx: ServerContext) -> None:
    result = await _unpaid_result(ctx, "unpaid tool call")
    ctx.fact("result", result)
    ctx.check(result.get("isError") is True, f"isError is {result.get('isError')!r}, not true")
    structured = result.get("structuredContent")
    ctx.check(isinstance(structured, dict), "no structuredContent object: it is REQUIRED")
    assert isinstance(structured, dict)  # checked just above
    text = _text_of(result)
    ctx.check(text is not None, "content[0] is no text: the JSON copy of the PaymentRequired is REQUIRED")
    try:
        copy = json.loads(text or "")
    except ValueError:
        ctx.fail(f"content[0].text is not JSON: {(text or '')[:120]!r}")
    ctx.check(
        copy == structured, "content[0].text and structuredContent differ: they must hold the same data"
    )
    ctx.check(structured.get("x402Version") == 2, f"x402Version is {structured.get('x402Version')!r}, not 2")
    accepts = structured.get("accepts")
    ctx.check(isinstance(accepts, list) and accepts, "accepts is not a non-empty list")
    resource = structured.get("resource")
    ctx.check(
        isinstance(resource, dict) and isinstance(resource.get("url"), str) and resource["url"],
        f"resource is {resource!r}: expected an object with a url",
    )


@case(
    "server.mcp.payment-response",
    "MUST",
    f"{SPEC} (settlement response delivery)",
    "A paid call's result is a success carrying _meta['x402/payment-response'] with success true, the "
    "offer's network and the transaction that moved the price to the payee",
    kind="spec",
    transports=MCP,
)
async def payment_response(ctx: ServerContext) -> None:
    _, offer = await ctx.offer()
    paid = await ctx.paid(offer)
    ctx.chain_facts(paid)
    result = result_of(paid.response)
    ctx.check(isinstance(result, dict), f"the paid call got no tool result: {result!r}")
    ctx.check(not result.get("isError"), f"a valid payment got an error result: {_text_of(result)!r}")
    meta = result.get("_meta")
    settlement = meta.get(PAYMENT_RESPONSE_KEY) if isinstance(meta, dict) else None
    ctx.fact("payment_response", settlement)
    check_settlement(ctx, settlement, offer, paid, "_meta['x402/payment-response']")


@case(
    "server.mcp.tool-error-not-settled",
    "MUST",
    f"{SPEC} (settlement failure); core spec 5",
    "A paid call of a tool that fails is an isError result without a successful payment-response, and "
    "nothing moves on chain",
    kind="payment",
    transports=MCP,
)
async def tool_error_not_settled(ctx: ServerContext) -> None:
    path = await ctx.optional_path("failing")
    _, offer = await ctx.offer(path)
    paid = await ctx.paid(offer, path=path, label="paid call of the failing tool")
    ctx.chain_facts(paid)
    result = result_of(paid.response)
    if isinstance(result, dict):
        ctx.check(result.get("isError") is True, "the failing tool's paid call was answered as a success")
        meta = result.get("_meta")
        settlement = meta.get(PAYMENT_RESPONSE_KEY) if isinstance(meta, dict) else None
        ctx.check(
            not (isinstance(settlement, dict) and settlement.get("success") is True),
            "the failing tool's result reports a successful settlement",
        )
    ctx.check(
        paid.payee_delta == 0 and paid.payer_delta == 0 and not paid.transfers,
        f"a tool error was charged: payee {paid.payee_delta:+}, payer {paid.payer_delta:+}, "
        f"{len(paid.transfers)} Transfer(s)",
    )


def name_variants(name: str) -> list[str]:
    """Spellings of tool ``name`` that are not ``name``: letter case, prefixes, suffixes."""
    variants = [
        name.upper(),
        name.capitalize(),
        name.swapcase(),
        f"/{name}",
        f"./{name}",
        f"{name}/",
        f"{name}.",
        f" {name}",
        f"{name} ",
        f"tools/{name}",
        f"mcp://tool/{name}",
        f"x402_{name}",
    ]
    return list(dict.fromkeys(v for v in variants if v != name))


@case(
    "server.mcp.names-not-free",
    "MUST",
    f"{SPEC}; core spec 5 (a paid resource is not served unpaid)",
    "Unpaid calls under other spellings of a paid tool's name (letter case, prefixes, suffixes) are "
    "not served, and nothing moves",
    kind="payment",
    transports=MCP,
)
async def names_not_free(ctx: ServerContext) -> None:
    tool = _tool(ctx)
    before = ctx.snapshot()
    served_as = []
    for variant in name_variants(tool):
        # percent-encoded, so that the bridge's tool name is the variant byte for byte
        path = "/" + quote(variant, safe="")
        response = await ctx.send(f"unpaid call of {variant!r}", ctx.endpoint.method, path)
        result = result_of(response)
        if isinstance(result, dict) and not result.get("isError") and served(response):
            served_as.append(variant)
    ctx.fact("served_unpaid", served_as)
    ctx.check(not served_as, f"the paid tool {tool!r} was served unpaid as {', '.join(map(repr, served_as))}")
    delta, transfers = ctx.moved_since(before)
    ctx.check(delta == 0 and not transfers, f"unpaid calls moved funds: payee {delta:+}")


def _same_content(text: str, paid: str) -> bool:
    if paid and paid in text:
        return True
    with contextlib.suppress(ValueError):
        return json.loads(text) == json.loads(paid)
    return False


@case(
    "server.mcp.resource-read-not-free",
    "MUST",
    f"{SPEC}; core spec 5 (a paid resource is not served unpaid)",
    "No resource the server lists gives a paid tool's content through resources/read",
    kind="payment",
    transports=MCP,
)
async def resource_read_not_free(ctx: ServerContext) -> None:
    session = ctx.mcp
    try:
        listing = await session.list_resources()
    except Exception as exc:  # the SDK's McpError: resources are not supported
        ctx.skip(f"the server lists no resources ({type(exc).__name__}: {exc})")
    uris = [str(r.uri) for r in listing.resources]
    ctx.note(f"resources/list: {uris}")
    if not uris:
        ctx.skip("the server lists no resources")
    _, offer = await ctx.offer()
    paid = await ctx.paid(offer, label="paid call (the content a read must not give)")
    result = result_of(paid.response)
    ctx.check(isinstance(result, dict) and not result.get("isError"), "a valid payment was not served")
    content = _text_of(result) or json.dumps(result.get("structuredContent"))
    leaks = []
    for uri in uris:
        try:
            read = await session.read_resource(uri)
        except Exception as exc:  # a refused read is fine
            ctx.note(f"resources/read {uri}: {type(exc).__name__}: {exc}")
            continue
        texts = [getattr(c, "text", "") or "" for c in read.contents]
        ctx.note(f"resources/read {uri}: {json.dumps(texts)[:300]}")
        if any(_same_content(t, content) for t in texts):
            leaks.append(uri)
    ctx.fact("leaking_resources", leaks)
    ctx.check(
        not leaks, f"resources/read of {', '.join(leaks)} gives the paid tool's content without payment"
    )


@case(
    "server.mcp.malformed-payment",
    "MUST",
    f"{SPEC} (error handling); JSON-RPC 2.0 (errors)",
    "A malformed _meta['x402/payment'] gets a JSON-RPC error or an isError result (not an internal "
    "error), is not served, moves nothing, and the server keeps answering",
    kind="payment",
    transports=MCP,
)
async def malformed_payment(ctx: ServerContext) -> None:
    await ctx.offer()
    tool = "/" + _tool(ctx)
    for what, value in MALFORMED_PAYMENTS:
        before = ctx.snapshot()
        label = f"payment that is {what}"
        response = await ctx.send(
            label, ctx.endpoint.method, tool, headers={"PAYMENT-SIGNATURE": _header(value)}
        )
        ctx.check(response is not None, f"{label}: no answer (did the server crash?)")
        result = result_of(response)
        if is_jsonrpc_error(response):
            ctx.check(
                result.get("code") != INTERNAL_ERROR,
                f"{label}: answered with an internal error ({INTERNAL_ERROR}): {result.get('message')!r}",
            )
        else:
            ctx.check(
                isinstance(result, dict) and result.get("isError") is True,
                f"{label}: answered with a success result: served on a malformed payment",
            )
        not_charged(ctx, response, before, what=label, name=what.replace(" ", "-"))
    after = await _unpaid_result(ctx, "unpaid call after the malformed payments")
    ctx.check(after.get("isError") is True, "after the malformed payments the tool is served unpaid")


# -- client cases: the harness's server is a paid tool server (``mcp_kit.ClientFront``) -------------


@case(
    "client.mcp.pays-once",
    "MUST",
    f"{SPEC} (payment flow); core spec 5",
    "A payment-required result from an honest tool is paid with exactly one paid call, moving the price once",
    kind="payment",
    transports=MCP,
)
async def client_pays_once(ctx) -> None:
    from .client_cases import honest, one_transfer_to, signed

    the_offer, ctx.hostile.handler = honest(ctx)
    run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(
        len(payments) == 1, f"the client sent {len(payments)} paid calls for one payment-required result"
    )
    one_transfer_to(ctx, payer, before, the_offer)
    if run.verdict is not None and run.verdict.get("success") is not True:
        ctx.note("the client paid but its verdict does not say success")


@case(
    "client.mcp.reads-text-content",
    "SHOULD",
    f"{SPEC} (client requirements: fall back to content[0].text)",
    "A payment-required result without structuredContent (the PaymentRequired only in content[0].text) is "
    "paid once",
    kind="advice",
    transports=MCP,
)
async def client_reads_text_content(ctx) -> None:
    from .client_cases import honest, one_transfer_to, signed

    ctx.setup.mcp_front.text_only = True
    the_offer, ctx.hostile.handler = honest(ctx)
    _run, payer, before = await ctx.run_client()
    payments = signed(ctx)
    ctx.check(payments, "the client paid nothing: it did not read the PaymentRequired in content[0].text")
    ctx.check(len(payments) == 1, f"the client sent {len(payments)} paid calls, expected 1")
    one_transfer_to(ctx, payer, before, the_offer)
