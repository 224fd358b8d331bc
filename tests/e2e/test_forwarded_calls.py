"""Calls the filter lets through: the MCP server's real answer comes back, and the `tool.call`
record carries the verified identity, the scope decision and the upstream's outcome (success,
JSON-RPC error, tool error), for JSON and SSE responses, batches and delegated tokens.
"""

from __future__ import annotations

from typing import Any

import pytest
from stack import Stack
from support import (
    clean_scan,
    FORBIDDEN, INVALID_PARAMS, Caller, assert_jsonrpc_error, assert_record, assert_unique_ids, call_tool, caller,
    expected_record, h2c_post, post_chunked, post_mcp, tool_call, upstream_requests, wait_for_records,
)

ALICE_SCOPES = ["salesforce:read", "salesforce:write"]
SOQL = {"query": "SELECT Name FROM Opportunity WHERE CloseDate = THIS_MONTH"}


def tool_call_record(who: Caller, *, tool: str, input: Any, scope_required: list[str], result: str = "success",
                     reason: str | None = None, client_type: str | None = "claude-desktop",
                     delegation_chain: list[Any] | None = None, output_scanned: bool = True) -> dict[str, Any]:
    return expected_record(event="tool.call", result=result, reason=reason, tool=tool, input=input,
                           scope_required=scope_required, scope_result="pass",
                           identity=who.identity(client_type=client_type, delegation_chain=delegation_chain),
                           content_scan=clean_scan(output_scanned=output_scanned))


def assert_salesforce_rows(result: dict[str, Any], query: str) -> None:
    assert result["isError"] is False
    structured = result["structuredContent"]
    assert structured["query"] == query
    assert structured["totalSize"] == 3
    assert [r["Name"] for r in structured["records"]] == ["Globex renewal", "Initech expansion", "Umbrella pilot"]


def test_allowed_call_returns_the_tool_result_and_records_the_verified_identity(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, alice.token, "salesforce.query", SOQL, id=11)

    assert reply.status == 200, reply.text
    assert reply.content_type.startswith("application/json")
    assert reply.body["jsonrpc"] == "2.0" and reply.body["id"] == 11 and "error" not in reply.body
    assert_salesforce_rows(reply.body["result"], SOQL["query"])
    records = wait_for_records(stack, 1, user=alice.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(alice, tool="salesforce.query", input=SOQL,
                                               scope_required=["salesforce:read"]), reply, forwarded=True)
    assert records[0]["clientId"] == "claude-desktop-app" and records[0]["tenantId"] == "org_acme_corp"
    assert upstream_requests(stack) == upstream_before + 1


def test_export_user_filter_matches_the_email_too(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    assert call_tool(stack, alice.token, "salesforce.query", SOQL).status == 200
    by_email = wait_for_records(stack, 1, user=alice.email)
    assert [r["sub"] for r in by_email] == [alice.sub]


def test_allowed_call_through_the_sse_endpoint_is_streamed_and_recorded_as_success(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")

    reply = call_tool(stack, alice.token, "salesforce.query", SOQL, id="sse-1", path="/mcp/sse")

    assert reply.status == 200, reply.text
    assert reply.content_type.startswith("text/event-stream"), reply.content_type
    assert len(reply.events) == 1, reply.text
    assert reply.body["id"] == "sse-1"
    assert_salesforce_rows(reply.body["result"], SOQL["query"])
    records = wait_for_records(stack, 1, user=alice.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(alice, tool="salesforce.query", input=SOQL,
                                               scope_required=["salesforce:read"]), reply, forwarded=True)


@pytest.mark.parametrize("trailers", [None, {"x-checksum": "sha256=0"}], ids=["end_stream", "trailers"])
def test_allowed_http2_call_is_forwarded_and_recorded_however_the_request_ends(stack: Stack, trailers) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    upstream_before = upstream_requests(stack)

    reply = h2c_post(stack, alice.token, tool_call("salesforce.query", SOQL, 15), trailers=trailers)

    assert reply.status == 200, reply.text
    assert reply.body["id"] == 15
    assert_salesforce_rows(reply.body["result"], SOQL["query"])
    records = wait_for_records(stack, 1, user=alice.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(alice, tool="salesforce.query", input=SOQL,
                                               scope_required=["salesforce:read"]), reply, forwarded=True)
    assert upstream_requests(stack) == upstream_before + 1


def test_body_uploaded_in_many_chunks_is_recorded_whole(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    # 12 KB: under `audit.maxInputBytes` (16 KiB), so the record keeps the whole input.
    args = {"query": "SELECT Name FROM Opportunity WHERE Name LIKE '%" + "x" * 12000 + "%'"}

    reply = post_chunked(stack, alice.token, tool_call("salesforce.query", args, 16), chunk_size=1000)

    assert reply.status == 200, reply.text
    assert_salesforce_rows(reply.body["result"], args["query"])
    records = wait_for_records(stack, 1, user=alice.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(alice, tool="salesforce.query", input=args,
                                               scope_required=["salesforce:read"]), reply, forwarded=True)


def test_unmapped_client_id_is_recorded_without_a_client_type(stack: Stack) -> None:
    carol = caller(stack, ["files:read"], client_id="some-batch-job")
    reply = call_tool(stack, carol.token, "files.read", {"path": "README.md"})
    assert reply.status == 200, reply.text
    assert reply.body["result"]["isError"] is False
    assert "Acme shared drive" in reply.body["result"]["content"][0]["text"]
    records = wait_for_records(stack, 1, user=carol.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(carol, tool="files.read", input={"path": "README.md"},
                                               scope_required=["files:read"], client_type=None), reply, forwarded=True)
    assert records[0]["clientId"] == "some-batch-job"


def test_upstream_jsonrpc_error_is_passed_through_and_recorded_as_error(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    args = {"record_id": "0065e00000A1xQ1", "fields": {"StageName": "Closed Won"}}

    reply = call_tool(stack, alice.token, "salesforce.update", args, id=12)

    assert reply.status == 200, reply.text
    assert reply.body["id"] == 12 and reply.body["error"]["code"] == -32603
    assert "UNABLE_TO_LOCK_ROW" in reply.body["error"]["message"]
    records = wait_for_records(stack, 1, user=alice.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(alice, tool="salesforce.update", input=args,
                                               scope_required=["salesforce:write"], result="error",
                                               reason="jsonrpc_error_-32603"), reply, forwarded=True)


def test_tool_result_with_is_error_is_recorded_as_tool_error(stack: Stack) -> None:
    dave = caller(stack, ["files:read"], azp="claude-desktop-app")
    args = {"path": "secrets/none.txt"}

    reply = call_tool(stack, dave.token, "files.read", args, id=13)

    assert reply.status == 200, reply.text
    assert reply.body["id"] == 13 and reply.body["result"]["isError"] is True
    assert "No such file" in reply.body["result"]["content"][0]["text"]
    records = wait_for_records(stack, 1, user=dave.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(dave, tool="files.read", input=args, scope_required=["files:read"],
                                               result="error", reason="tool_error"), reply, forwarded=True)


def test_upstream_error_through_sse_is_recorded_as_error(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    args = {"record_id": "0065e00000A1xQ2", "fields": {}}
    reply = call_tool(stack, alice.token, "salesforce.update", args, id=14, path="/mcp/sse")
    assert reply.status == 200, reply.text
    assert reply.content_type.startswith("text/event-stream")
    assert reply.body["error"]["code"] == -32603
    records = wait_for_records(stack, 1, user=alice.sub)
    assert len(records) == 1, records
    assert_record(records[0], tool_call_record(alice, tool="salesforce.update", input=args,
                                               scope_required=["salesforce:write"], result="error",
                                               reason="jsonrpc_error_-32603"), reply, forwarded=True)


def test_delegated_token_records_the_act_chain_outermost_first(stack: Stack) -> None:
    act = {"sub": "agent:report-bot", "client_id": "report-bot",
           "act": {"sub": "agent:orchestrator", "act": {"sub": "agent:scheduler"}}}
    alice = caller(stack, ["salesforce:read"], azp="cursor-ide", act=act)

    reply = call_tool(stack, alice.token, "salesforce.query", SOQL)

    assert reply.status == 200, reply.text
    records = wait_for_records(stack, 1, user=alice.sub)
    assert len(records) == 1, records
    chain = [{"sub": "agent:report-bot", "client_id": "report-bot"}, {"sub": "agent:orchestrator"},
             {"sub": "agent:scheduler"}]
    assert_record(records[0], tool_call_record(alice, tool="salesforce.query", input=SOQL,
                                               scope_required=["salesforce:read"], client_type="cursor",
                                               delegation_chain=chain), reply, forwarded=True)


def test_allowed_batch_is_forwarded_whole_and_each_call_recorded_with_the_upstream_outcome(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    first, second = {"query": "SELECT Id FROM Lead"}, {"query": "SELECT Id FROM Contact"}
    batch = [tool_call("salesforce.query", first, 21), tool_call("salesforce.query", second, 22),
             {"jsonrpc": "2.0", "id": 23, "method": "tools/list"}]
    upstream_before = upstream_requests(stack)

    reply = post_mcp(stack, alice.token, batch)

    # The filter forwards the batch whole. The demo MCP server (MCP Python SDK 2.3.0, stateless
    # Streamable HTTP; JSON-RPC batching left the MCP spec in 2025-06-18) refuses any batch with
    # HTTP 400 and a JSON-RPC -32602 validation error, so both calls end as upstream errors.
    assert upstream_requests(stack) == upstream_before + 1, "the batch was not forwarded"
    assert reply.status == 400, reply.text
    assert reply.headers.get("x-envoy-upstream-service-time") is not None, "not the upstream's answer"
    assert reply.body["id"] is None and reply.body["error"]["code"] == INVALID_PARAMS
    records = wait_for_records(stack, 2, user=alice.sub)
    assert len(records) == 2, records
    assert_unique_ids(records)
    by_input = {r["input"]["query"]: r for r in records}
    for args in (first, second):
        assert_record(by_input[args["query"]], tool_call_record(
            alice, tool="salesforce.query", input=args, scope_required=["salesforce:read"], result="error",
            reason="upstream_status_400", output_scanned=False), reply, forwarded=True)


def test_batch_with_one_denied_call_is_refused_whole(stack: Stack) -> None:
    alice = caller(stack, ALICE_SCOPES, azp="claude-desktop-app")
    allowed, refused = {"query": "SELECT Id FROM Lead"}, {"repo": "acme/app", "title": "t", "body": "b"}
    batch = [tool_call("salesforce.query", allowed, "a"), {"jsonrpc": "2.0", "id": "b", "method": "tools/list"},
             tool_call("github.create_issue", refused, "c")]
    upstream_before = upstream_requests(stack)

    reply = post_mcp(stack, alice.token, batch)

    assert reply.status == 403, reply.text
    assert reply.headers.get("WWW-Authenticate") == 'Bearer error="insufficient_scope", scope="github:write"'
    assert isinstance(reply.body, list) and [e["id"] for e in reply.body] == ["a", "b", "c"], reply.body
    reasons = ["batch_refused", "batch_refused", "insufficient_scope"]
    for error, rpc_id, reason in zip(reply.body, ["a", "b", "c"], reasons, strict=True):
        assert_jsonrpc_error(error, code=FORBIDDEN, id=rpc_id, reason=reason)

    records = wait_for_records(stack, 2, user=alice.sub)
    assert len(records) == 2, records
    assert_unique_ids(records)
    by_tool = {r["tool"]: r for r in records}
    identity = alice.identity(client_type="claude-desktop")
    assert_record(by_tool["salesforce.query"], expected_record(
        event="tool.denied", result="denied", reason="batch_refused", tool="salesforce.query", input=allowed,
        scope_required=["salesforce:read"], scope_result="pass", identity=identity,
        content_scan=clean_scan(output_scanned=False)), reply)
    assert_record(by_tool["github.create_issue"], expected_record(
        event="tool.denied", result="denied", reason="insufficient_scope", tool="github.create_issue",
        input=refused, scope_required=["github:write"], scope_result="fail", identity=identity), reply)
    assert upstream_requests(stack) == upstream_before, "a refused batch reached the MCP server"
