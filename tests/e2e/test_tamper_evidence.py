"""Tamper evidence end to end: records that came through Envoy and the filter are covered by a
signed checkpoint, `acp-collector verify` passes on the real database, and an NDJSON export with
inclusion proofs verifies offline with the published key.
"""

from __future__ import annotations

from pathlib import Path

from stack import Stack
from support import call_tool, collector_cli, caller, export, wait_for_records



def test_records_through_envoy_verify_and_their_proofs_check_offline(stack: Stack, tmp_path: Path) -> None:
    alice = caller(stack, ["salesforce:read"])
    for n in range(3):
        assert call_tool(stack, alice.token, "salesforce.query", {"query": f"SELECT Id FROM Account LIMIT {n}"},
                         id=n).status == 200
    records = wait_for_records(stack, 3, user=alice.sub)
    # Stopping the collector signs a checkpoint of every tree that grew.
    stack.stop_collector()
    stack.start_collector()

    published = collector_cli("key", "show", "--db", str(stack.db_path))
    assert published.returncode == 0, published.stderr
    key = published.stdout.strip()
    done = collector_cli("verify", "--db", str(stack.db_path), "--public-key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{stack.tenant}: ok: " in done.stdout, done.stdout

    reply = export(stack, params={"user": alice.sub, "format": "ndjson", "proof": "true"})
    assert reply.status == 200, reply.text
    lines = reply.text.splitlines()
    assert lines[0].startswith('{"checkpoint":"'), lines[0]
    assert len(lines) == 1 + len(records)
    exported = tmp_path / "alice.ndjson"
    exported.write_text(reply.text)
    done = collector_cli("verify-proof", str(exported), "--public-key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok: {len(records)} records of {stack.tenant}" in done.stdout, done.stdout

    exported.write_text(reply.text.replace("SELECT Id FROM Account LIMIT 1", "SELECT Id FROM Account LIMIT 9"))
    done = collector_cli("verify-proof", str(exported), "--public-key", key)
    assert done.returncode != 0
    assert "its bytes are not in the checkpoint's tree" in done.stderr, done.stderr
