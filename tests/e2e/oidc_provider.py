"""A real OpenID provider for the identity-provider tests: the npm package `oidc-provider`
(OpenID Certified), started on loopback by `tests/interop/idp/launcher.mjs` and installed into
`tests/interop/idp/node_modules` by `make interop-deps` (`npm ci`).

Tokens are OAuth client-credentials access tokens for a resource indicator, which the provider
issues as RS256 JWTs (`typ: at+jwt`) with `sub` and `client_id` set to the client.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stack import ROOT

IDP_DIR = ROOT / "tests" / "interop" / "idp"
LAUNCHER = IDP_DIR / "launcher.mjs"
# The resource (audience) the tokens are for; oidc-provider wants an absolute URI.
AUDIENCE = "https://mcp.acme.example"
CLIENT_SECRET = "interop-client-secret-0123456789"


def require_installed() -> None:
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(f"oidc-provider is not installed in {IDP_DIR}: run `make interop-deps`")


class OidcProvider:
    """Launcher arguments and token requests of one provider. Its signing keys and clients live
    in `state_dir`, so a restart with other `kids` keeps the keys it had."""

    def __init__(self, state_dir: Path, clients: Mapping[str, str], claims: Mapping[str, Any]):
        """`clients`: client id -> the scopes it may request; `claims`: added to every token."""
        require_installed()
        self.state_dir = state_dir
        self.claims = dict(claims)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "clients.json").write_text(json.dumps(
            [{"client_id": cid, "client_secret": CLIENT_SECRET, "scope": scope} for cid, scope in clients.items()]))

    def command(self, *kids: str) -> list[str]:
        """The launcher command (for `Stack(idp_command=...)`): `kids[0]` signs, all are published."""
        node = shutil.which("node") or "node"
        return [node, str(LAUNCHER), "--port", "{port}", "--audience", AUDIENCE, "--key-dir", str(self.state_dir),
                "--kids", ",".join(kids), "--claims", json.dumps(self.claims)]

    @staticmethod
    def token(issuer: str, client_id: str, scope: str) -> str:
        """A client-credentials access token (JWT) for `AUDIENCE` with `scope`."""
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope, "resource": AUDIENCE})
        basic = base64.b64encode(f"{client_id}:{CLIENT_SECRET}".encode()).decode()
        request = urllib.request.Request(f"{issuer}/token", data=form.encode(), method="POST",
                                         headers={"Authorization": f"Basic {basic}",
                                                  "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert answer["token_type"] == "Bearer", answer
        return answer["access_token"]


def jwt_part(token: str, index: int) -> dict[str, Any]:
    """The decoded header (0) or payload (1) of a JWT, unverified (for assertions)."""
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
