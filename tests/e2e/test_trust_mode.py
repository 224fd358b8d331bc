"""Trust mode: Envoy's own `jwt_authn` filter (what Istio's RequestAuthentication configures)
verifies the token before the ACP filter, which takes the payload `jwt_authn` left in the
dynamic metadata (`payload_in_metadata`) instead of verifying again.

The route lets requests without a token through `jwt_authn` (`allow_missing`), so these tests
show what reaches the ACP filter unverified: nothing passes it without a payload `jwt_authn`
verified, whatever the client sends; and its issuer and audience are checked again.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from idp import demo_idp
from stack import Stack
from support import (
    UNAUTHORIZED, acp_counters, assert_jsonrpc_error, assert_record, call_tool, caller, clean_scan, expected_record, token,
    unique, upstream_requests, wait_for_records,
)

PAYLOAD_KEY = "jwt_payload"
# Accepted by jwt_authn, not by the ACP filter (its audience is the stack's alone).
FOREIGN_AUDIENCE = "some-other-api"


def jwt_authn_filter(stack_issuer: str, audience: str) -> str:
    """Envoy YAML of a `jwt_authn` filter verifying the demo IdP's tokens (placed before ACP)."""
    config = {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"demo": {
                "issuer": stack_issuer,
                "audiences": [audience, FOREIGN_AUDIENCE],
                "remote_jwks": {"http_uri": {"uri": f"{stack_issuer}/.well-known/jwks.json", "cluster": "acp_idp",
                                             "timeout": "2s"}},
                "payload_in_metadata": PAYLOAD_KEY,
                "forward": True,
            }},
            "rules": [{"match": {"prefix": "/mcp"},
                       "requires": {"requires_any": {"requirements": [{"provider_name": "demo"},
                                                                      {"allow_missing": {}}]}}}],
        },
    }
    return "".join(f"          {line}\n" for line in ["- " + json.dumps(config)])


@pytest.fixture(scope="module")
def trust_stack(make_module_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    def configure(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["identity"]["jwks"] = {"trustJwtAuthn": {"payloadInMetadata": PAYLOAD_KEY}}
        return cfg
    probe = Stack(tmp_path_factory.mktemp("probe"))  # the ports decide the issuer
    return make_module_stack(ports=probe.ports, filter_config=configure,
                             http_filters_before=jwt_authn_filter(probe.issuer, probe.audience))


def test_the_payload_jwt_authn_verified_is_the_callers_identity(trust_stack: Stack) -> None:
    alice = caller(trust_stack, ["salesforce:read"], azp="cursor-ide")
    args = {"query": unique("trusted")}
    reply = call_tool(trust_stack, alice.token, "salesforce.query", args)
    assert reply.status == 200, reply.text
    records = wait_for_records(trust_stack, 1, user=alice.sub)
    assert len(records) == 1, records
    assert_record(records[0], expected_record(
        event="tool.call", result="success", reason=None, tool="salesforce.query", input=args,
        scope_required=["salesforce:read"], scope_result="pass", identity=alice.identity(client_type="cursor"),
        content_scan=clean_scan()), reply, forwarded=True)
    assert acp_counters(trust_stack).get("token_cache_misses", 0) == 0, \
        "the filter verified the token itself"


def test_without_a_verified_payload_nothing_passes_whatever_the_client_sends(trust_stack: Stack) -> None:
    upstream_before = upstream_requests(trust_stack)
    # No token: jwt_authn lets it through (allow_missing) and writes no payload.
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "mallory", "scope": "salesforce:read"}).encode()).decode()
    for headers in ({}, {"x-jwt-payload": forged, "jwt_payload": forged}):
        args = {"query": unique("unverified")}
        reply = call_tool(trust_stack, None, "salesforce.query", args, id="u", headers=headers)
        assert reply.status == 401, reply.text
        assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id="u", reason="missing_token")
        records = wait_for_records(trust_stack, 1, where=lambda r, a=args: r["input"] == a, since=reply.started)
        assert [(r["event"], r["reason"], r["sub"]) for r in records] == [("auth.failed", "missing_token", None)]
    # A bad signature never reaches the ACP filter: jwt_authn answers it.
    reply = call_tool(trust_stack, demo_idp.bad_signature_token(token(trust_stack)), "salesforce.query", {"q": 1})
    assert reply.status == 401 and "Jwt verification fails" in reply.text, reply.text
    assert upstream_requests(trust_stack) == upstream_before


def test_issuer_and_audience_are_checked_again(trust_stack: Stack) -> None:
    args = {"query": unique("foreign-audience")}
    reply = call_tool(trust_stack, token(trust_stack, aud=FOREIGN_AUDIENCE), "salesforce.query", args, id=3)
    assert reply.status == 401, reply.text
    assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id=3, reason="wrong_audience")
    records = wait_for_records(trust_stack, 1, where=lambda r: r["input"] == args, since=reply.started)
    assert [(r["event"], r["reason"]) for r in records] == [("auth.failed", "wrong_audience")]
