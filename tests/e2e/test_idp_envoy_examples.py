"""The identity-provider Envoy examples load in the real Envoy with the built filter
(`envoy --mode validate` parses the plugin configuration too): OpenID discovery over a TLS
cluster, and trust mode behind `jwt_authn`. Their IdPs are not contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from stack import ROOT, WASM_PATH, PlaceholderTemplate
from test_envoy_configs import validate


@pytest.mark.parametrize("example", ["oidc-discovery.example.yaml", "jwt-authn-trust.example.yaml"])
def test_identity_provider_example_is_a_valid_envoy_configuration(tmp_path: Path, example: str) -> None:
    text = PlaceholderTemplate((ROOT / "envoy" / example).read_text()).substitute(WASM_PATH=WASM_PATH)
    done = validate(text, tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout + done.stderr, done.stdout + done.stderr


def test_validation_refuses_a_broken_identity_configuration(tmp_path: Path) -> None:
    text = (ROOT / "envoy" / "oidc-discovery.example.yaml").read_text().replace('"preset": "okta"', '"preset": "ping"')
    done = validate(PlaceholderTemplate(text).substitute(WASM_PATH=WASM_PATH), tmp_path)
    assert done.returncode != 0
    assert "invalid plugin configuration: identity.preset: unknown variant `ping`" in done.stdout + done.stderr
