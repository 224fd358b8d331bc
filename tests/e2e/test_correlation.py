"""The records' correlation fields through the real Envoy, read back through the export API:
`sessionId`, `requestId`, `traceId`/`spanId`, `sourceAddress`, `userAgent`, `protocolVersion`
(docs/audit-record.md#correlation).

- allowed, denied and auth-failed calls carrying every correlation header, over JSON and SSE,
  handshake era (`Mcp-Session-Id`) and the stateless 2026-07-28 era: the values read back exactly,
  and each record's `requestId` finds its line in Envoy's access log;
- a request without them: nulls, and the `x-request-id` Envoy generated;
- spoofed and invalid values: recorded as sent (correlation ids, not identity), an invalid
  `traceparent` as nulls, control characters replaced, a long `User-Agent` cut;
- `sourceAddress` under Envoy's `use_remote_address` / `xff_num_trusted_hops` settings.

The official SDK clients' session ids and protocol versions are checked in
test_interop_python_sdk.py and test_interop_typescript_sdk.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from stack import Stack
from support import (ENVOY_REQUEST_ID, LOOPBACK_SOURCE, NO_IDENTITY, Reply, assert_record, call_tool, caller,
                     clean_scan, correlation, expected_record, export, http_request, post_mcp, tool_call,
                     wait_for_records)

HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
MAX_USER_AGENT_BYTES = 512  # filter/src/audit/correlation.rs


def trace_ids() -> tuple[str, str]:
    """A fresh W3C trace id and parent (span) id."""
    return uuid.uuid4().hex, uuid.uuid4().hex[:16]


def access_log_line(stack: Stack, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The access-log line of the request with `request_id` (Envoy flushes the file each second)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in stack.access_log_path.read_text().splitlines() if line]
        found = [line for line in lines if line["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} access-log lines with request_id {request_id}"
            return found[0]
        time.sleep(0.2)


def record_of(stack: Stack, reply: Reply, input: Any) -> dict[str, Any]:
    """The one record of `reply`'s request, told apart by its unique `input`."""
    records = wait_for_records(stack, 1, since=reply.started, until=reply.finished,
                               where=lambda r: r["input"] == input)
    assert len(records) == 1, records
    return records[0]


@pytest.mark.parametrize("path", ["/mcp", "/mcp/sse"], ids=["json", "sse"])
def test_allowed_denied_and_auth_failed_calls_record_the_headers_as_sent(stack: Stack, path: str) -> None:
    alice = caller(stack, ["salesforce:read"])
    session = f"session-{uuid.uuid4()}"
    agent = "acme-agent/1.4 (+https://agents.acme.test)"
    sent: dict[str, dict[str, Any]] = {}
    replies: dict[str, Reply] = {}
    calls: dict[str, tuple[str | None, str, dict[str, Any]]] = {
        "allowed": (alice.token, "salesforce.query", {"query": f"SELECT Id FROM Account -- {alice.sub}"}),
        "denied": (alice.token, "github.create_issue", {"repo": "acme/x", "title": alice.sub}),
        "auth_failed": (None, "salesforce.query", {"query": f"unauthenticated {alice.sub}"}),
    }
    for kind, (token, tool, args) in calls.items():
        request_id, (trace, span) = str(uuid.uuid4()), trace_ids()
        headers = {"Mcp-Session-Id": session, "X-Request-Id": request_id, "traceparent": f"00-{trace}-{span}-01",
                   "User-Agent": agent, "MCP-Protocol-Version": HANDSHAKE}
        replies[kind] = call_tool(stack, token, tool, args, headers=headers, path=path)
        sent[kind] = correlation(sessionId=session, requestId=request_id, traceId=trace, spanId=span,
                                 userAgent=agent, protocolVersion=HANDSHAKE)
    assert [r.status for r in replies.values()] == [200, 403, 401]

    allowed = record_of(stack, replies["allowed"], calls["allowed"][2])
    assert_record(allowed, expected_record(
        event="tool.call", result="success", reason=None, tool="salesforce.query", input=calls["allowed"][2],
        scope_required=["salesforce:read"], scope_result="pass", identity=alice.identity(),
        content_scan=clean_scan(), sent=sent["allowed"]), replies["allowed"], forwarded=True)
    denied = record_of(stack, replies["denied"], calls["denied"][2])
    assert_record(denied, expected_record(
        event="tool.denied", result="denied", reason="insufficient_scope", tool="github.create_issue",
        input=calls["denied"][2], scope_required=["github:write"], scope_result="fail", identity=alice.identity(),
        sent=sent["denied"]), replies["denied"])
    failed = record_of(stack, replies["auth_failed"], calls["auth_failed"][2])
    assert_record(failed, expected_record(
        event="auth.failed", result="auth_failed", reason="missing_token", tool="salesforce.query",
        input=calls["auth_failed"][2], scope_required=None, scope_result=None, identity=NO_IDENTITY,
        sent=sent["auth_failed"]), replies["auth_failed"])

    for record in (allowed, denied, failed):
        line = access_log_line(stack, record["requestId"])
        assert line["traceparent"] == f"00-{record['traceId']}-{record['spanId']}-01", line
        assert line["source"] == record["sourceAddress"], line
        assert line["user_agent"] == agent and line["path"] == path, line


def test_export_and_stats_find_a_session_trace_request_and_source(stack: Stack) -> None:
    """An incident responder's questions through the export and stats APIs: every call of one
    session in order, the call of one trace or request id, the calls from one source address."""
    alice = caller(stack, ["salesforce:read"])
    session = f"session-{uuid.uuid4()}"
    sent = []
    for n, tool in enumerate(["salesforce.query", "github.create_issue", "salesforce.query"]):
        request_id, (trace, span) = str(uuid.uuid4()), trace_ids()
        headers = {"Mcp-Session-Id": session, "X-Request-Id": request_id, "traceparent": f"00-{trace}-{span}-01",
                   "MCP-Protocol-Version": HANDSHAKE}
        call_tool(stack, alice.token, tool, {"query": f"step {n} {alice.sub}"}, headers=headers)
        sent.append((request_id, trace))
    # Another session's call, which no filter below may return.
    call_tool(stack, alice.token, "salesforce.query", {"query": f"other {alice.sub}"},
              headers={"Mcp-Session-Id": f"session-{uuid.uuid4()}", "MCP-Protocol-Version": HANDSHAKE})
    wait_for_records(stack, 4, where=lambda r: alice.sub in json.dumps(r["input"]))

    def found(**params: str) -> list[dict[str, Any]]:
        reply = export(stack, params=params)
        assert reply.status == 200, reply.text
        return [r for r in reply.body["records"] if alice.sub in json.dumps(r["input"])]

    in_session = found(session=session)
    assert [r["input"]["query"] for r in in_session] == [f"step {n} {alice.sub}" for n in range(3)]
    assert [r["result"] for r in in_session] == ["success", "denied", "success"]
    assert [(r["requestId"], r["traceId"]) for r in in_session] == sent
    request_id, trace = sent[1]
    assert [r["requestId"] for r in found(trace=trace)] == [request_id]
    assert [r["traceId"] for r in found(request=request_id)] == [trace]
    # Each call came on a connection of its own: its address and port are its own.
    assert found(source=in_session[0]["sourceAddress"]) == [in_session[0]]
    assert found(session=session, result="denied") == [in_session[1]]

    path = f"/{stack.tenant}/api/v1/stats?session={session}"
    stats = http_request(("127.0.0.1", stack.ports.collector), "GET", path,
                         headers={"Authorization": f"Bearer {stack.api_key}"})
    assert stats.status == 200, stats.text
    assert (stats.body["total"], stats.body["byResult"]) == (3, {"success": 2, "denied": 1})


def test_a_stateless_modern_call_records_its_revision_and_no_session(stack: Stack) -> None:
    alice = caller(stack, ["files:read"])
    call = tool_call("files.read", {"path": "README.md"}, id=7)
    call["params"]["_meta"] = META
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "files.read",
               "Mcp-Param-Path": "README.md"}
    reply = post_mcp(stack, alice.token, call, headers=headers)
    assert reply.status == 200, reply.text
    [record] = wait_for_records(stack, 1, user=alice.sub)
    assert_record(record, expected_record(
        event="tool.call", result="success", reason=None, tool="files.read", input={"path": "README.md"},
        scope_required=["files:read"], scope_result="pass", identity=alice.identity(), content_scan=clean_scan(),
        sent=correlation(protocolVersion=MODERN)), reply, forwarded=True)


def test_a_request_without_the_headers_records_nulls_and_the_request_id_envoy_generated(stack: Stack) -> None:
    alice = caller(stack, ["salesforce:read"])
    args = {"query": f"bare {alice.sub}"}
    # http.client sends no User-Agent; the legacy-era call leaves out MCP-Protocol-Version.
    reply = call_tool(stack, alice.token, "salesforce.query", args, headers={"MCP-Protocol-Version": None})
    assert reply.status == 200, reply.text
    [record] = wait_for_records(stack, 1, user=alice.sub)
    assert_record(record, expected_record(
        event="tool.call", result="success", reason=None, tool="salesforce.query", input=args,
        scope_required=["salesforce:read"], scope_result="pass", identity=alice.identity(), content_scan=clean_scan(),
        sent=correlation(requestId=ENVOY_REQUEST_ID, protocolVersion=None)), reply, forwarded=True)
    # The id Envoy generated is the one its access log shows: the join works without a client id.
    line = access_log_line(stack, record["requestId"])
    assert line["traceparent"] is None and line["user_agent"] is None, line
    assert line["source"] == record["sourceAddress"], line


def test_spoofed_ids_are_recorded_as_sent_and_identity_still_comes_from_the_token(stack: Stack) -> None:
    """A client may send another request's `x-request-id` and `traceparent`: they are recorded as
    sent (correlation ids, not identity), and `sub` is still the token's."""
    victim, mallory = caller(stack, ["salesforce:read"]), caller(stack, ["salesforce:read"])
    trace, span = trace_ids()
    copied = {"X-Request-Id": str(uuid.uuid4()), "traceparent": f"00-{trace}-{span}-01"}
    for who in (victim, mallory):
        assert call_tool(stack, who.token, "salesforce.query", {"query": who.sub}, headers=copied).status == 200
    [by_victim] = wait_for_records(stack, 1, user=victim.sub)
    [by_mallory] = wait_for_records(stack, 1, user=mallory.sub)
    for record, who in ((by_victim, victim), (by_mallory, mallory)):
        assert (record["sub"], record["requestId"], record["traceId"], record["spanId"]) == (
            who.sub, copied["X-Request-Id"], trace, span)


@pytest.mark.parametrize(("headers", "fields"), [
    ({"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}, {}),
    ({"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"}, {}),
    ({"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, {}),
    ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"}, {}),
    ({"traceparent": "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"},
     {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7"}),
    ({"User-Agent": "agent\tv1", "Mcp-Session-Id": "s\t1"}, {"userAgent": "agent\ufffdv1", "sessionId": "s\ufffd1"}),
    ({"User-Agent": b"caf\xe9"}, {"userAgent": "caf\ufffd"}),
    ({"User-Agent": "é".encode() * 400}, {"userAgent": "é" * (MAX_USER_AGENT_BYTES // 2)}),
    ({"MCP-Protocol-Version": "x" * 100}, {"protocolVersion": "x" * 32}),
], ids=["uppercase-trace", "zero-trace", "version-ff", "v00-with-more", "later-version-with-more",
        "control-characters", "not-utf8", "long-user-agent", "long-protocol-version"])
def test_invalid_and_unusual_values_are_bounded_and_made_safe(stack: Stack, headers: dict[str, Any],
                                                              fields: dict[str, Any]) -> None:
    """Refused by the filter (insufficient scope), so no server judges the odd headers."""
    alice = caller(stack, ["salesforce:read"])
    args = {"repo": "acme/x", "title": alice.sub}
    reply = call_tool(stack, alice.token, "github.create_issue", args, headers=headers)
    assert reply.status == 403, reply.text
    [record] = wait_for_records(stack, 1, user=alice.sub)
    assert_record(record, expected_record(
        event="tool.denied", result="denied", reason="insufficient_scope", tool="github.create_issue", input=args,
        scope_required=["github:write"], scope_result="fail", identity=alice.identity(),
        sent=correlation(**fields)), reply)


# Envoy's connection manager settings, the X-Forwarded-For sent, and the `sourceAddress` and
# `requestId` recorded (LOOPBACK_SOURCE: the test's own connection; XFF addresses carry port 0).
XFF = "198.51.100.1, 203.0.113.7"
SOURCE_CASES: list[tuple[str, dict[str, Any], list[tuple[str | None, Any]], bool]] = [
    # Envoy's default: the client's X-Forwarded-For decides (its last address), ids kept.
    ("default", {}, [(None, LOOPBACK_SOURCE), ("203.0.113.7", "203.0.113.7:0"), (XFF, "203.0.113.7:0")], True),
    ("default-one-trusted-hop", {"xff_num_trusted_hops": 1},
     [(None, LOOPBACK_SOURCE), ("203.0.113.7", LOOPBACK_SOURCE), (XFF, "198.51.100.1:0")], True),
    # The edge setting: the peer's address, whatever XFF says; the request is external, so
    # Envoy replaces the client's x-request-id.
    ("use-remote-address", {"use_remote_address": True},
     [(None, LOOPBACK_SOURCE), ("203.0.113.7", LOOPBACK_SOURCE), (XFF, LOOPBACK_SOURCE)], False),
    ("use-remote-address-one-trusted-hop", {"use_remote_address": True, "xff_num_trusted_hops": 1},
     [(None, LOOPBACK_SOURCE), ("203.0.113.7", "203.0.113.7:0"), (XFF, "203.0.113.7:0")], False),
    ("use-remote-address-preserving-ids", {"use_remote_address": True, "preserve_external_request_id": True},
     [(None, LOOPBACK_SOURCE), (XFF, LOOPBACK_SOURCE)], True),
]


@pytest.mark.parametrize(("settings", "cases", "ids_kept"), [c[1:] for c in SOURCE_CASES],
                         ids=[c[0] for c in SOURCE_CASES])
def test_the_source_address_is_the_one_envoy_resolved_under_its_xff_settings(
        make_stack: Callable[..., Stack], settings: dict[str, Any], cases: list[tuple[str | None, Any]],
        ids_kept: bool) -> None:
    stack = make_stack(connection_manager=settings).start()
    alice = caller(stack, ["salesforce:read"])
    for xff, source in cases:
        request_id = str(uuid.uuid4())
        args = {"query": f"{alice.sub} via {xff}"}
        reply = call_tool(stack, alice.token, "salesforce.query", args,
                          headers={"X-Forwarded-For": xff, "X-Request-Id": request_id})
        assert reply.status == 200, reply.text
        record = record_of(stack, reply, args)
        assert_record(record, expected_record(
            event="tool.call", result="success", reason=None, tool="salesforce.query", input=args,
            scope_required=["salesforce:read"], scope_result="pass", identity=alice.identity(),
            content_scan=clean_scan(),
            sent=correlation(sourceAddress=source, requestId=request_id if ids_kept else ENVOY_REQUEST_ID)),
            reply, forwarded=True)
        if not ids_kept:
            assert record["requestId"] != request_id, "Envoy replaced the external request's id"
        assert access_log_line(stack, record["requestId"])["source"] == record["sourceAddress"]
