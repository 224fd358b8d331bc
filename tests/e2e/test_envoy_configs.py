"""The shipped Envoy examples load in the real Envoy, filter configuration included
(`envoy --mode validate` runs the filter's configuration parsing too)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from stack import ENVOY_BIN, ROOT, WASM_PATH, PlaceholderTemplate


def validate(yaml_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml_text)
    return subprocess.run([str(ENVOY_BIN), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
                          capture_output=True, text=True, timeout=120, check=False)


def test_global_rate_limit_example_is_a_valid_envoy_configuration(tmp_path: Path) -> None:
    example = (ROOT / "envoy" / "global-ratelimit.example.yaml").read_text()
    done = validate(PlaceholderTemplate(example).substitute(WASM_PATH=WASM_PATH), tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("broken", ['"forwardIdentityHeaderz": true', '"forwardIdentityHeaders": "yes"'])
def test_validation_runs_the_filter_configuration_parser(tmp_path: Path, broken: str) -> None:
    example = (ROOT / "envoy" / "global-ratelimit.example.yaml").read_text()
    example = example.replace('"forwardIdentityHeaders": true', broken)
    done = validate(PlaceholderTemplate(example).substitute(WASM_PATH=WASM_PATH), tmp_path)
    assert done.returncode != 0
    assert "invalid plugin configuration: forwardIdentityHeader" in done.stdout + done.stderr
