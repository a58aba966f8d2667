"""Bazaar listings (no I/O): what the builders make validates, what a facilitator must refuse is
refused naming the field, and the ``routeTemplate`` rules hold for every spelling (Hypothesis), the
same verdicts as the official Python SDK's copy of those rules."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from x402.extensions.bazaar import facilitator as sdk_facilitator
from x402.extensions.bazaar import validate_and_extract

from x402sim.protocol import ProtocolError
from x402sim.protocol.bazaar import (
    BazaarExtension,
    HttpDeclaration,
    McpInput,
    bazaar_status,
    http_listing,
    listing_of,
    mcp_tool_listing,
    parse_list_query,
    parse_search_query,
    read_listing,
    valid_route_template,
)

CITY = {"properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_an_http_get_listing_validates_and_reads_back():
    listing = http_listing("get", example={"city": "Paris"}, input_schema=CITY, output={"celsius": 12})
    wire = listing.to_wire()
    assert wire["info"]["input"] == {"type": "http", "method": "GET", "queryParams": {"city": "Paris"}}
    assert wire["info"]["output"] == {"type": "json", "example": {"celsius": 12}}
    assert wire["schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert read_listing(wire) == listing and listing.method == "GET" and listing.tool is None
    # the official SDK's facilitator accepts it too (info against schema)
    assert validate_and_extract(wire).valid


def test_a_post_listing_carries_body_type_and_body():
    listing = http_listing("POST", example={"q": "rain"}, input_schema={"type": "object"})
    assert listing.to_wire()["info"]["input"] == {
        "type": "http",
        "method": "POST",
        "bodyType": "json",
        "body": {"q": "rain"},
    }
    assert validate_and_extract(listing.to_wire()).valid


def test_an_mcp_tool_listing_names_the_tool_as_the_spec_and_the_sdks_do():
    listing = mcp_tool_listing(
        "weather", {"type": "object", **CITY}, description="Weather now", example={"city": "Oslo"}
    )
    given_input = listing.to_wire()["info"]["input"]
    assert given_input["tool"] == given_input["toolName"] == "weather"
    assert given_input["transport"] == "streamable-http"
    assert isinstance(listing.info.input, McpInput) and listing.tool == "weather" and listing.type == "mcp"
    assert validate_and_extract(listing.to_wire()).valid  # the SDK reads toolName


def test_a_declaration_takes_its_routes_method_and_a_ready_listing_stays_as_it_is():
    declaration = HttpDeclaration(example={"city": "Rome"}, input_schema=CITY)
    assert listing_of(declaration, "DELETE").method == "DELETE"
    tool = mcp_tool_listing("t", {"type": "object"})
    assert listing_of(tool, "POST") is tool


@pytest.mark.parametrize(
    ("listing", "where", "words"),
    [
        ({"info": {}}, "extensions.bazaar.schema", "required object"),
        ({"schema": {}}, "extensions.bazaar.info", "required object"),
        (
            {"info": {"input": {"type": "http", "method": "GET"}}, "schema": {"$ref": "https://evil.test/s"}},
            "extensions.bazaar.schema",
            "outside itself",
        ),
        (
            {"info": {"input": {}}, "schema": {"$schema": "http://json-schema.org/draft-07/schema#"}},
            "extensions.bazaar.schema",
            "Draft 2020-12",
        ),
        (
            {
                "info": {"input": {"type": "http", "method": "GET", "queryParams": {"city": 3}}},
                "schema": "CITY",
            },
            "extensions.bazaar.info.input.queryParams.city",
            "fails its schema",
        ),
        (
            {"info": {"input": {"type": "http", "method": "TRACE"}}, "schema": {}},
            "extensions.bazaar.info.input",
            "not one of",
        ),
        (
            {"info": {"input": {"type": "http", "method": "GET", "bodyType": "json"}}, "schema": {}},
            "extensions.bazaar.info.input",
            "takes no bodyType",
        ),
        (
            {"info": {"input": {"type": "mcp", "inputSchema": {}}}, "schema": {}},
            "extensions.bazaar.info.input",
            "names its tool",
        ),
        (
            {
                "info": {"input": {"type": "mcp", "tool": "a", "toolName": "b", "inputSchema": {}}},
                "schema": {},
            },
            "extensions.bazaar.info.input",
            "different tools",
        ),
        ({"info": {"input": {"type": "ftp"}}, "schema": {}}, "extensions.bazaar.info.input", ""),
    ],
    ids=[
        "no-schema",
        "no-info",
        "external-ref",
        "draft-7",
        "fails-schema",
        "method",
        "get-body",
        "no-tool",
        "two-tools",
        "type",
    ],
)
def test_a_listing_a_facilitator_must_refuse_names_the_field(listing, where, words):
    if listing.get("schema") == "CITY":
        listing["schema"] = http_listing("GET", input_schema=CITY).to_wire()["schema"]
    with pytest.raises(ProtocolError) as refused:
        read_listing(listing)
    assert refused.value.where.startswith(where) and words in refused.value.problem


# -- routeTemplate -------------------------------------------------------------------------------------------

SEGMENT = st.text(alphabet="abcXYZ019_-~.:%2e5cf/", min_size=0, max_size=12)
ENCODED_DOTS = st.sampled_from(["..", "%2e%2e", "%2E.", ".%2e", "%252e%252e", "%25252e%25252E", "%2e%2E"])
ENCODED_SCHEME = st.sampled_from(["://", "%3a//", ":%2f%2f", "%253A%252F%252F"])


@given(head=SEGMENT, bad=st.one_of(ENCODED_DOTS, ENCODED_SCHEME), tail=SEGMENT)
@example(head="users/", bad="%2e%2e", tail="/admin")
@example(head="x", bad="%252e%252e", tail="")
def test_traversal_or_a_scheme_at_any_encoding_depth_is_never_a_template(head, bad, tail):
    assert not valid_route_template("/" + head + bad + tail)


@given(
    st.lists(
        st.from_regex(r"[a-zA-Z0-9_~-]{1,8}|:[a-zA-Z_][a-zA-Z0-9_]{0,7}", fullmatch=True),
        min_size=1,
        max_size=5,
    )
)
def test_plain_parameterised_paths_are_templates(segments):
    assert valid_route_template("/" + "/".join(segments))


@given(st.one_of(st.text(max_size=30), st.text(alphabet="/%25eEcCfF3a:.x", max_size=30)))
@example("")
@example("/")
@example("users/:id")
@example("/users/:id?x=1")
@example("/%")
@example("/%25%32%65%25%32%65")
def test_our_verdict_is_the_sdks_for_any_string(value):
    assert valid_route_template(value) == sdk_facilitator._is_valid_route_template(value)


# -- the discovery API's parameters --------------------------------------------------------------------------


def test_list_parameters_are_read_and_bad_ones_named():
    query = parse_list_query({"type": "mcp", "payTo": "0xabc", "limit": "5", "offset": "10", "other": "x"})
    assert (query.type, query.pay_to, query.limit, query.offset) == ("mcp", "0xabc", 5, 10)
    for params, where in [
        ({"limit": "0"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"type": "grpc"}, "type"),
        ({"network": ""}, "network"),
    ]:
        with pytest.raises(ProtocolError) as refused:
            parse_list_query(params)
        assert refused.value.where == f"query parameter {where}"


def test_search_needs_words_and_a_cursor_it_gave():
    assert parse_search_query({"query": " rain ", "cursor": "20", "limit": "3"}).query == "rain"
    for params, where in [
        ({}, "query"),
        ({"query": "  "}, "query"),
        ({"query": "a", "cursor": "zz"}, "cursor"),
    ]:
        with pytest.raises(ProtocolError) as refused:
            parse_search_query(params)
        assert refused.value.where == f"query parameter {where}"


def test_the_extension_response_shapes():
    assert bazaar_status("success") == {"bazaar": {"status": "success"}}
    assert bazaar_status("rejected", "why") == {"bazaar": {"status": "rejected", "rejectedReason": "why"}}
    assert isinstance(read_listing(http_listing("HEAD").to_wire()), BazaarExtension)
