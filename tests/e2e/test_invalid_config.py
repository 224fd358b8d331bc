"""An invalid plugin configuration is refused at startup: Envoy does not come up (fail closed),
and its log names the offending field and the reason. A configuration that weakens an immutable
content rule (IMMUTABLE_RULES.md) is such a configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from stack import StackError


def unknown_jwks_field(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["identity"]["jwks"]["remote"]["clustr"] = "acp_idp"
    return cfg


def zero_batch_size(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["audit"]["batchSize"] = 0
    return cfg


def unknown_top_level_field(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["toolz"] = cfg["tools"]
    return cfg


def missing_ingest_token(cfg: dict[str, Any]) -> dict[str, Any]:
    del cfg["audit"]["ingestToken"]
    return cfg


def weakened_immutable_rule(detector: str, action: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mutate(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["scanning"] = {"input": {detector: action}}
        return cfg
    return mutate


PREFIX = "invalid plugin configuration: "
IMMUTABLE = "tool inputs is a platform-enforced rule that no configuration can weaken"
# (change to the demo configuration, what the Envoy log must say)
CASES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "unknown_field": (unknown_jwks_field, PREFIX + "identity.jwks.remote.clustr: unknown field `clustr`"),
    "batch_size_zero": (zero_batch_size, PREFIX + "audit.batchSize: must be at least 1, got 0"),
    "unknown_top_level_field": (unknown_top_level_field, PREFIX + "toolz: unknown field `toolz`"),
    "missing_required_field": (missing_ingest_token, PREFIX + "audit: missing field `ingestToken`"),
    # IMMUTABLE_RULES.md: blocking SSNs, cards and SSRF in inputs cannot be weakened.
    "immutable_ssn_log": (weakened_immutable_rule("ssn", "log"), PREFIX + "scanning.input.ssn: `log` refused: "
                          "blocking US Social Security numbers in " + IMMUTABLE),
    "immutable_card_redact": (weakened_immutable_rule("payment_card", "redact"),
                              PREFIX + "scanning.input.payment_card: `redact` refused: blocking payment card "
                              "numbers in " + IMMUTABLE),
    "immutable_ssrf_log": (weakened_immutable_rule("ssrf", "log"), PREFIX + "scanning.input.ssrf: `log` refused: "
                           "blocking URLs and hosts that reach internal addresses (SSRF) in " + IMMUTABLE),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_filter_configuration_stops_envoy_and_names_the_field(make_stack, case: str) -> None:
    mutate, message = CASES[case]
    stack = make_stack(filter_config=mutate, collector=False, startup_timeout=30)

    with pytest.raises(StackError, match="envoy exited"):
        stack.start()

    log = stack.log_path("envoy").read_text(errors="replace")
    assert message in log, f"{message!r} not in the Envoy log:\n{stack.tail('envoy', 15)}"
