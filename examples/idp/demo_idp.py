"""Demo identity provider: serves a JWKS and mints RS256 access tokens for the ACP demo.

The signing key (`demo-private-key.pem`, kid `DEMO_KID`) is committed to the repository on
purpose. It is for the demo and the tests only: anyone can sign tokens with it.

Command line:
    demo_idp.py serve --port 9000 [--host 127.0.0.1]
    demo_idp.py token --sub alice --email alice@acme.com --tenant org_acme_corp \
        --scopes "salesforce:read" [--azp X] [--act JSON] [--ttl 3600] [--issuer URL] [--audience AUD]

Python (for the tests), tokens for alice@acme.com unless claims are overridden; pass
`iss=stack.issuer` when the IdP is not on the demo port:
    mint()                                          # valid
    mint(sub="bob", email="bob@acme.com", scope="files:read")
    mint(exp=now - 60)  mint(nbf=now + 600)  mint(iss="https://evil")  mint(aud="other")
    mint(org_id="org_other")  mint(act={"sub": "agent-1", "act": {"sub": "agent-0"}})
    mint(email=None)                                # a None override removes the claim
    mint(key=generate_key())                        # signed by a key the JWKS does not list
    mint(header_overrides={"kid": None})            # no kid header
    alg_none_token()  hmac_confusion_token("HS384")  bad_signature_token()  malformed_tokens()
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEMO_KEY_PATH = Path(__file__).with_name("demo-private-key.pem")
DEMO_KID = "acp-demo-key-1"
DEMO_PORT = 9000
DEFAULT_ISSUER = f"http://127.0.0.1:{DEMO_PORT}"
DEFAULT_AUDIENCE = "acp-demo"
DEMO_TENANT = "org_acme_corp"

JWKS_PATH = "/.well-known/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"
# Named in the discovery document so MCP clients following a 401 find an authorization server;
# the demo issues tokens only with `make token`, so both answer an OAuth error.
AUTHORIZE_PATH = "/authorize"
TOKEN_PATH = "/token"


# ---- Keys ---------------------------------------------------------------------------------


@functools.cache
def demo_key() -> rsa.RSAPrivateKey:
    """The committed demo signing key."""
    key = serialization.load_pem_private_key(DEMO_KEY_PATH.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def generate_key() -> rsa.RSAPrivateKey:
    """A fresh RSA 2048 key, e.g. to sign a token that the demo JWKS does not vouch for."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def public_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, kid: str = DEMO_KID) -> dict[str, str]:
    """The public half of `key` as an RS256 signing JWK."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


def jwks() -> dict[str, list[dict[str, str]]]:
    """The key set the demo IdP publishes."""
    return {"keys": [public_jwk(demo_key())]}


# ---- Tokens -------------------------------------------------------------------------------


def claims(sub: str, email: str, tenant: str, scopes: str | list[str], *, azp: str | None = None,
           act: Mapping[str, Any] | None = None, ttl: int = 3600, issuer: str = DEFAULT_ISSUER,
           audience: str = DEFAULT_AUDIENCE, now: int | None = None) -> dict[str, Any]:
    """The claim set of a demo access token; `azp` and `act` only when given."""
    now = int(time.time()) if now is None else now
    scope = scopes if isinstance(scopes, str) else " ".join(scopes)
    out: dict[str, Any] = {"iss": issuer, "aud": audience, "sub": sub, "email": email,
                           "org_id": tenant, "scope": scope, "iat": now, "nbf": now, "exp": now + ttl}
    if azp:
        out["azp"] = azp
    if act:
        out["act"] = dict(act)
    return out


def raw_token(header: Mapping[str, Any], payload: Mapping[str, Any] | bytes,
              signature_for: Callable[[bytes], bytes] = lambda _signing_input: b"") -> str:
    """A compact JWS built by hand: `payload` is JSON-encoded unless given as bytes, and the
    signature is `signature_for(signing_input)` (empty by default)."""
    body = payload if isinstance(payload, bytes) else _json(payload)
    signing_input = f"{b64url(_json(header))}.{b64url(body)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64url(signature_for(signing_input))}"


def rs256_signer(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    """A `raw_token` signer producing an RS256 (RSASSA-PKCS1-v1_5 SHA-256) signature."""
    return lambda signing_input: key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def sign(payload: Mapping[str, Any], *, key: rsa.RSAPrivateKey | None = None,
         header_overrides: Mapping[str, Any] | None = None) -> str:
    """An RS256 token over `payload`, header `{"alg": "RS256", "typ": "JWT", "kid": DEMO_KID}`
    with `header_overrides` applied (a None value removes that header)."""
    header = _apply({"alg": "RS256", "typ": "JWT", "kid": DEMO_KID}, header_overrides)
    return raw_token(header, payload, rs256_signer(key or demo_key()))


def default_claims() -> dict[str, Any]:
    """Alice's claims (demo issuer, tenant and audience, scopes `salesforce:read
    salesforce:write`, valid for an hour), the base that `mint` and the crafting helpers override."""
    return claims("alice", "alice@acme.com", DEMO_TENANT, ["salesforce:read", "salesforce:write"])


def mint(*, key: rsa.RSAPrivateKey | None = None, header_overrides: Mapping[str, Any] | None = None,
         **claims_overrides: Any) -> str:
    """A signed token with `default_claims()` overridden by `claims_overrides` (raw claim names;
    a None value removes the claim)."""
    return sign(_apply(default_claims(), claims_overrides), key=key, header_overrides=header_overrides)


def alg_none_token(**claims_overrides: Any) -> str:
    """An unsigned token (`alg: none`, empty signature)."""
    return raw_token({"alg": "none", "typ": "JWT"}, _apply(default_claims(), claims_overrides))


def hmac_confusion_token(alg: str = "HS256", **claims_overrides: Any) -> str:
    """The algorithm-confusion attack: HS256/HS384/HS512 with the demo *public* key PEM as the
    HMAC secret."""
    secret = demo_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return raw_token({"alg": alg, "typ": "JWT", "kid": DEMO_KID},
                     _apply(default_claims(), claims_overrides),
                     lambda signing_input: hmac.new(secret, signing_input, digest).digest())


def bad_signature_token(token: str | None = None) -> str:
    """`token` (default: a valid `mint()`) with one byte of its signature flipped."""
    head, payload, signature = (token or mint()).split(".")
    sig = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    sig[len(sig) // 2] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(sig))}"


def malformed_tokens() -> dict[str, str]:
    """Tokens that are not well-formed JWTs, by name. The `payload_not_*` ones carry a valid
    RS256 signature by the demo key, so only the payload's shape is wrong."""
    header = {"alg": "RS256", "typ": "JWT", "kid": DEMO_KID}
    signer = rs256_signer(demo_key())
    head, payload, signature = mint().split(".")
    return {
        "empty": "",
        "one_segment": "not-a-jwt",
        "two_segments": f"{head}.{payload}",
        "four_segments": f"{head}.{payload}.{signature}.{signature}",
        "not_base64": "%%%.&&&.***",
        "header_not_json": f"{b64url(b'not json')}.{payload}.{signature}",
        "header_not_object": f"{b64url(b'[1]')}.{payload}.{signature}",
        "payload_not_json": raw_token(header, b"not json", signer),
        "payload_not_object": raw_token(header, b'"alice"', signer),
    }


def _apply(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = {**base, **(overrides or {})}
    return {k: v for k, v in merged.items() if v is not None}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


# ---- HTTP server --------------------------------------------------------------------------


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """A (not yet serving) HTTP server with the JWKS and the OpenID discovery document of the
    issuer `http://host:port`."""
    issuer = f"http://{host}:{port}"
    documents = {
        JWKS_PATH: jwks(),
        DISCOVERY_PATH: {"issuer": issuer, "jwks_uri": issuer + JWKS_PATH,
                         "id_token_signing_alg_values_supported": ["RS256"],
                         "authorization_endpoint": issuer + AUTHORIZE_PATH, "token_endpoint": issuer + TOKEN_PATH,
                         "response_types_supported": ["code"], "subject_types_supported": ["public"],
                         "code_challenge_methods_supported": ["S256"]},
    }
    unsupported = {"error": "unsupported_response_type",
                   "error_description": "the demo identity provider issues tokens with `make token` only"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for Envoy's pooled upstream connections

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in documents:
                self._send(200, documents[path])
            elif path == AUTHORIZE_PATH:
                self._send(400, unsupported)
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            if self.path == TOKEN_PATH:
                self._send(400, {**unsupported, "error": "unsupported_grant_type"})
            else:
                self._send(404, {"error": "not_found"})

        def _send(self, status: int, document: Any) -> None:
            body = _json(document)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


# ---- Command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the JWKS and the discovery document")
    serve.add_argument("--port", type=int, default=DEMO_PORT)
    serve.add_argument("--host", default="127.0.0.1")

    token = commands.add_parser("token", help="print a signed access token")
    token.add_argument("--sub", required=True)
    token.add_argument("--email", required=True)
    token.add_argument("--tenant", required=True)
    token.add_argument("--scopes", required=True, help="space-delimited")
    token.add_argument("--azp", default="", help="client id (empty: no azp claim)")
    token.add_argument("--act", default="", help='RFC 8693 actor as JSON, e.g. \'{"sub": "agent-1"}\'')
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--issuer", default=DEFAULT_ISSUER)
    token.add_argument("--audience", default=DEFAULT_AUDIENCE)

    args = parser.parse_args(argv)
    if args.command == "serve":
        with make_server(args.host, args.port) as server, contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        return 0

    try:
        act = json.loads(args.act) if args.act else None
    except json.JSONDecodeError as err:
        parser.error(f"--act: {err}")
    if act is not None and not isinstance(act, dict):
        parser.error("--act must be a JSON object")
    print(sign(claims(args.sub, args.email, args.tenant, args.scopes.split(), azp=args.azp or None,
                      act=act, ttl=args.ttl, issuer=args.issuer, audience=args.audience)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
