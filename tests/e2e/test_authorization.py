"""Authorized callers the filter refuses: a missing scope, an unknown tool, a body that is not
JSON-RPC, MCP headers that contradict the body. Each is answered by the filter (never reaches
the MCP server) and leaves one `tool.denied` record with the caller's identity.
"""

from __future__ import annotations

from typing import Any

import pytest
from stack import Stack
from support import (
    FORBIDDEN, HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, Caller, Reply,
    assert_jsonrpc_error, assert_record, call_tool, caller, expected_record, h2c_post, post_chunked, post_mcp,
    tool_call, upstream_requests, wait_for_records,
)

CLAUDE = {"azp": "claude-desktop-app"}


def denied(who: Caller, reason: str, *, tool: str | None, input: Any, scope_required: list[str] | None,
           scope_result: str | None, client_type: str | None = "claude-desktop") -> dict[str, Any]:
    return expected_record(event="tool.denied", result="denied", reason=reason, tool=tool, input=input,
                           scope_required=scope_required, scope_result=scope_result,
                           identity=who.identity(client_type=client_type))


def only_record(stack: Stack, who: Caller) -> dict[str, Any]:
    records = wait_for_records(stack, 1, user=who.sub)
    assert len(records) == 1, records
    return records[0]


def assert_local_reply(reply: Reply, status: int) -> None:
    assert reply.status == status, reply.text
    assert reply.content_type.startswith("application/json")
    assert reply.headers.get("x-envoy-upstream-service-time") is None, "answered by the upstream?"


def test_missing_scope_is_403_insufficient_scope_and_never_reaches_the_mcp_server(stack: Stack) -> None:
    bob = caller(stack, ["files:read", "github:write"], **CLAUDE)
    args = {"query": "SELECT Name FROM Opportunity"}
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, bob.token, "salesforce.query", args, id="call-1")

    assert_local_reply(reply, 403)
    assert reply.headers.get("WWW-Authenticate") == 'Bearer error="insufficient_scope", scope="salesforce:read"'
    error = assert_jsonrpc_error(reply.body, code=FORBIDDEN, id="call-1", reason="insufficient_scope")
    assert "salesforce:read" in error["message"]
    record = only_record(stack, bob)
    assert_record(record, denied(bob, "insufficient_scope", tool="salesforce.query", input=args,
                                 scope_required=["salesforce:read"], scope_result="fail"), reply)
    # Read after the record arrived: the request is long finished, so any upstream call is counted.
    assert upstream_requests(stack) == upstream_before, "the denied call reached the MCP server"


def test_scope_of_another_tool_does_not_grant_a_write(stack: Stack) -> None:
    reader = caller(stack, ["salesforce:read"], **CLAUDE)
    args = {"record_id": "0065e00000A1xQ1", "fields": {"StageName": "Closed Won"}}
    reply = call_tool(stack, reader.token, "salesforce.update", args, id=2)
    assert_local_reply(reply, 403)
    assert reply.headers.get("WWW-Authenticate") == 'Bearer error="insufficient_scope", scope="salesforce:write"'
    assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=2, reason="insufficient_scope")
    assert_record(only_record(stack, reader), denied(
        reader, "insufficient_scope", tool="salesforce.update", input=args,
        scope_required=["salesforce:write"], scope_result="fail"), reply)


def test_unknown_tool_is_403_unknown_tool_with_no_required_scope(stack: Stack) -> None:
    alice = caller(stack, ["salesforce:read", "salesforce:write"], **CLAUDE)
    args = {"command": "rm -rf /"}
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, alice.token, "shell.exec", args, id=3)

    assert_local_reply(reply, 403)
    assert reply.headers.get("WWW-Authenticate") is None
    error = assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=3, reason="unknown_tool")
    assert "shell.exec" in error["message"]
    assert_record(only_record(stack, alice), denied(
        alice, "unknown_tool", tool="shell.exec", input=args, scope_required=None, scope_result="fail"), reply)
    assert upstream_requests(stack) == upstream_before


def test_non_json_body_is_400_parse_error_with_null_id(stack: Stack) -> None:
    alice = caller(stack, **CLAUDE)
    upstream_before = upstream_requests(stack)

    reply = post_mcp(stack, alice.token, b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", ')

    assert_local_reply(reply, 400)
    assert reply.headers.get("WWW-Authenticate") is None
    assert_jsonrpc_error(reply.body, code=PARSE_ERROR, id=None, reason="parse_error")
    assert_record(only_record(stack, alice), denied(
        alice, "parse_error", tool=None, input=None, scope_required=None, scope_result=None), reply)
    assert upstream_requests(stack) == upstream_before


def test_mcp_name_header_contradicting_the_body_is_400_header_mismatch(stack: Stack) -> None:
    alice = caller(stack, ["salesforce:read", "github:write"], **CLAUDE)
    args = {"query": "SELECT Id FROM Account"}
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, alice.token, "salesforce.query", args, id=4,
                      headers={"Mcp-Method": "tools/call", "Mcp-Name": "github.create_issue"})

    assert_local_reply(reply, 400)
    error = assert_jsonrpc_error(reply.body, code=HEADER_MISMATCH, id=4, reason="header_mismatch")
    assert "github.create_issue" in error["message"] and "salesforce.query" in error["message"]
    assert_record(only_record(stack, alice), denied(
        alice, "header_mismatch", tool="salesforce.query", input=args, scope_required=None, scope_result=None),
        reply)
    assert upstream_requests(stack) == upstream_before


def test_mcp_headers_agreeing_with_the_body_are_forwarded(stack: Stack) -> None:
    alice = caller(stack, **CLAUDE)
    args = {"query": "SELECT Id FROM Account"}
    reply = call_tool(stack, alice.token, "salesforce.query", args, id=5,
                      headers={"Mcp-Method": "tools/call", "Mcp-Name": "salesforce.query"})
    assert reply.status == 200, reply.text
    record = only_record(stack, alice)
    assert (record["event"], record["result"], record["reason"]) == ("tool.call", "success", None)


def test_json_that_is_not_json_rpc_is_400_invalid_request(stack: Stack) -> None:
    alice = caller(stack, **CLAUDE)
    reply = post_mcp(stack, alice.token, {"jsonrpc": "1.0", "id": 6, "method": "tools/call"})
    assert_local_reply(reply, 400)
    assert_jsonrpc_error(reply.body, code=INVALID_REQUEST, id=None, reason="invalid_request")
    assert_record(only_record(stack, alice), denied(
        alice, "invalid_request", tool=None, input=None, scope_required=None, scope_result=None), reply)


def test_tools_call_without_a_tool_name_is_400_invalid_params(stack: Stack) -> None:
    alice = caller(stack, **CLAUDE)
    reply = post_mcp(stack, alice.token, {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                                          "params": {"arguments": {"query": "x"}}})
    assert_local_reply(reply, 400)
    assert_jsonrpc_error(reply.body, code=INVALID_PARAMS, id=8, reason="invalid_params")
    assert_record(only_record(stack, alice), denied(
        alice, "invalid_params", tool=None, input=None, scope_required=None, scope_result=None), reply)


# ---- Request framing: the decision waits for the whole body, however it is framed ---------


@pytest.mark.parametrize("trailers", [None, {"x-checksum": "sha256=0"}], ids=["end_stream", "trailers"])
def test_http2_call_without_the_scope_is_refused_however_the_request_ends(stack: Stack, trailers) -> None:
    """The filter decides when the body is complete. A request that ends with trailers (HTTP/2
    HEADERS after the last DATA frame) must be decided too, not resume undecided upstream."""
    bob = caller(stack, ["files:read"], **CLAUDE)
    args = {"query": "SELECT Name, Amount FROM Opportunity"}
    upstream_before = upstream_requests(stack)

    reply = h2c_post(stack, bob.token, tool_call("salesforce.query", args, 31), trailers=trailers)

    assert reply.status == 403, reply.text
    assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=31, reason="insufficient_scope")
    assert_record(only_record(stack, bob), denied(
        bob, "insufficient_scope", tool="salesforce.query", input=args,
        scope_required=["salesforce:read"], scope_result="fail"), reply)
    assert upstream_requests(stack) == upstream_before, "the denied call reached the MCP server"


def test_chunked_http1_call_with_trailers_and_no_scope_is_refused(stack: Stack) -> None:
    bob = caller(stack, ["files:read"], **CLAUDE)
    args = {"query": "SELECT Id FROM Contact"}
    upstream_before = upstream_requests(stack)

    reply = post_chunked(stack, bob.token, tool_call("salesforce.query", args, 32), chunk_size=16,
                         trailers={"X-Checksum": "sha256=0"})

    assert_local_reply(reply, 403)
    assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=32, reason="insufficient_scope")
    assert_record(only_record(stack, bob), denied(
        bob, "insufficient_scope", tool="salesforce.query", input=args,
        scope_required=["salesforce:read"], scope_result="fail"), reply)
    assert upstream_requests(stack) == upstream_before
