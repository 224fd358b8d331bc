"""The official MCP Python SDK (PyPI `mcp`) as the client through the real Envoy with the ACP
filter, in both protocol eras:

- 2026-07-28, the per-request envelope (`mode="auto"`: `server/discover`, `params._meta`,
  `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`), against the demo MCP server
  (built on the same SDK, which serves both eras);
- the handshake era (`mode="legacy"`: `initialize`, 2025-11-25) against the same server, and
  `mode="auto"` against server-everything (npm, handshake era only), where the SDK's
  `server/discover` probe passes through ACP and fails upstream, and the SDK falls back to
  `initialize` with an `Mcp-Session-Id` and SSE answers;
- the older revisions 2024-11-05, 2025-03-26 (with a JSON-RPC batch) and 2025-06-18 as raw
  requests against server-everything, which still speaks them;
- the SDK's OAuth client following ACP's 401 to the authorization server.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from interop import Wire, everything_stack, protected_resource, python_client
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.auth.utils import (build_oauth_authorization_server_metadata_discovery_urls,
                                   extract_resource_metadata_from_www_auth)
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthMetadata, OAuthToken
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from stack import Stack
from support import (assert_jsonrpc_error, assert_record, caller, clean_scan, correlation, expected_record,
                     http_request, post_mcp, sse_data, tool_call, wait_for_records)

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
README = "# Acme shared drive\nQuarterly plans live in plans/.\n"
SDK_USER_AGENT = f"python-httpx2/{httpx2.__version__}"  # the SDK's HTTP client, unchanged by the SDK


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo stack, serving the protected resource metadata."""
    stack = Stack(tmp_path_factory.mktemp("demo-py"),
                  filter_config=lambda cfg: {**cfg, "protectedResource": protected_resource(stack)})
    with stack:
        yield stack


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with everything_stack(tmp_path_factory.mktemp("everything-py")) as s:
        yield s


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("path", ["/mcp", "/mcp/sse"])
def test_python_sdk_in_both_eras(demo: Stack, mode: str, path: str) -> None:
    alice = caller(demo, ["files:read", "salesforce:read"])
    wire = Wire()

    async def session() -> tuple[str, list[str], str, MCPError]:
        async with python_client(demo.envoy_url + path, alice.token, mode, wire) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("files.read", {"path": "README.md"})
            with pytest.raises(MCPError) as denied:
                await client.call_tool("github.create_issue", {"repo": "acme/x", "title": "t", "body": "b"})
            return client.protocol_version, tools, result.content[0].text, denied.value

    version, tools, text, denied = asyncio.run(session())
    assert sorted(tools) == ["files.read", "salesforce.query"], "tools/list filtered by the token's scopes"
    assert text == README
    assert denied.error.code == -32003 and denied.error.data == {"reason": "insufficient_scope"}
    assert "github:write" in denied.error.message

    methods = wire.methods()
    if mode == "auto":
        assert version == MODERN
        assert methods == ["server/discover", "tools/list", "tools/call", "tools/call"]
        _, headers, body = wire.requests[2]
        assert headers == {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "files.read",
                           "mcp-param-path": "README.md"}
        assert body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
    else:
        assert version == "2025-11-25"
        assert methods[:2] == ["initialize", "notifications/initialized"]
        assert all(h.get("mcp-protocol-version") == version for _, h, _ in wire.requests[1:])
        if path == "/mcp/sse":
            assert wire.responses[2][1].startswith("text/event-stream"), wire.responses
    assert [status for status, _, _ in wire.responses][-1] == 403
    # What the SDK sends for the records' correlation fields: its revision, its user agent, and
    # no session (2026-07-28 is stateless; the demo server, stateless, issues none either).
    assert [sid for _, _, sid in wire.responses] == [None] * len(wire.responses)
    for tool in ("files.read", "github.create_issue"):
        assert wire.sent_with(tool) == correlation(protocolVersion=version, userAgent=SDK_USER_AGENT)

    records = {r["tool"]: r for r in wait_for_records(demo, 2, user=alice.sub)}
    assert len(records) == 2
    assert_record(records["files.read"], expected_record(
        event="tool.call", result="success", reason=None, tool="files.read", input={"path": "README.md"},
        scope_required=["files:read"], scope_result="pass", identity=alice.identity(),
        content_scan=clean_scan(), sent=wire.sent_with("files.read")), forwarded=True)
    assert_record(records["github.create_issue"], expected_record(
        event="tool.denied", result="denied", reason="insufficient_scope", tool="github.create_issue",
        input={"repo": "acme/x", "title": "t", "body": "b"}, scope_required=["github:write"], scope_result="fail",
        identity=alice.identity(), sent=wire.sent_with("github.create_issue")))


def modern_call(path: str) -> dict[str, Any]:
    call = tool_call("files.read", {"path": path}, id=7)
    call["params"]["_meta"] = META
    return call


@pytest.mark.parametrize(("headers", "why"), [
    ({"Mcp-Param-Path": "customers.csv"}, "mcp-param-path"),
    ({"Mcp-Param-Path": "README.md", "MCP-Protocol-Version": "2025-11-25"}, "MCP-Protocol-Version"),
    ({"Mcp-Param-Path": "README.md", "Mcp-Name": "hr.employee_lookup"}, "Mcp-Name"),
])
def test_modern_headers_that_disagree_with_the_body_are_refused(demo: Stack, headers: dict[str, str],
                                                                 why: str) -> None:
    alice = caller(demo, ["files:read"])
    sent = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "files.read", **headers}
    reply = post_mcp(demo, alice.token, modern_call("README.md"), headers=sent)
    assert reply.status == 400
    error = assert_jsonrpc_error(reply.body, code=-32020, id=7, reason="header_mismatch")
    assert why in error["message"]
    [record] = wait_for_records(demo, 1, user=alice.sub)
    # The record keeps the revision header as sent, even one that disagrees with the body.
    assert_record(record, expected_record(
        event="tool.denied", result="denied", reason="header_mismatch", tool="files.read",
        input={"path": "README.md"}, scope_required=None, scope_result=None, identity=alice.identity(),
        sent=correlation(protocolVersion=sent["MCP-Protocol-Version"])), reply)


def test_matching_modern_headers_pass(demo: Stack) -> None:
    alice = caller(demo, ["files:read"])
    sent = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "files.read",
            "Mcp-Param-Path": "README.md"}
    reply = post_mcp(demo, alice.token, modern_call("README.md"), headers=sent)
    assert reply.status == 200, reply.text
    assert reply.body["result"]["content"][0]["text"] == README


def test_protected_resource_metadata_leads_to_the_authorization_server(demo: Stack) -> None:
    """A plain HTTP client, with the SDK's own parsing: 401 -> resource_metadata -> document ->
    authorization server metadata."""
    unauthenticated = httpx2.post(demo.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                  headers={"Accept": "application/json, text/event-stream"})
    assert unauthenticated.status_code == 401
    metadata_url = extract_resource_metadata_from_www_auth(unauthenticated)
    assert metadata_url == f"{demo.envoy_url}/.well-known/oauth-protected-resource/mcp"
    document = httpx2.get(metadata_url)
    assert document.status_code == 200 and document.headers["content-type"] == "application/json"
    assert document.json() == {
        "resource": demo.mcp_url, "authorization_servers": [demo.issuer], "resource_name": "ACP interop",
        "scopes_supported": sorted({s for scopes in demo.filter_config()["tools"].values() for s in scopes}),
        "bearer_methods_supported": ["header"]}
    assert httpx2.get(f"{demo.envoy_url}/.well-known/oauth-protected-resource").json() == document.json()
    [authorization_server] = document.json()["authorization_servers"]
    for url in build_oauth_authorization_server_metadata_discovery_urls(authorization_server, demo.mcp_url):
        answer = httpx2.get(url)
        if answer.status_code == 200:
            break
    metadata = OAuthMetadata.model_validate(answer.json())
    assert str(metadata.issuer).rstrip("/") == demo.issuer
    assert str(metadata.authorization_endpoint) == f"{demo.issuer}/authorize"
    # A POST to the document's path is an MCP request like any other: authenticated.
    assert httpx2.post(metadata_url, json={}).status_code == 401


class _Stop(Exception):
    """Ends the OAuth flow once the SDK has chosen where to send the user."""


class _Storage:
    """A pre-registered client and no tokens yet."""

    async def get_tokens(self) -> OAuthToken | None:
        return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        pass

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return OAuthClientInformationFull(client_id="acp-interop-py", redirect_uris=["http://127.0.0.1/callback"])

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        pass


def test_401_starts_the_python_sdk_oauth_flow(demo: Stack) -> None:
    redirects: list[str] = []

    async def redirect(url: str) -> None:
        redirects.append(url)

    async def callback() -> Any:
        raise _Stop

    async def connect() -> None:
        metadata = OAuthClientMetadata(redirect_uris=["http://127.0.0.1/callback"], client_name="acp-interop-py")
        auth = OAuthClientProvider(demo.mcp_url, metadata, _Storage(), redirect, callback)
        async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
            async with Client(streamable_http_client(demo.mcp_url, http_client=http), mode="legacy"):
                pass

    with pytest.raises(BaseException) as stopped:
        asyncio.run(connect())
    # The SDK's task groups may wrap the callback's exception.
    assert stopped.type is _Stop or stopped.group_contains(_Stop), stopped.value
    [url] = redirects
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{demo.issuer}/authorize"
    assert query["client_id"] == ["acp-interop-py"] and query["resource"] == [demo.mcp_url]


def test_python_sdk_auto_mode_falls_back_to_the_handshake_with_a_session(everything: Stack) -> None:
    alice = caller(everything, ["everything:read"])
    wire = Wire()

    async def session() -> tuple[str, list[str], str, MCPError, list[float]]:
        progress: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(done)

        async with python_client(everything.mcp_url, alice.token, "auto", wire) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("get-sum", {"a": 2, "b": 3})
            await client.call_tool("trigger-long-running-operation", {"duration": 0.3, "steps": 3},
                                   progress_callback=on_progress)
            with pytest.raises(MCPError) as denied:
                await client.call_tool("get-env", {})
            return client.protocol_version, tools, result.content[0].text, denied.value, progress

    version, tools, text, denied, progress = asyncio.run(session())
    assert version == "2025-11-25"
    assert sorted(tools) == ["echo", "get-sum", "trigger-long-running-operation"]
    assert text == "The sum of 2 and 3 is 5."
    assert progress == [1, 2, 3]
    assert denied.error.code == -32003 and denied.error.data == {"reason": "insufficient_scope"}
    methods = [m for m in wire.methods() if m]  # without the bodiless GET of the server stream
    assert methods[:3] == ["server/discover", "initialize", "notifications/initialized"], methods
    assert wire.responses[0][0] == 400, "server-everything refuses the probe; ACP passed it through"
    session_ids = {sid for _, _, sid in wire.responses[1:] if sid}
    assert len(session_ids) == 1, wire.responses
    [session_id] = session_ids
    assert any(ct.startswith("text/event-stream") for _, ct, _ in wire.responses)

    records = wait_for_records(everything, 3, user=alice.sub)
    assert sorted((r["tool"], r["result"]) for r in records) == [
        ("get-env", "denied"), ("get-sum", "success"), ("trigger-long-running-operation", "success")]
    [added] = [r for r in records if r["tool"] == "get-sum"]
    # The session the server issued at `initialize`, the negotiated revision, the SDK's agent.
    sent = correlation(sessionId=session_id, protocolVersion="2025-11-25", userAgent=SDK_USER_AGENT)
    assert wire.sent_with("get-sum") == sent
    assert_record(added, expected_record(
        event="tool.call", result="success", reason=None, tool="get-sum", input={"a": 2, "b": 3},
        scope_required=["everything:read"], scope_result="pass", identity=alice.identity(),
        content_scan=clean_scan(), sent=sent), forwarded=True)


def _post(stack: Stack, token: str, payload: Any, version: str | None, session: str | None) -> Any:
    """A raw POST with these headers; None leaves the header out (`post_mcp` would send its own
    `MCP-Protocol-Version`)."""
    return post_mcp(stack, token, payload, headers={"MCP-Protocol-Version": version, "Mcp-Session-Id": session})


def _messages(reply: Any) -> list[Any]:
    """The JSON-RPC messages of an SSE or JSON answer (a batch answer flattened)."""
    if reply.content_type.startswith("text/event-stream"):
        messages = [json.loads(data) for data in sse_data(reply.text) if data]  # skips priming events
    else:
        messages = [reply.body]
    return [m for item in messages for m in (item if isinstance(item, list) else [item])]


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-06-18"])
def test_older_handshake_revisions_as_raw_requests(everything: Stack, version: str) -> None:
    alice = caller(everything, ["everything:read"])
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    reply = _post(everything, alice.token, init, None, None)
    assert reply.status == 200, reply.text
    assert _messages(reply)[0]["result"]["protocolVersion"] == version
    session = reply.headers["mcp-session-id"]
    header_version = None if version == "2024-11-05" else version  # the header came with 2025-03-26
    notified = _post(everything, alice.token, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                     header_version, session)
    assert notified.status == 202
    allowed = _post(everything, alice.token, tool_call("echo", {"message": version}, id=1), header_version, session)
    assert _messages(allowed)[0]["result"]["content"][0]["text"] == f"Echo: {version}"
    denied = _post(everything, alice.token, tool_call("get-env", {}, id=2), header_version, session)
    assert denied.status == 403
    assert_jsonrpc_error(denied.body, code=-32003, id=2, reason="insufficient_scope")
    expected = 2
    if version == "2025-03-26":  # the one revision with JSON-RPC batches
        batch = [tool_call("echo", {"message": "one"}, id=3), tool_call("get-sum", {"a": 1, "b": 2}, id=4)]
        answered = _post(everything, alice.token, batch, header_version, session)
        assert answered.status == 200, answered.text
        results = {m["id"]: m["result"]["content"][0]["text"] for m in _messages(answered)}
        assert results == {3: "Echo: one", 4: "The sum of 1 and 2 is 3."}
        expected += 2
    records = wait_for_records(everything, expected, user=alice.sub)
    assert len(records) == expected
    # Every record carries the session and the revision header as sent: none for 2024-11-05.
    assert {(r["sessionId"], r["protocolVersion"]) for r in records} == {(session, header_version)}
    assert sorted((r["tool"], r["result"]) for r in records) == sorted(
        [("echo", "success"), ("get-env", "denied")] + [("echo", "success"), ("get-sum", "success")] * (expected > 2))
