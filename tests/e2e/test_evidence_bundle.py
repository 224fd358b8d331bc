"""The SOC 2 evidence bundle end to end: calls through the real Envoy and filter, a signed
checkpoint, `acp-collector evidence` on the real database and the same through the API; the
bundle's population, controls, access review and configuration are checked field by field, and
`acp-collector verify-bundle` passes, then names an altered, an added and a removed file.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import urllib.request
import zipfile
from pathlib import Path

from stack import Stack
from support import call_tool, collector_cli, caller, export, http_request, parse_csv, wait_for_records

SSN_INPUT = {"query": "SELECT Id FROM Contact WHERE ssn = '536-22-1987'"}



def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> None:
    """Copies the zip `src` to `dst`, replacing (or removing, with None) the named files and
    adding new ones."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if name not in change:
                new.writestr(name, old.read(name))
        for name, data in change.items():
            if data is not None:
                new.writestr(name, data)


def test_evidence_bundle_is_complete_and_verifies_offline(stack: Stack, tmp_path: Path) -> None:
    since = time.time()
    alice = caller(stack, ["salesforce:read"])
    assert call_tool(stack, alice.token, "salesforce.query", {"query": "SELECT Id FROM Account"}, id=1).status == 200
    assert call_tool(stack, alice.token, "salesforce.update", {"id": "001", "fields": {}}, id=2).status == 403
    assert call_tool(stack, alice.token, "salesforce.query", SSN_INPUT, id=3).status != 200
    assert call_tool(stack, "not-a-token", "salesforce.query", {"query": "x"}, id=4).status == 401
    wait_for_records(stack, 3, user=alice.sub)
    wait_for_records(stack, 1, result="auth_failed", since=since)
    stack.stop_collector()  # signs a checkpoint of every tree that grew
    stack.start_collector()
    day = time.strftime("%Y-%m-%d", time.gmtime(since))
    records = [r for r in export(stack, params={"from": day, "to": day, "limit": 1000}).body["records"]]

    bundle = tmp_path / "bundle.zip"
    done = collector_cli("evidence", "--db", str(stack.db_path), "--tenant", stack.tenant, "--from", day, "--to", day,
                         "--seed", "7", "--sample", "2", "--out", str(bundle))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(bundle) as z:
        files = {name: z.read(name) for name in z.namelist()}
    population = [json.loads(line) for line in files["population/records.jsonl"].decode().splitlines()]
    assert sorted(r["id"] for r in population) == sorted(r["id"] for r in records)
    assert len(parse_csv(files["population/records.csv"].decode())) == len(records)

    controls = {c: json.loads(files[f"controls/{c}.json"]) for c in ["CC6.1", "CC6.2", "CC6.3", "CC7.2", "CC8.1"]}
    failed = [r for r in records if r["result"] == "auth_failed"]
    assert controls["CC6.1"]["summary"]["failedAuthentications"] == len(failed) >= 1
    assert {r["id"] for r in controls["CC6.1"]["records"]} == {r["id"] for r in failed}
    assert {"sub": alice.sub, "emails": [alice.email]} in controls["CC6.2"]["records"]
    denial = next(d for d in controls["CC6.3"]["records"] if d["sub"] == alice.sub)
    assert (denial["tool"], denial["scopes"], denial["scopeRequired"]) == ("salesforce.update", ["salesforce:read"],
                                                                         ["salesforce:write"])
    assert controls["CC7.2"]["summary"]["blockedByDetector"].get("ssn", 0) >= 1
    assert controls["CC8.1"]["summary"]["versions"] == 1
    assert controls["CC8.1"]["records"][0]["policy"]["tools"] == stack.filter_config()["tools"]

    users = {u["sub"]: u for u in json.loads(files["access-review/users.json"])}
    assert users[alice.sub]["scopes"] == ["salesforce:read"]
    assert users[alice.sub]["tools"] == {"salesforce.query": 2, "salesforce.update": 1}
    # Least privilege: the denied update still shows what it required (and alice lacked).
    assert users[alice.sub]["scopesRequired"] == ["salesforce:read", "salesforce:write"]
    assert (users[alice.sub]["unusedScopes"], users[alice.sub]["missingScopes"]) == ([], ["salesforce:write"])
    assert users[alice.sub]["counts"] == {"records": 3, "authorizedCalls": 3, "deniedForScope": 1, "scopes": 1,
                                          "scopesRequired": 2, "unusedScopes": 0}
    client_types = json.loads(files["access-review/client-types.json"])
    assert sum(c["counts"]["records"] for c in client_types) == len(records)
    candidates = controls["CC6.3"]["summary"]["unusedScopeCandidates"]
    assert candidates == {"users": sum(1 for u in users.values() if u["unusedScopes"]),
                          "clientTypes": sum(1 for c in client_types if c["unusedScopes"])}
    assert "Least privilege: unused scopes" in files["report.md"].decode()
    policy = json.loads(files["configuration/policy-v1.json"])
    assert policy["policy"]["identity"]["issuer"] == stack.issuer
    assert stack.ingest_token.encode() not in b"".join(files.values())
    sample = json.loads(files["sample/sample.json"])
    assert (sample["seed"], sample["size"], sample["population"]) == (7, 2, len(records))
    assert b"VERIFY.md" in files["MANIFEST"] and "verify-bundle" in files["VERIFY.md"].decode()
    assert "CC6.3" in files["report.md"].decode()

    key = collector_cli("key", "show", "--db", str(stack.db_path)).stdout.strip()
    done = collector_cli("verify-bundle", str(bundle), "--public-key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok: {len(records)} records of " in done.stdout and "2 sampled (seed 7)" in done.stdout, done.stdout
    # The same seed draws the same sample; the sample also checks with `verify-proof`.
    sample_file = tmp_path / "sample.ndjson"
    sample_file.write_bytes(files["sample/records.ndjson"])
    done = collector_cli("verify-proof", str(sample_file), "--public-key", key)
    assert done.returncode == 0, done.stdout + done.stderr

    altered = files["population/records.jsonl"].replace(b"SELECT Id FROM Account", b"SELECT Id FROM Acc0unt")
    cases = {
        "population/records.jsonl does not match its hash in the manifest (altered)": {"population/records.jsonl": altered},
        "extra.txt is not in the manifest (added)": {"extra.txt": b"hello"},
        "controls/CC6.1.json is listed in the manifest but missing from the bundle (removed)": {"controls/CC6.1.json": None},
        # Altered, with the manifest's line updated to match: the signature no longer holds.
        "MANIFEST: bad signature": {"population/records.jsonl": altered, "MANIFEST": files["MANIFEST"].replace(
            hashlib.sha256(files["population/records.jsonl"]).hexdigest().encode(), hashlib.sha256(altered).hexdigest().encode())},
    }
    for message, change in cases.items():
        broken = tmp_path / "broken.zip"
        rewrite(bundle, broken, change)
        done = collector_cli("verify-bundle", str(broken), "--public-key", key)
        assert done.returncode != 0, message
        assert message in done.stderr, (message, done.stderr)

    request = urllib.request.Request(f"{stack.collector_url}/{stack.tenant}/api/v1/evidence?from={day}&to={day}&seed=7&sample=2",
                                     headers={"Authorization": f"Bearer {stack.api_key}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["content-type"] == "application/zip"
        downloaded = response.read()
    with zipfile.ZipFile(io.BytesIO(downloaded)) as z:
        assert z.read("sample/sample.json") == files["sample/sample.json"]
        assert z.read("population/records.jsonl") == files["population/records.jsonl"]
    reply = http_request(("127.0.0.1", stack.ports.collector), "GET", f"/{stack.tenant}/api/v1/evidence?from={day}",
                         headers={"Authorization": f"Bearer {stack.api_key}"})
    assert reply.status == 400 and "`from` and `to` are required" in reply.text

    # The access review API answers what the bundle holds, for the tenant's key only.
    review = http_request(("127.0.0.1", stack.ports.collector), "GET",
                          f"/{stack.tenant}/api/v1/access-review?from={day}&to={day}",
                          headers={"Authorization": f"Bearer {stack.api_key}"})
    assert review.status == 200, review.text
    assert json.loads(review.text) == {"users": json.loads(files["access-review/users.json"]),
                                       "clientTypes": client_types}
    for path, status in [(f"/{stack.tenant}/api/v1/access-review?from={day}", 400),
                         (f"/org_other/api/v1/access-review?from={day}&to={day}", 403)]:
        reply = http_request(("127.0.0.1", stack.ports.collector), "GET", path,
                             headers={"Authorization": f"Bearer {stack.api_key}"})
        assert reply.status == status, (path, reply.status, reply.text)


