"""The official MCP TypeScript SDK (npm `@modelcontextprotocol/sdk`) as the client and the
reference server `server-everything` (npm, Streamable HTTP, stateful sessions, SSE answers) as
the upstream, both unmodified, through the real Envoy with the ACP filter.

Covered: initialize with a session id, tools/list filtered by permission, an allowed and a
denied tools/call, progress notifications on an SSE answer, session termination, and the SDK's
OAuth handling of a 401 (no token) and of a 403 insufficient_scope (step-up): both lead it
through the protected resource metadata to the authorization server."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest
from interop import everything_stack, package_version, ts_client
from stack import Stack
from support import acp_counters, assert_record, caller, clean_scan, correlation, expected_record, wait_for_records

ECHO = ["echo", {"message": "hello from the TypeScript SDK"}]
GET_ENV = ["get-env", {}]
PROGRESS = ["trigger-long-running-operation", {"duration": 0.3, "steps": 3}]
NODE_FETCH_USER_AGENT = "node"  # what Node's fetch (undici) sends when the caller sets no User-Agent


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with everything_stack(tmp_path_factory.mktemp("everything-ts")) as s:
        yield s


def test_session_tools_calls_and_notifications_through_acp(everything: Stack) -> None:
    alice = caller(everything, ["everything:read"])
    before = acp_counters(everything)
    out = ts_client("session", everything.mcp_url, alice.token,
                    {"allowed": ECHO, "denied": GET_ENV, "progress": PROGRESS})

    assert out["sessionId"] and out["sameSession"] and out["terminated"], out
    assert out["protocolVersion"] == "2025-11-25"
    assert out["serverInfo"]["name"] == "mcp-servers/everything"
    # Only the tools the token may call; get-env (everything:admin) and unmapped tools are hidden.
    assert sorted(out["tools"]) == ["echo", "get-sum", "trigger-long-running-operation"]
    assert out["allowed"]["result"]["content"] == [{"type": "text", "text": "Echo: hello from the TypeScript SDK"}]
    # The SDK surfaces ACP's 403 as an HTTP error carrying the JSON-RPC error of the body.
    denied = out["denied"]["error"]
    assert denied["code"] == 403, denied
    assert '"code":-32003' in denied["message"] and "insufficient_scope" in denied["message"], denied
    # Progress notifications streamed on the SSE answer reach the SDK, then the result.
    assert out["progress"]["notifications"] == [1, 2, 3], out["progress"]
    assert "completed" in out["progress"]["result"]["content"][0]["text"]

    # Every call of the session carries the session id the server issued, the negotiated
    # revision and the user agent of Node's fetch (the SDK sets none).
    sent = correlation(sessionId=out["sessionId"], protocolVersion="2025-11-25", userAgent=NODE_FETCH_USER_AGENT)
    records = {r["tool"]: r for r in wait_for_records(everything, 3, user=alice.sub)}
    assert len(records) == 3
    assert_record(records["echo"], expected_record(
        event="tool.call", result="success", reason=None, tool="echo", input=ECHO[1],
        scope_required=["everything:read"], scope_result="pass", identity=alice.identity(),
        content_scan=clean_scan(), sent=sent), forwarded=True)
    assert_record(records["get-env"], expected_record(
        event="tool.denied", result="denied", reason="insufficient_scope", tool="get-env", input={},
        scope_required=["everything:admin"], scope_result="fail", identity=alice.identity(), sent=sent))
    assert_record(records["trigger-long-running-operation"], expected_record(
        event="tool.call", result="success", reason=None, tool="trigger-long-running-operation",
        input=PROGRESS[1], scope_required=["everything:read"], scope_result="pass", identity=alice.identity(),
        content_scan=clean_scan(), sent=sent), forwarded=True)
    after = acp_counters(everything)
    assert after["tools_hidden"] - before.get("tools_hidden", 0) >= 1


def test_401_leads_the_sdk_to_the_authorization_server(everything: Stack) -> None:
    out = ts_client("oauth", everything.mcp_url, None)
    assert out["error"]["name"] == "UnauthorizedError", out
    [redirect] = out["redirects"]
    url = urllib.parse.urlsplit(redirect)
    query = urllib.parse.parse_qs(url.query)
    # Found through ACP's 401 -> resource_metadata -> authorization_servers -> discovery.
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{everything.issuer}/authorize"
    assert query["client_id"] == ["acp-interop-ts"]
    assert query["resource"] == [everything.mcp_url]
    assert query["code_challenge_method"] == ["S256"]


def test_403_insufficient_scope_makes_the_sdk_ask_for_the_missing_scope(everything: Stack) -> None:
    bob = caller(everything, ["everything:read"])
    out = ts_client("oauth", everything.mcp_url, bob.token, {"denied": GET_ENV})
    assert out["connected"], out
    assert out["denied"]["error"]["name"] == "UnauthorizedError", out
    [redirect] = out["redirects"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect).query)
    assert query["scope"] == ["everything:admin"], redirect
    [record] = wait_for_records(everything, 1, user=bob.sub, tool="get-env")
    assert (record["result"], record["reason"]) == ("denied", "insufficient_scope")


def test_versions_tested() -> None:
    """The versions the interop table of docs/filter.md ("Tested with") names."""
    assert package_version("@modelcontextprotocol/sdk") == "1.32.2"
    assert package_version("@modelcontextprotocol/server-everything") == "2026.8.31"
