"""JWT attacks through the real Envoy: every crafted token gets 401 with
`WWW-Authenticate: Bearer error="invalid_token", error_description="<reason>"`, never reaches the
MCP server, and leaves one `auth.failed` record whose `reason` the export API reads back.

The same attacks are in the filter's native table (`filter/src/auth/token_attacks.rs`). Tokens whose
claims matter carry a genuine RS256 signature by the demo key, so only the attack is wrong.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from idp import demo_idp
from idp.demo_idp import DEMO_KID, b64url
from stack import Stack
from support import (
    NO_IDENTITY, UNAUTHORIZED, Reply, assert_jsonrpc_error, assert_record, call_tool, caller, envoy,
    expected_record, h2c_post, http_request, mcp_headers, token, tool_call, unique, upstream_requests,
    wait_for_records,
)

TokenFactory = Callable[[Stack], str]


def _now() -> int:
    return int(time.time())


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _claims(s: Stack, **changes: Any) -> dict[str, Any]:
    merged = {**demo_idp.default_claims(), "iss": s.issuer, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def _genuine(s: Stack) -> list[str]:
    """The three segments of a valid token."""
    return token(s).split(".")


def _header(s: Stack, **changes: Any) -> str:
    """A valid token whose header is changed (the genuine signature kept)."""
    _, payload, signature = _genuine(s)
    header = {k: v for k, v in {"alg": "RS256", "typ": "JWT", "kid": DEMO_KID, **changes}.items() if v is not None}
    return f"{b64url(_json(header))}.{payload}.{signature}"


def _signed(s: Stack, payload: bytes) -> str:
    """`payload` bytes as they are, under the standard header, signed by the demo key."""
    header = {"alg": "RS256", "typ": "JWT", "kid": DEMO_KID}
    return demo_idp.raw_token(header, payload, demo_idp.rs256_signer(demo_idp.demo_key()))


def _duplicate(s: Stack, member: str) -> str:
    """Valid claims with `member` (JSON text) prepended: the claim then appears twice."""
    return _signed(s, _json(_claims(s)).replace(b"{", b"{" + member.encode() + b",", 1))


def _segment(s: Stack, index: int, edit: Callable[[str], str]) -> str:
    parts = _genuine(s)
    parts[index] = edit(parts[index])
    return ".".join(parts)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _flip(s: Stack, at: int) -> str:
    def edit(signature: str) -> str:
        raw = bytearray(_b64decode(signature))
        raw[at] ^= 0x10
        return b64url(bytes(raw))
    return _segment(s, 2, edit)


def _unsigned(alg: str) -> TokenFactory:
    return lambda s: demo_idp.raw_token({"alg": alg, "typ": "JWT"}, _claims(s))


def _attacker_jwk(s: Stack) -> str:
    """Signed by the attacker's own key, which the header embeds as `jwk`."""
    key = demo_idp.generate_key()
    return token(s, key=key, header_overrides={"jwk": demo_idp.public_jwk(key)})


def _duplicate_header_alg(s: Stack) -> str:
    _, payload, signature = _genuine(s)
    header = b'{"alg":"none","alg":"RS256","kid":"x"}'
    return f"{b64url(header)}.{payload}.{signature}"


def _nested(depth: int) -> TokenFactory:
    return lambda s: _signed(s, _json(_claims(s))[:-1] + b',"x":' + b"[" * depth + b"1" + b"]" * depth + b"}")


# case -> (reason recorded, token)
ATTACKS: dict[str, tuple[str, TokenFactory]] = {
    # Unsigned and algorithm confusion.
    "alg_none": ("unsupported_alg", _unsigned("none")),
    "alg_None": ("unsupported_alg", _unsigned("None")),
    "alg_NONE": ("unsupported_alg", _unsigned("NONE")),
    "alg_nOnE_genuine_signature_kept": ("unsupported_alg", lambda s: _header(s, alg="nOnE")),
    "alg_empty": ("unsupported_alg", lambda s: _header(s, alg="")),
    "alg_lowercase_rs256": ("unsupported_alg", lambda s: _header(s, alg="rs256")),
    "alg_missing": ("malformed", lambda s: _header(s, alg=None)),
    "hs256_keyed_with_the_rsa_public_key": ("unsupported_alg", lambda s: demo_idp.hmac_confusion_token("HS256", iss=s.issuer)),
    "hs384_keyed_with_the_rsa_public_key": ("unsupported_alg", lambda s: demo_idp.hmac_confusion_token("HS384", iss=s.issuer)),
    "hs512_keyed_with_the_rsa_public_key": ("unsupported_alg", lambda s: demo_idp.hmac_confusion_token("HS512", iss=s.issuer)),
    "ps256_relabel": ("unsupported_alg", lambda s: _header(s, alg="PS256")),
    "es256_relabel_of_the_rsa_kid": ("alg_mismatch", lambda s: _header(s, alg="ES256")),
    # Key selection: nothing but the configured JWKS is ever consulted.
    "kid_path_traversal": ("unknown_kid", lambda s: _header(s, kid="../../../../../../dev/null")),
    "kid_sql_injection": ("unknown_kid", lambda s: _header(s, kid="x' UNION SELECT 'secret' --")),
    "kid_always_true_sql": ("unknown_kid", lambda s: _header(s, kid="' OR '1'='1")),
    "kid_nul_suffix": ("unknown_kid", lambda s: _header(s, kid=DEMO_KID + "\u0000")),
    "kid_not_a_string": ("malformed", lambda s: _header(s, kid=1)),
    "jku_attacker_jwks": ("untrusted_key_source", lambda s: _header(s, jku="https://evil.example/jwks.json")),
    "x5u_attacker_certificate": ("untrusted_key_source", lambda s: _header(s, x5u="https://evil.example/c.pem")),
    "jwk_attacker_key_signed_by_it": ("untrusted_key_source", _attacker_jwk),
    "x5c_attacker_certificate": ("untrusted_key_source", lambda s: _header(s, x5c=["MIIB"])),
    # Critical extensions (RFC 7515 4.1.11).
    "crit_unknown_extension": ("critical_header", lambda s: _header(s, crit=["exp2"], exp2=1)),
    "crit_empty_list": ("critical_header", lambda s: _header(s, crit=[])),
    "crit_b64": ("critical_header", lambda s: _header(s, crit=["b64"], b64=False)),
    # Time, issuer and audience (genuinely signed).
    "expired": ("expired", lambda s: token(s, iat=_now() - 7200, nbf=_now() - 7200, exp=_now() - 3600)),
    "nbf_in_the_future": ("not_yet_valid", lambda s: token(s, nbf=_now() + 3600)),
    "iat_in_the_future": ("issued_in_future", lambda s: token(s, iat=_now() + 3600)),
    "wrong_issuer": ("wrong_issuer", lambda s: token(s, iss="https://evil.example")),
    "no_issuer": ("wrong_issuer", lambda s: token(s, iss=None)),
    "wrong_audience": ("wrong_audience", lambda s: token(s, aud="other-api")),
    "audience_array_without_ours": ("wrong_audience", lambda s: token(s, aud=["other-api", "acp-demo2"])),
    "empty_audience_array": ("wrong_audience", lambda s: token(s, aud=[])),
    # Signature.
    "signature_bit_flip_first_byte": ("bad_signature", lambda s: _flip(s, 0)),
    "signature_bit_flip_middle_byte": ("bad_signature", lambda s: _flip(s, 128)),
    "signature_bit_flip_last_byte": ("bad_signature", lambda s: _flip(s, 255)),
    "payload_changed_under_a_genuine_signature": ("bad_signature", lambda s: _segment(
        s, 1, lambda _: b64url(_json(_claims(s, sub="admin"))))),
    "signature_truncated": ("bad_signature", lambda s: _segment(s, 2, lambda sig: b64url(_b64decode(sig)[:250]))),
    "signature_stripped": ("bad_signature", lambda s: _segment(s, 2, lambda _: "")),
    # Compact serialization.
    "two_segments": ("malformed", lambda s: ".".join(_genuine(s)[:2])),
    "five_segments_jwe_like": ("malformed", lambda s: token(s) + ".AAAA.BBBB"),
    "padding_on_the_signature": ("malformed", lambda s: _segment(s, 2, lambda sig: sig + "==")),
    "padding_on_the_header": ("malformed", lambda s: _segment(s, 0, lambda h: h + "=")),
    "standard_base64_characters": ("malformed", lambda s: _segment(s, 2, lambda sig: "+/" + sig[2:])),
    # Size and depth.
    "huge_header": ("token_too_large", lambda s: _header(s, kid="k" * 9000)),
    "huge_payload": ("token_too_large", lambda s: token(s, pad="x" * 9000)),
    "deeply_nested_claims": ("malformed", _nested(1000)),
    # Encoding and ambiguity.
    "non_utf8_payload": ("malformed", lambda s: _signed(s, _json(_claims(s))[:-1] + b',"x":"\xff\xfe"}')),
    "payload_not_an_object": ("malformed", lambda s: _signed(s, b'["alice"]')),
    "duplicate_sub": ("duplicate_claim", lambda s: _duplicate(s, '"sub":"admin"')),
    "duplicate_aud": ("duplicate_claim", lambda s: _duplicate(s, '"aud":"other-api"')),
    "duplicate_sub_spelled_with_an_escape": ("duplicate_claim", lambda s: _duplicate(s, '"\\u0073ub":"admin"')),
    "duplicate_alg_in_the_header": ("duplicate_claim", _duplicate_header_alg),
}


def test_the_suite_has_at_least_40_attacks() -> None:
    assert len(ATTACKS) >= 40


def _send_http1(s: Stack, jwt: str, args: dict[str, Any], rpc_id: str) -> Reply:
    reply = call_tool(s, jwt, "salesforce.query", args, id=rpc_id)
    reason = reply.body["error"]["data"]["reason"] if isinstance(reply.body, dict) else None
    assert reply.headers.get("WWW-Authenticate") == f'Bearer error="invalid_token", error_description="{reason}"'
    return reply


def _send_http2(s: Stack, jwt: str, args: dict[str, Any], rpc_id: str) -> Reply:
    """Over HTTP/2 (the test client decodes no response header but `:status`)."""
    return h2c_post(s, jwt, tool_call("salesforce.query", args, rpc_id))


@pytest.mark.parametrize("send", [_send_http1, _send_http2], ids=["http1", "http2"])
@pytest.mark.parametrize("case", list(ATTACKS))
def test_crafted_token_is_refused_with_its_reason(stack: Stack, case: str, send: Callable[..., Reply]) -> None:
    reason, make_token = ATTACKS[case]
    marker = unique(f"jwt-{case}")
    args = {"query": f"SELECT Name FROM Opportunity -- {marker}"}
    upstream_before = upstream_requests(stack)

    reply = send(stack, make_token(stack), args, marker)

    assert reply.status == 401, reply.text
    assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id=marker, reason=reason)
    records = wait_for_records(stack, 1, where=lambda r: r["input"] == args, since=reply.started, result="auth_failed")
    assert len(records) == 1, records
    assert_record(records[0], expected_record(event="auth.failed", result="auth_failed", reason=reason,
                                              tool="salesforce.query", input=args, scope_required=None,
                                              scope_result=None, identity=NO_IDENTITY), reply)
    assert upstream_requests(stack) == upstream_before, "a forged token reached the MCP server"


def test_non_utf8_authorization_header_is_malformed_and_the_worker_lives_on(stack: Stack) -> None:
    """Header bytes that are not UTF-8 once crashed the SDK's header accessor (a panic kills
    the worker's VM); now they are an ordinary malformed token."""
    args = {"query": unique("non-utf8-header")}
    headers: dict[str, Any] = mcp_headers(None)
    headers["Authorization"] = b"Bearer " + token(stack).encode()[:40] + b"\xff\xfe"
    for _ in range(2 * stack.concurrency):
        reply = http_request(envoy(stack), "POST", "/mcp", body=json.dumps(tool_call("salesforce.query", args)).encode(),
                             headers=headers)
        assert reply.status == 401, reply.text
        assert_jsonrpc_error(reply.body, code=UNAUTHORIZED, id=1, reason="malformed")
    alice = caller(stack)
    assert call_tool(stack, alice.token, "salesforce.query", {"query": "SELECT 1"}).status == 200
