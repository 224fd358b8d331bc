"""`make bench`: what the ACP filter costs, measured against the same Envoy without it.

One run, same load: Envoy (`--concurrency 1`) in front of a fixed-answer upstream Envoy, both
pinned to CPU 1, driven by wrk (2 connections, on CPU 0 with everything else), alternating
(a) Envoy without the filter and (b) Envoy with the ACP filter (cached valid token, allowed
1 KiB `tools/call`, content scanning on, audit records batched to the real collector), and the
filter with scanning off (bodies above `maxScanBytes: 1` pass unscanned) at 1 KiB and 64 KiB.
Prints requests/s, p50/p99 and Envoy CPU per request per round, the medians, b/a and the scan
cost; checks that every call made through the filter has its record stored by the collector
or counted as dropped (the bounded audit buffer overflows with 64 KiB inputs at full load).

Run under `taskset -c 0` (the Makefile does) so that only the two Envoys use CPU 1: the
load generator and the collector can then never be the bottleneck.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from idp import demo_idp  # noqa: E402
from stack import ENVOY_BIN, Ports, Stack, PlaceholderTemplate, free_port  # noqa: E402

ROUNDS = 3
DURATION_S = 10
WARMUP_S = 2
CONNECTIONS = 2
ENVOY_CPU = 1
UPSTREAM_TEMPLATE = ROOT / "envoy" / "bench-upstream.template.yaml"


SCANNING_OFF = {"maxScanBytes": 1, "oversized": "pass"}
# name, with the filter, scanning override, body size
CONFIGURATIONS = [
    ("plain", False, None, 1024),
    ("acp", True, None, 1024),
    ("acp-noscan", True, SCANNING_OFF, 1024),
    ("acp-64k", True, None, 65536),
    ("acp-64k-noscan", True, SCANNING_OFF, 65536),
]
# Ordinary business text with numbers, dates and amounts: what scanning sees most of the time.
FILLER = "Opportunity 0065e00000A1xQ1 Globex renewal closes 2026-03-27, amount 120000 USD, stage 4. "


def tools_call_body(size: int) -> str:
    """A `tools/call` of exactly `size` bytes."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "salesforce.query", "arguments": {"query": ""}}}
    pad = size - len(json.dumps(call, separators=(",", ":")))
    call["params"]["arguments"]["query"] = (FILLER * (pad // len(FILLER) + 1))[:pad]
    body = json.dumps(call, separators=(",", ":"))
    assert len(body) == size, len(body)
    return body


def wrk_script(path: Path, token: str, size: int) -> Path:
    lua = path / "post.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(tools_call_body(size))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Accept"] = "application/json, text/event-stream"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("RESULT %d %d %d %.1f %.1f\\n", summary.requests,\n'
        "    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,\n"
        "    summary.duration, latency:percentile(50), latency:percentile(99)))\n"
        "end\n")
    return lua


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, script: Path, seconds: int, envoy_pid: int) -> dict[str, float]:
    cpu_before = cpu_seconds(envoy_pid)
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    requests, errors, duration_us, p50_us, p99_us = re.search(r"RESULT (\d+) (\d+) (\d+) (\S+) (\S+)", out).groups()
    if int(errors):
        raise SystemExit(f"wrk saw {errors} errors or non-2xx answers:\n{out}")
    cpu_us = (cpu_seconds(envoy_pid) - cpu_before) * 1e6 / int(requests)
    return {"requests": int(requests), "rps": int(requests) / (int(duration_us) / 1e6),
            "p50_ms": float(p50_us) / 1000, "p99_ms": float(p99_us) / 1000, "cpu_us": cpu_us}


def upstream_command(run_dir: Path, port: int) -> list[str]:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "upstream.yaml"
    config.write_text(PlaceholderTemplate(UPSTREAM_TEMPLATE.read_text()).substitute(PORT=port, ADMIN_PORT=free_port()))
    return ["taskset", "-c", str(ENVOY_CPU), str(ENVOY_BIN), "-c", str(config), "--concurrency", "1",
            "--disable-hot-restart", "-l", "warn"]


def stored_records(stack: Stack, user: str) -> int:
    count, url = 0, f"{stack.export_url}?user={user}&format=json&limit=1000"
    while url:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {stack.api_key}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.load(response)
        count += len(page["records"])
        url = page["next"] and stack.collector_url + page["next"]
    return count


def measure(run_dir: Path, with_filter: bool, scanning: dict | None, size: int) -> tuple[dict[str, float], int | None]:
    ports = Ports.free()
    def config(default: dict) -> dict:
        # The demo's per-user rate limit would refuse most of the load: the benchmark has none.
        measured = {k: v for k, v in default.items() if k != "rateLimits"}
        return {**measured, "scanning": scanning} if scanning else measured
    with Stack(run_dir, ports, wasm_filter=with_filter, filter_config=config, concurrency=1, envoy_log_level="warn",
               upstream=upstream_command(run_dir, ports.mcp), envoy_cpu=ENVOY_CPU) as stack:
        user = f"bench-{time.time_ns()}"
        token = demo_idp.mint(iss=stack.issuer, sub=user)
        script = wrk_script(run_dir, token, size)
        envoy = stack.pid("envoy")
        wrk(stack.mcp_url, script, WARMUP_S, envoy)
        result = wrk(stack.mcp_url, script, DURATION_S, envoy)
        if not with_filter:
            return result, None
        counters = stack.stats("wasmcustom.acp.")
        calls = int(counters["wasmcustom.acp.calls_allowed"])
        dropped = int(counters["wasmcustom.acp.audit_records_dropped"])
        deadline = time.monotonic() + 60
        while (stored := stored_records(stack, user)) + dropped < calls and time.monotonic() < deadline:
            time.sleep(0.5)
            dropped = int(stack.stats("wasmcustom.acp.")["wasmcustom.acp.audit_records_dropped"])
        result["dropped"] = dropped
        return result, stored + dropped - calls


def main() -> int:
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in CONFIGURATIONS}
    with tempfile.TemporaryDirectory(prefix="acp-bench-") as tmp:
        for round_no in range(1, ROUNDS + 1):
            for name, with_filter, scanning, size in CONFIGURATIONS:
                result, missing = measure(Path(tmp) / f"{name}-{round_no}", with_filter, scanning, size)
                rows[name].append(result)
                note = "" if missing is None else f"  records stored + dropped - calls = {missing} (dropped {result['dropped']})"
                print(f"round {round_no} {name:14}  {result['rps']:8.0f} req/s  p50 {result['p50_ms']:.3f} ms"
                      f"  p99 {result['p99_ms']:.3f} ms  Envoy CPU {result['cpu_us']:.0f} us/req{note}", flush=True)
                if missing:
                    print("FAIL: a call has neither a stored nor a counted-as-dropped record", file=sys.stderr)
                    return 1
    med = {name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
           for name, runs in rows.items()}
    a, b = med["plain"], med["acp"]
    print(f"\nmedian of {ROUNDS} rounds, {DURATION_S} s each, wrk -c{CONNECTIONS}, Envoy and upstream on CPU {ENVOY_CPU}")
    labels = {"plain": "(a) Envoy, no filter, 1 KiB", "acp": "(b) Envoy + ACP filter, 1 KiB",
              "acp-noscan": "ACP, scanning off, 1 KiB", "acp-64k": "ACP, 64 KiB",
              "acp-64k-noscan": "ACP, scanning off, 64 KiB"}
    print("| configuration | requests/s | p50 ms | p99 ms | Envoy CPU per request |\n|---|---|---|---|---|")
    for name, m in med.items():
        print(f"| {labels[name]} | {m['rps']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['cpu_us']:.0f} us |")
    print(f"\nb/a throughput {b['rps'] / a['rps']:.3f} (target >= 0.85); "
          f"p99 added {b['p99_ms'] - a['p99_ms']:.3f} ms (target <= 0.3 ms); "
          f"filter CPU per request {b['cpu_us'] - a['cpu_us']:.0f} us")
    for size, on, off in (("1 KiB", "acp", "acp-noscan"), ("64 KiB", "acp-64k", "acp-64k-noscan")):
        print(f"scanning at {size}: throughput {med[on]['rps'] / med[off]['rps']:.3f} of scanning off "
              f"(target at 1 KiB >= 0.95), {med[on]['cpu_us'] - med[off]['cpu_us']:.0f} us CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
