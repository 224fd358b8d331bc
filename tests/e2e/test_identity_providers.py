"""A real OpenID provider (npm `oidc-provider`) in front of the filter: the filter is configured
with the issuer alone and finds the keys through OpenID discovery; the provider's access tokens
are accepted through real Envoy with the identity the Keycloak claim layout describes; key
rotations are followed without restarting Envoy (a key published ahead through the periodic
refresh, an unannounced one through the unknown-`kid` refetch) and the retired key stops
working; a failed refetch keeps the last good keys; with the provider down at startup, or a
document naming another issuer, requests get 503 `keys_unavailable` until good keys arrive.

The provider adds Keycloak-shaped role claims (`realm_access`, `resource_access`) to its tokens
(`extraTokenClaims`), so the `keycloak` preset is exercised on tokens a real provider signed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from idp import demo_idp
from oidc_provider import AUDIENCE, OidcProvider, jwt_part
from stack import Stack
from support import (
    FORBIDDEN, UNAUTHORIZED, Reply, acp_counters, assert_jsonrpc_error, assert_record, call_tool, clean_scan,
    expected_record, mcp_headers, request_on, tool_call, unique, wait_for_counter_deltas, wait_for_records,
    worker_connections,
)

CLIENT = "ci-agent"
CLAIMS = {
    "org_id": "org_acme_corp",
    "email": "ci-agent@acme.com",
    "realm_access": {"roles": ["sales-reader", "offline_access"]},
    "resource_access": {AUDIENCE: {"roles": ["files-reader"]}, "account": {"roles": ["manage-account"]}},
}
# The token's `scope`, then the scopes of its realm and client roles.
SCOPES = ["github:write", "salesforce:read", "files:read"]
IDENTITY = {"sub": CLIENT, "email": "ci-agent@acme.com", "scopes": SCOPES, "clientId": CLIENT,
            "clientType": None, "delegationChain": None}


def discovery_config(refresh_seconds: int = 3600):
    """The demo configuration with keys found through the issuer, and the Keycloak layout."""
    def configure(cfg: dict[str, Any]) -> dict[str, Any]:
        identity = cfg["identity"]
        identity["audiences"] = [AUDIENCE]
        identity["jwks"] = {"discovery": {"cluster": "acp_idp", "allowHttpLoopback": True,
                                          "refreshSeconds": refresh_seconds, "minRefetchSeconds": 0}}
        identity["preset"] = "keycloak"
        identity["roleScopes"] = {"sales-reader": ["salesforce:read"], "files-reader": ["files:read"],
                                  "manage-account": ["hr:read"]}
        return cfg
    return configure


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> OidcProvider:
    return OidcProvider(tmp_path_factory.mktemp("oidc-provider"), {CLIENT: "github:write salesforce:write"}, CLAIMS)


@pytest.fixture(scope="module")
def idp_stack(make_module_stack: Any, provider: OidcProvider) -> Iterator[Stack]:
    yield make_module_stack(idp_command=provider.command("k1"), filter_config=discovery_config())


def issue(stack: Stack, scope: str = "github:write") -> str:
    return OidcProvider.token(stack.issuer, CLIENT, scope)


def allowed(input: Any) -> dict[str, Any]:
    return expected_record(event="tool.call", result="success", reason=None, tool="salesforce.query", input=input,
                           scope_required=["salesforce:read"], scope_result="pass", identity=IDENTITY,
                           content_scan=clean_scan())


def call_on(conn: Any, token: str, args: Any) -> Reply:
    return request_on(conn, "POST", "/mcp", body=json.dumps(tool_call("salesforce.query", args)).encode(),
                      headers=mcp_headers(token))


def test_discovered_keys_verify_the_providers_tokens_and_the_keycloak_layout_gives_the_identity(
        idp_stack: Stack) -> None:
    counters = acp_counters(idp_stack)
    assert counters["discovery_fetched"] == idp_stack.concurrency + 1, "one discovery per Wasm VM"
    assert counters["jwks_fetched"] == idp_stack.concurrency + 1
    assert counters.get("discovery_failed", 0) == counters.get("jwks_fetch_failed", 0) == 0
    token = issue(idp_stack)
    assert jwt_part(token, 0)["kid"] == "k1" and jwt_part(token, 0)["typ"] == "at+jwt"

    args = {"query": unique("oidc")}
    reply = call_tool(idp_stack, token, "salesforce.query", args)
    assert reply.status == 200, reply.text
    assert "error" not in reply.body, reply.body
    records = wait_for_records(idp_stack, 1, where=lambda r: r["input"] == args, since=reply.started)
    assert len(records) == 1, records
    assert_record(records[0], allowed(args), reply, forwarded=True)


def test_a_scope_neither_the_token_nor_its_roles_grant_is_denied(idp_stack: Stack) -> None:
    args = {"key": unique("k")}
    reply = call_tool(idp_stack, issue(idp_stack), "salesforce.update", args, id=5)
    assert reply.status == 403, reply.text
    assert_jsonrpc_error(reply.body, code=FORBIDDEN, id=5, reason="insufficient_scope")
    records = wait_for_records(idp_stack, 1, where=lambda r: r["input"] == args, since=reply.started)
    assert_record(records[0], expected_record(
        event="tool.denied", result="denied", reason="insufficient_scope", tool="salesforce.update", input=args,
        scope_required=["salesforce:write"], scope_result="fail", identity=IDENTITY), reply)


def test_key_rotation_is_followed_without_restarting_envoy_and_the_retired_key_stops_working(
        idp_stack: Stack, provider: OidcProvider) -> None:
    envoy_pid = idp_stack.pid("envoy")
    old = issue(idp_stack)
    conns = [c for per_worker in worker_connections(idp_stack, 1) for c in per_worker]
    try:
        for conn in conns:
            assert call_on(conn, old, {"query": unique("before")}).status == 200

        # Rotation: the provider signs with k2 and still publishes k1.
        idp_stack.stop_idp()
        idp_stack.start_idp(provider.command("k2", "k1"))
        new = issue(idp_stack)
        assert jwt_part(new, 0)["kid"] == "k2"
        for conn in conns:  # every worker: its first k2 token makes it fetch the keys again
            first = call_on(conn, new, {"query": unique("rotated")})
            assert first.status == 401, first.text
            assert_jsonrpc_error(first.body, code=UNAUTHORIZED, id=1, reason="unknown_kid")
            assert until_accepted(conn, new).status == 200
            assert call_on(conn, old, {"query": unique("old-still-published")}).status == 200

        # k1 retired: the provider publishes k2 and k3 and signs with k3. The first k3 token
        # makes each worker fetch the keys, and k1 is gone with the old set.
        idp_stack.stop_idp()
        idp_stack.start_idp(provider.command("k3", "k2"))
        newest = issue(idp_stack)
        for conn in conns:
            assert until_accepted(conn, newest).status == 200
            assert call_on(conn, new, {"query": unique("k2")}).status == 200
            args = {"query": unique("retired")}
            refused = call_on(conn, old, args)
            assert refused.status == 401, refused.text
            assert_jsonrpc_error(refused.body, code=UNAUTHORIZED, id=1, reason="unknown_kid")
            records = wait_for_records(idp_stack, 1, where=lambda r: r["input"] == args, since=refused.started)
            assert [(r["event"], r["reason"], r["sub"]) for r in records] == [("auth.failed", "unknown_kid", None)]
    finally:
        for conn in conns:
            conn.close()
    assert idp_stack.pid("envoy") == envoy_pid and idp_stack.failed() is None, "Envoy was not restarted"
    args = {"query": unique("after-rotation")}
    reply = call_tool(idp_stack, newest, "salesforce.query", args)
    records = wait_for_records(idp_stack, 1, where=lambda r: r["input"] == args, since=reply.started)
    assert_record(records[0], allowed(args), reply, forwarded=True)


def until_accepted(conn: Any, token: str, attempts: int = 50) -> Reply:
    """Calls until the worker behind `conn` accepts `token`: a new `kid` is refused with
    `unknown_kid` until the refetch it triggered has completed (a tick and a round trip)."""
    for _ in range(attempts):
        reply = call_on(conn, token, {"query": unique("until")})
        if reply.status != 401:
            return reply
        assert reply.body["error"]["data"]["reason"] == "unknown_kid", reply.body
        time.sleep(0.1)
    return reply


def test_a_key_published_before_use_is_fetched_by_the_periodic_refresh(
        make_stack: Any, provider: OidcProvider) -> None:
    """The usual rotation: the IdP publishes the next key before signing with it, and the
    periodic refresh (here every second) has it before the first token signed with it arrives."""
    stack = make_stack(idp_command=provider.command("k1"), filter_config=discovery_config(refresh_seconds=1)).start()
    stack.stop_idp()
    stack.start_idp(provider.command("k1", "k4"))
    before = acp_counters(stack)["jwks_fetched"]
    # Each VM refreshes every second: after three refreshes' worth, every VM has refreshed.
    stack.wait_for_stat("wasmcustom.acp.jwks_fetched", before + 3 * (stack.concurrency + 1))
    stack.stop_idp()
    stack.start_idp(provider.command("k4", "k1"))
    token = issue(stack)
    assert jwt_part(token, 0)["kid"] == "k4"
    conns = [c for per_worker in worker_connections(stack, 1) for c in per_worker]
    try:
        for conn in conns:
            reply = call_on(conn, token, {"query": unique("pre-published")})
            assert reply.status == 200, reply.text
    finally:
        for conn in conns:
            conn.close()


def test_a_failed_refetch_keeps_the_last_good_keys(idp_stack: Stack, provider: OidcProvider) -> None:
    fresh = issue(idp_stack)  # signed by the current key, not verified (cached) yet
    idp_stack.stop_idp()
    try:
        before = acp_counters(idp_stack)
        rogue = demo_idp.mint(iss=idp_stack.issuer, aud=AUDIENCE, key=demo_idp.generate_key(),
                              header_overrides={"kid": "rogue"})
        reply = call_tool(idp_stack, rogue, "salesforce.query", {"query": unique("rogue")})
        assert reply.status == 401, reply.text
        assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id=1, reason="unknown_kid")
        after = wait_for_counter_deltas(idp_stack, before, {"jwks_fetch_failed": 1})
        assert after["jwks_fetched"] == before["jwks_fetched"]

        args = {"query": unique("kept-keys")}
        reply = call_tool(idp_stack, fresh, "salesforce.query", args)
        assert reply.status == 200, reply.text
        records = wait_for_records(idp_stack, 1, where=lambda r: r["input"] == args, since=reply.started)
        assert_record(records[0], allowed(args), reply, forwarded=True)
        assert "JWKS fetch failed" in idp_stack.log_path("envoy").read_text()
        assert "keeping the previous keys and retrying" in idp_stack.log_path("envoy").read_text()
    finally:
        idp_stack.start_idp()


def test_provider_down_at_startup_means_503_keys_unavailable_until_its_keys_arrive(
        make_stack: Any, provider: OidcProvider) -> None:
    stack = make_stack(idp=False, wait_for_jwks=False, idp_command=provider.command("k1"),
                       filter_config=discovery_config()).start()
    stack.wait_for_stat("wasmcustom.acp.discovery_failed", stack.concurrency + 1)
    args = {"query": unique("down")}
    reply = call_tool(stack, "not-even-read", "salesforce.query", args, id="d1")
    assert reply.status == 503, reply.text
    assert reply.headers.get("Retry-After") == "5"
    assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id="d1", reason="keys_unavailable")
    records = wait_for_records(stack, 1, where=lambda r: r["input"] == args, since=reply.started)
    assert [(r["event"], r["result"], r["reason"]) for r in records] == [("auth.failed", "auth_failed", "keys_unavailable")]
    log = stack.log_path("envoy").read_text()
    assert "OpenID discovery document fetch failed" in log and "503 keys_unavailable until keys arrive" in log

    stack.start_idp()
    stack.wait_for_stat("wasmcustom.acp.jwks_fetched", stack.concurrency + 1)
    args = {"query": unique("up")}
    reply = call_tool(stack, issue(stack), "salesforce.query", args)
    assert reply.status == 200, reply.text
    records = wait_for_records(stack, 1, where=lambda r: r["input"] == args, since=reply.started)
    assert_record(records[0], allowed(args), reply, forwarded=True)


def test_a_discovery_document_for_another_issuer_is_refused(make_stack: Any, provider: OidcProvider) -> None:
    def trailing_slash(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg = discovery_config()(cfg)
        cfg["identity"]["issuer"] += "/"  # the provider's issuer has none: not the same issuer
        return cfg
    stack = make_stack(wait_for_jwks=False, idp_command=provider.command("k1"), filter_config=trailing_slash).start()
    stack.wait_for_stat("wasmcustom.acp.discovery_failed", stack.concurrency + 1)
    reply = call_tool(stack, issue(stack), "salesforce.query", {"query": unique("other-issuer")}, id=9)
    assert reply.status == 503, reply.text
    assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id=9, reason="keys_unavailable")
    assert acp_counters(stack)["jwks_fetched"] == 0
    assert (f'the document\'s issuer "{stack.issuer}" is not the configured issuer "{stack.issuer}/"'
            in stack.log_path("envoy").read_text())
