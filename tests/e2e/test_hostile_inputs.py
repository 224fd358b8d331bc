"""Hostile bodies and answers through the real Envoy, over HTTP/1.1 and HTTP/2: each is answered
with a clear HTTP status and JSON-RPC error and recorded, never reaches the MCP server unread,
and never takes a worker down (a normal call still works afterwards).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stack import Stack
from support import (
    INVALID_REQUEST, PARSE_ERROR, Caller, Reply, assert_jsonrpc_error, assert_record, call_tool, caller,
    expected_record, h2c_post, post_mcp, tool_call, unique, upstream_requests, wait_for_records,
)

PYTHON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
HOSTILE_UPSTREAM = [str(PYTHON), str(Path(__file__).with_name("hostile_upstream.py")), "{port}"]
SSN = "536-22-1987"
# The listener's buffer limit (Envoy's default `per_connection_buffer_limit_bytes`): the largest
# request body the filter can hold and decide.
ENVOY_BUFFER_LIMIT = 1 << 20

Send = Callable[..., Reply]


def http1(stack: Stack, token: str | None, body: bytes, *, headers: dict[str, str] | None = None,
          path: str = "/mcp") -> Reply:
    return post_mcp(stack, token, body, headers=headers, path=path)


def http2(stack: Stack, token: str | None, body: bytes, *, headers: dict[str, str] | None = None,
          path: str = "/mcp") -> Reply:
    return h2c_post(stack, token, body, headers=headers, path=path)


TRANSPORTS = {"http1": http1, "http2": http2}
# Deepest bodies per transport (the HTTP/2 test client sends at most 64 KiB).
DEPTH = {"http1": 100_000, "http2": 60_000}


def refused_record(who: Caller, reason: str) -> dict[str, Any]:
    return expected_record(event="tool.denied", result="denied", reason=reason, tool=None, input=None,
                           scope_required=None, scope_result=None, identity=who.identity())


def assert_refused(stack: Stack, who: Caller, reply: Reply, *, status: int, code: int, reason: str) -> None:
    """`reply` is `status` with JSON-RPC `code`, and `who` has exactly one record with `reason`."""
    assert reply.status == status, reply.text
    assert_jsonrpc_error(reply.body, code=code, id=None, reason=reason)
    records = wait_for_records(stack, 1, user=who.sub)
    assert len(records) == 1, records
    assert_record(records[0], refused_record(who, reason), reply)


def hostile_bodies(transport: str) -> dict[str, tuple[bytes, dict[str, str] | None, int, int, str]]:
    """case -> (body, extra headers, status, JSON-RPC code, reason)."""
    call = json.dumps(tool_call("salesforce.query", {"query": "SELECT Id FROM Lead"})).encode()
    small_call = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"salesforce.query"}}'
    batch = 10_000 if transport == "http1" else 500
    return {
        "nesting_depth_attack": (b"[" * DEPTH[transport], None, 400, PARSE_ERROR, "parse_error"),
        "nested_arguments": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"salesforce.query",'
                             b'"arguments":' + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"}}", None, 400, PARSE_ERROR,
                             "parse_error"),
        "invalid_utf8": (call.replace(b"SELECT", b"SEL\xff\xfeCT"), None, 400, PARSE_ERROR, "parse_error"),
        "duplicate_tool_name": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"salesforce.query",'
                                b'"name":"salesforce.update","arguments":{}}}', None, 400, INVALID_REQUEST,
                                "duplicate_key"),
        "duplicate_argument": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"salesforce.query",'
                               b'"arguments":{"query":"ssn ' + SSN.encode() + b'","query":"SELECT 1"}}}', None, 400,
                               INVALID_REQUEST, "duplicate_key"),
        f"batch_of_{batch}": (b"[" + b",".join([small_call] * batch) + b"]", None, 400, INVALID_REQUEST,
                              "batch_too_large"),
        "gzip_body": (gzip.compress(call), {"Content-Encoding": "gzip"}, 415, INVALID_REQUEST,
                      "unsupported_content_encoding"),
    }


CASES = [(t, case) for t in TRANSPORTS for case in hostile_bodies(t)]


@pytest.mark.parametrize(("transport", "case"), CASES)
def test_hostile_body_is_refused_recorded_and_never_forwarded(stack: Stack, transport: str, case: str) -> None:
    body, headers, status, code, reason = hostile_bodies(transport)[case]
    who = caller(stack, sub=unique(f"hostile-{case}"))
    upstream_before = upstream_requests(stack)

    reply = TRANSPORTS[transport](stack, who.token, body, headers=headers)

    assert_refused(stack, who, reply, status=status, code=code, reason=reason)
    assert upstream_requests(stack) == upstream_before, "a hostile body reached the MCP server"
    assert call_tool(stack, who.token, "salesforce.query", {"query": "SELECT 1"}).status == 200


def test_gzip_answer_to_a_refused_gzip_body_names_the_accepted_encoding(stack: Stack) -> None:
    who = caller(stack)
    body = gzip.compress(json.dumps(tool_call("salesforce.query", {"query": "SELECT 1"})).encode())
    reply = post_mcp(stack, who.token, body, headers={"Content-Encoding": "gzip"})
    assert reply.status == 415, reply.text
    assert reply.headers.get("Accept-Encoding") == "identity"


def test_a_quarter_mib_string_is_scanned_and_forwarded(stack: Stack) -> None:
    """The demo server echoes the query (twice: text and structured content), so both the call
    and its answer stay under the listener's buffer, which must hold whole bodies the filter
    scans (see docs/configuration.md). The record keeps the input's first `audit.maxInputBytes`
    (16 KiB), its size and its SHA-256."""
    who = caller(stack)
    args = {"query": "SELECT Id FROM Lead WHERE Name = '" + "x" * (256 * 1024) + "'"}

    reply = call_tool(stack, who.token, "salesforce.query", args)

    assert reply.status == 200, reply.text[:300]
    [record] = wait_for_records(stack, 1, user=who.sub)
    assert (record["result"], record["input"], record["contentScan"]["inputScanned"]) == ("success", None, True)
    text = json.dumps(args, separators=(",", ":"))
    assert record["inputSummary"] == {"bytes": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                                      "reason": "truncated", "prefix": text[:16384]}


def test_a_body_over_the_listener_buffer_is_413_from_envoy_recorded_and_never_forwarded(stack: Stack) -> None:
    """Envoy itself refuses a body larger than the listener's buffer before the filter can read
    it; the filter still records the refused call (no tool: the body was never read)."""
    who = caller(stack)
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, who.token, "salesforce.query", {"query": "x" * (ENVOY_BUFFER_LIMIT + 1)})

    assert reply.status == 413, reply.text[:300]
    assert upstream_requests(stack) == upstream_before
    records = wait_for_records(stack, 1, user=who.sub)
    assert len(records) == 1, records
    assert_record(records[0], refused_record(who, "request_too_large"), reply)


# ---- Answers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(make_module_stack: Callable[..., Stack]) -> Iterator[Stack]:
    """A stack whose MCP server is `hostile_upstream.py`."""
    yield make_module_stack(upstream=HOSTILE_UPSTREAM)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_upstream_is_asked_for_an_uncompressed_answer_which_is_scanned(hostile: Stack, transport: str) -> None:
    who = caller(hostile)
    call = json.dumps(tool_call("salesforce.query", {"query": "SELECT 1"}, id=3)).encode()

    reply = TRANSPORTS[transport](hostile, who.token, call, headers={"Accept-Encoding": "gzip, br"})

    assert reply.status == 200, reply.text
    assert reply.body["result"]["content"][0]["text"] == "customer record, ssn [REDACTED:ssn]", reply.text
    [record] = wait_for_records(hostile, 1, user=who.sub)
    assert (record["result"], record["contentScan"]["outputScanned"]) == ("success", True)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_compressed_answer_is_replaced_by_an_error_never_passed_unscanned(hostile: Stack, transport: str) -> None:
    who = caller(hostile)
    call = json.dumps(tool_call("salesforce.query", {"query": "SELECT 1"}, id=4)).encode()

    reply = TRANSPORTS[transport](hostile, who.token, call, path="/mcp/gzip-always")

    assert reply.status == 200, reply.text
    assert_jsonrpc_error(reply.body, code=-32003, id=4, reason="output_encoded")
    [record] = wait_for_records(hostile, 1, user=who.sub)
    assert (record["event"], record["result"], record["reason"]) == ("tool.denied", "blocked", "output_encoded")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_sse_event_split_across_chunks_is_scanned_whole(hostile: Stack, transport: str) -> None:
    who = caller(hostile)
    call = json.dumps(tool_call("salesforce.query", {"query": "SELECT 1"}, id=5)).encode()

    reply = TRANSPORTS[transport](hostile, who.token, call, path="/mcp/sse-split")

    assert reply.status == 200, reply.text
    assert SSN not in reply.text
    assert reply.text.startswith("event: message\ndata: ") and reply.text.endswith("\n\n"), reply.text
    answer = json.loads(reply.text.split("data: ", 1)[1])
    assert answer["id"] == 5 and answer["result"]["content"][0]["text"] == "customer record, ssn [REDACTED:ssn]"
    [record] = wait_for_records(hostile, 1, user=who.sub)
    assert (record["result"], record["contentScan"]["outputScanned"]) == ("success", True)
    assert record["contentScan"]["findings"] == [
        {"type": "ssn", "location": "output", "path": "$.result.content[0].text", "action": "redact"}]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_answer_ended_by_trailers_is_scanned_whole(hostile: Stack, transport: str) -> None:
    """The upstream ends its answer with a trailer instead of the last chunk: the filter holds
    the answer to its trailers as to its end, so it is scanned, never passed on unscanned."""
    who = caller(hostile)
    call = json.dumps(tool_call("salesforce.query", {"query": "SELECT 1"}, id=8)).encode()

    reply = TRANSPORTS[transport](hostile, who.token, call, path="/mcp/trailers")

    assert reply.status == 200, reply.text
    assert SSN not in reply.text
    assert reply.body["result"]["content"][0]["text"] == "customer record, ssn [REDACTED:ssn]", reply.text
    [record] = wait_for_records(hostile, 1, user=who.sub)
    assert (record["result"], record["contentScan"]["outputScanned"]) == ("success", True)
    assert record["contentScan"]["findings"] == [
        {"type": "ssn", "location": "output", "path": "$.result.content[0].text", "action": "redact"}]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sse_events_with_crlf_line_ends_are_each_scanned(hostile: Stack, transport: str) -> None:
    who = caller(hostile)
    call = json.dumps(tool_call("salesforce.query", {"query": "SELECT 1"}, id=6)).encode()

    reply = TRANSPORTS[transport](hostile, who.token, call, path="/mcp/sse-crlf")

    assert reply.status == 200, reply.text
    assert SSN not in reply.text
    assert "[REDACTED:ssn]" in reply.text and "notifications/progress" in reply.text, reply.text
    [record] = wait_for_records(hostile, 1, user=who.sub)
    assert (record["result"], record["contentScan"]["outputScanned"]) == ("success", True)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_notification_in_the_answer_is_scanned_too(hostile: Stack, transport: str) -> None:
    who = caller(hostile)
    call = json.dumps(tool_call("salesforce.query", {"query": "SELECT 1"}, id=7)).encode()

    reply = TRANSPORTS[transport](hostile, who.token, call, path="/mcp/sse-side")

    assert reply.status == 200, reply.text
    assert SSN not in reply.text
    assert reply.text.count("[REDACTED:ssn]") == 2 and "notifications/message" in reply.text, reply.text
    [record] = wait_for_records(hostile, 1, user=who.sub)
    assert record["result"] == "success"
    assert sorted(f["path"] for f in record["contentScan"]["findings"]) == ["$.params.data", "$.result.content[0].text"]
