"""Failed authentication: every bad or missing token gets 401 with the right `WWW-Authenticate`,
a JSON-RPC -32001 error carrying the request's id, never reaches the MCP server, and leaves
exactly one `auth.failed` record with the reason (and no identity).

Auth-failed records carry no `sub`, so each test's call carries a unique argument value and
finds its record by `input`; a bodiless request's record is found by its time window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from idp import demo_idp
from stack import Stack
from support import (
    NO_IDENTITY, RECORD_FIELDS, UNAUTHORIZED, Reply, assert_jsonrpc_error, assert_record, assert_unique_ids,
    call_tool, caller, correlation, envoy,
    expected_record, http_request, post_mcp, records_of_reply, token, tool_call, unique, upstream_requests,
    wait_for_records,
)

TokenFactory = Callable[[Stack], str | None]


def _now() -> int:
    return int(time.time())


# (reason recorded, token for the stack). None: no Authorization header at all.
AUTH_FAILURES: dict[str, tuple[str, TokenFactory]] = {
    "no_token": ("missing_token", lambda s: None),
    "bad_signature": ("bad_signature", lambda s: demo_idp.bad_signature_token(token(s))),
    "signed_by_another_key_with_the_demo_kid": (
        "bad_signature", lambda s: token(s, key=demo_idp.generate_key())),
    "expired": ("expired", lambda s: token(s, iat=_now() - 7200, nbf=_now() - 7200, exp=_now() - 3600)),
    "not_yet_valid": ("not_yet_valid", lambda s: token(s, nbf=_now() + 600)),
    "wrong_issuer": ("wrong_issuer", lambda s: token(s, iss="https://evil.example")),
    "wrong_audience": ("wrong_audience", lambda s: token(s, aud="some-other-api")),
    "no_audience": ("wrong_audience", lambda s: token(s, aud=None)),
    "alg_none": ("unsupported_alg", lambda s: demo_idp.alg_none_token(iss=s.issuer)),
    "hs256_signed_with_the_public_key": ("unsupported_alg", lambda s: demo_idp.hmac_confusion_token(iss=s.issuer)),
    "tenant_mismatch": ("tenant_mismatch", lambda s: token(s, org_id="org_other")),
    "no_tenant_claim": ("tenant_mismatch", lambda s: token(s, org_id=None)),
    "unknown_kid_from_another_key": (
        "unknown_kid", lambda s: token(s, key=demo_idp.generate_key(), header_overrides={"kid": "rogue-key-1"})),
    "no_kid": ("unknown_kid", lambda s: token(s, header_overrides={"kid": None})),
    "no_exp": ("missing_exp", lambda s: token(s, exp=None)),
    "no_sub": ("missing_sub", lambda s: token(s, sub=None)),
    **{f"malformed_{name}": ("malformed", lambda s, t=t: t) for name, t in demo_idp.malformed_tokens().items()},
}


def expected_challenge(reason: str) -> str:
    if reason == "missing_token":
        return "Bearer"
    return f'Bearer error="invalid_token", error_description="{reason}"'


def assert_unauthorized(reply: Reply, reason: str, rpc_id: Any) -> None:
    assert reply.status == 401, reply.text
    assert reply.headers.get("WWW-Authenticate") == expected_challenge(reason)
    assert reply.content_type.startswith("application/json")
    error = assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id=rpc_id, reason=reason)
    assert error["message"] == f"Unauthorized: {reason}"


def auth_failed_record(reason: str, *, tool: str | None, input: Any,
                       sent: dict[str, Any] | None = None) -> dict[str, Any]:
    return expected_record(event="auth.failed", result="auth_failed", reason=reason, tool=tool, input=input,
                           scope_required=None, scope_result=None, identity=NO_IDENTITY, sent=sent)


@pytest.mark.parametrize("case", list(AUTH_FAILURES))
def test_bad_or_missing_token_is_401_with_one_auth_failed_record_naming_the_tool(stack: Stack, case: str) -> None:
    reason, make_token = AUTH_FAILURES[case]
    marker = unique(f"auth-{case}")
    args = {"query": f"SELECT Name FROM Opportunity -- {marker}"}
    rpc_id = f"req-{marker}"
    upstream_before = upstream_requests(stack)

    reply = call_tool(stack, make_token(stack), "salesforce.query", args, id=rpc_id)

    assert_unauthorized(reply, reason, rpc_id)
    records = wait_for_records(stack, 1, where=lambda r: r["input"] == args, since=reply.started,
                               result="auth_failed", tool="salesforce.query")
    assert len(records) == 1, records
    assert_record(records[0], auth_failed_record(reason, tool="salesforce.query", input=args), reply)
    assert upstream_requests(stack) == upstream_before, "a refused request reached the MCP server"


def test_basic_credentials_count_as_a_missing_bearer_token(stack: Stack) -> None:
    args = {"query": unique("basic")}
    reply = call_tool(stack, None, "salesforce.query", args, id=7,
                      headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert_unauthorized(reply, "missing_token", 7)
    records = wait_for_records(stack, 1, where=lambda r: r["input"] == args, since=reply.started, result="auth_failed")
    assert len(records) == 1, records
    assert_record(records[0], auth_failed_record("missing_token", tool="salesforce.query", input=args), reply)


def test_numeric_request_id_is_echoed_in_the_401(stack: Stack) -> None:
    args = {"query": unique("numeric-id")}
    reply = call_tool(stack, token(stack, exp=_now() - 3600, iat=_now() - 7200, nbf=_now() - 7200),
                      "salesforce.query", args, id=424242)
    assert_unauthorized(reply, "expired", 424242)
    records = wait_for_records(stack, 1, where=lambda r: r["input"] == args, since=reply.started, result="auth_failed")
    assert len(records) == 1, records


def test_batch_without_token_is_one_auth_failed_record_naming_no_tool(stack: Stack) -> None:
    batch = [tool_call("salesforce.query", {"query": "a"}, 1), tool_call("files.read", {"path": "README.md"}, 2)]
    reply = post_mcp(stack, None, batch)
    assert_unauthorized(reply, "missing_token", None)
    records = records_of_reply(stack, reply, result="auth_failed")
    assert len(records) == 1, records
    assert_record(records[0], auth_failed_record("missing_token", tool=None, input=None), reply)


def test_bodiless_get_without_token_is_401_with_one_record_naming_no_tool(stack: Stack) -> None:
    upstream_before = upstream_requests(stack)
    reply = http_request(envoy(stack), "GET", "/mcp", headers={"Accept": "text/event-stream"})

    assert_unauthorized(reply, "missing_token", None)
    records = records_of_reply(stack, reply, result="auth_failed")
    assert len(records) == 1, records
    # A bare GET sends no MCP-Protocol-Version.
    assert_record(records[0], auth_failed_record("missing_token", tool=None, input=None,
                                                 sent=correlation(protocolVersion=None)), reply)
    assert upstream_requests(stack) == upstream_before


def test_bodiless_get_with_valid_token_passes_authentication_without_a_record(stack: Stack) -> None:
    alice = caller(stack)
    upstream_before = upstream_requests(stack)
    # The stateless demo server answers the GET with an SSE stream that stays open: read the
    # status and headers only.
    reply = http_request(envoy(stack), "GET", "/mcp", read_body=False,
                         headers={"Accept": "text/event-stream", "Authorization": f"Bearer {alice.token}"})
    assert reply.status != 401, reply.headers
    assert reply.headers.get("WWW-Authenticate") is None
    assert upstream_requests(stack) == upstream_before + 1, "the GET was not forwarded"

    # No record for a request that is not a tool call: a later call by the same user is the
    # only record of that user.
    barrier = call_tool(stack, alice.token, "salesforce.query", {"query": "barrier"})
    assert barrier.status == 200, barrier.text
    records = wait_for_records(stack, 1, user=alice.sub)
    assert [r["input"] for r in records] == [{"query": "barrier"}]


def test_every_record_of_this_module_has_the_schema_fields_and_a_unique_id(stack: Stack) -> None:
    records = wait_for_records(stack, 1)
    assert_unique_ids(records)
    for record in records:
        assert set(record) == RECORD_FIELDS, record
        # Only forwarded calls were scanned; authentication failures never reach scanning.
        assert record["tenantId"] == stack.tenant, record
        assert (record["contentScan"] is None) == (record["event"] != "tool.call"), record
