"""`make bench`: what the ACP filter costs, against the same Envoy without it and against
Envoy's native `jwt_authn` + RBAC chain.

One run, same load: Envoy (`--concurrency 1`) in front of a fixed-answer upstream Envoy, both
pinned to CPU 1, driven by wrk (2 connections, on CPU 0 with everything else), alternating
- plain: Envoy without any filter;
- acp: the ACP filter (cached valid token, allowed 1 KiB `tools/call`, content scanning on,
  audit records batched to the real collector);
- native: Envoy's `jwt_authn` (JWT cache on) + RBAC (tenant and scope claims), the nearest
  native equivalent (it cannot see the tool name);
- the filter with scanning off (bodies above `maxScanBytes: 1` pass unscanned) at 1 KiB and
  64 KiB, and scanning on at 64 KiB;
- the floor under any Wasm filter (`tests/bench/floor_filter`): one that does nothing, one
  that only holds the request for its body and reads both bodies, as ACP must, one that also
  makes the host calls ACP makes, and one that further sends one record per call to the
  collector, batched as ACP batches them (the auditing floor); none parses, scans or decides.
Prints requests/s, p50/p99 and Envoy CPU per request per round, the medians and the targets;
checks that every call made through the filter has its record stored by the collector or
counted as dropped, and fails when any was dropped.

Open loop: each 1 KiB configuration also gets a run at one fixed arrival rate that all of them
sustain (`BENCH_RATE`, default 500/s) from oha (`-q`, `--latency-correction`, so a stalled
request does not hide the ones that should have started meanwhile): p50/p99/p99.9 and Envoy
CPU per request at equal load, and ACP's CPU per request above the holding floor, plain Envoy
and the native chain. `BENCH_ROUNDS` (default 5) and `BENCH_SECONDS` (default 10) shorten a
run, e.g. `BENCH_ROUNDS=1 BENCH_SECONDS=2` to check the harness.

First-seen token: after its cached-token run, the same acp (and native) Envoy gets a run in
which every request carries a token it has not seen (pre-minted, distinct `jti`); the Envoy CPU
per request above the cached run is the cost of verifying a new token. Memory: Envoy's RSS at
`--concurrency 2` after a short load, without a filter, with ACP, with the native chain and with
the do-nothing Wasm filter.

Run under `taskset -c 0` (the Makefile does) so that only the two Envoys use CPU 1: the
load generator and the collector can then never be the bottleneck. `--rounds N` and `--only
plain,acp,...` shorten a run while working on the filter.
"""

from __future__ import annotations

import argparse
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
from stack import ENVOY_BIN, AUDIENCE, Ports, Stack, PlaceholderTemplate, free_port, render_envoy  # noqa: E402

# BENCH_ROUNDS, BENCH_SECONDS and BENCH_RATE shorten a run (a smoke test of the harness) or
# change the open-loop rate; the defaults are those of the published figures.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DURATION_S = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP_S = min(2, DURATION_S)
# Open loop: one arrival rate every 1 KiB configuration sustains (ACP's saturation is about
# 1,000/s on the 2-vCPU VM), driven by oha with latency corrected for coordinated omission.
OPEN_RATE = int(os.environ.get("BENCH_RATE", "500"))
OPEN_CONNECTIONS = 16
FIRST_SEEN_S = 3
FIRST_SEEN_TOKENS = 8000
MEMORY_LOAD_S = 3
CONNECTIONS = 2
ENVOY_CPU = 1
UPSTREAM_TEMPLATE = ROOT / "envoy" / "bench-upstream.template.yaml"
NATIVE_TEMPLATE = ROOT / "envoy" / "bench-jwt-authn-rbac.template.yaml"
FLOOR_TEMPLATE = ROOT / "envoy" / "bench-floor.template.yaml"
FLOOR_WASM = ROOT / "target" / "wasm32-wasip1" / "wasm" / "acp_bench_floor.wasm"
# Tokens are minted once for the run with this issuer; both chains are configured to expect it.
ISSUER = "https://idp.bench.example"
TARGETS = {"vs_plain": 0.90, "vs_native": 0.95, "p99_added_ms": 0.2, "first_seen_ms": 0.6,
           # ACP's own cost: Envoy CPU over the holding floor and p99 over plain at the open-loop
           # rate, throughput against the holding floor, scanning's cost at 64 KiB, memory.
           "over_floor_us": 15, "vs_floor_hold": 0.95, "open_p99_added_ms": 0.3, "scan_64k": 0.75,
           "memory_added_mib": 35}

# The open-loop runs use the 1 KiB configurations (the 64 KiB ones saturate below OPEN_RATE).
OPEN_LOOP_SIZE = 1024
SCANNING_OFF = {"maxScanBytes": 1, "oversized": "pass"}
# name: (chain, scanning override, body size)
CONFIGURATIONS = {
    "plain": ("plain", None, 1024),
    "acp": ("acp", None, 1024),
    "native": ("native", None, 1024),
    "acp-noscan": ("acp", SCANNING_OFF, 1024),
    "acp-64k": ("acp", None, 65536),
    "acp-64k-noscan": ("acp", SCANNING_OFF, 65536),
    "floor": ("floor-passthrough", None, 1024),
    "floor-hold": ("floor-hold", None, 1024),
    "floor-calls": ("floor-calls", None, 1024),
    "floor-audit": ("floor-audit", None, 1024),
}
LABELS = {"plain": "Envoy, no filter, 1 KiB", "acp": "Envoy + ACP filter, 1 KiB",
          "native": "Envoy + jwt_authn + RBAC, 1 KiB", "acp-noscan": "ACP, scanning off, 1 KiB",
          "acp-64k": "ACP, 64 KiB", "acp-64k-noscan": "ACP, scanning off, 64 KiB",
          "floor": "Wasm filter doing nothing, 1 KiB", "floor-hold": "Wasm filter holding and reading both bodies, 1 KiB",
          "floor-calls": "Wasm filter holding, reading, making ACP's host calls, 1 KiB",
          "floor-audit": "Wasm filter holding, reading, host calls, a record per call, 1 KiB"}
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


def wrk_script(path: Path, tokens: list[str], size: int) -> Path:
    """A wrk script posting `tools/call`s of `size` bytes, cycling through `tokens`."""
    path.write_text(
        f"tokens = {{{','.join(json.dumps(t) for t in tokens)}}}\n"
        f"body = {json.dumps(tools_call_body(size))}\n"
        "sent = 0\n"
        "request = function()\n"
        "  sent = sent + 1\n"
        '  return wrk.format("POST", nil, {["Content-Type"] = "application/json",\n'
        '    ["Accept"] = "application/json, text/event-stream",\n'
        '    ["Authorization"] = "Bearer " .. tokens[(sent - 1) % #tokens + 1]}, body)\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("RESULT %d %d %d %.1f %.1f\\n", summary.requests,\n'
        "    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,\n"
        "    summary.duration, latency:percentile(50), latency:percentile(99)))\n"
        "end\n")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


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


def oha(url: str, token: str, body: Path, seconds: int, envoy_pid: int) -> dict[str, float]:
    """`seconds` of open-loop load at OPEN_RATE requests/s (oha `-q`, latency measured from
    each request's scheduled start: `--latency-correction`); Envoy CPU per request from /proc."""
    cpu_before = cpu_seconds(envoy_pid)
    out = subprocess.run(
        ["oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-q", str(OPEN_RATE),
         "--latency-correction", "--wait-ongoing-requests-after-deadline", "-c", str(OPEN_CONNECTIONS), "-m", "POST",
         "-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream",
         "-H", f"Authorization: Bearer {token}", "-D", str(body), url],
        capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    codes = result["statusCodeDistribution"]
    requests = sum(codes.values())
    if set(codes) - {"200"} or result.get("errorDistribution"):
        raise SystemExit(f"oha saw errors or non-200 answers: {codes} {result.get('errorDistribution')}")
    latency = result["latencyPercentiles"]
    return {"requests": requests, "rps": result["summary"]["requestsPerSec"],
            "p50_ms": latency["p50"] * 1000, "p99_ms": latency["p99"] * 1000, "p999_ms": latency["p99.9"] * 1000,
            "cpu_us": (cpu_seconds(envoy_pid) - cpu_before) * 1e6 / requests}


def upstream_command(run_dir: Path, port: int) -> list[str]:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "upstream.yaml"
    config.write_text(PlaceholderTemplate(UPSTREAM_TEMPLATE.read_text()).substitute(PORT=port, ADMIN_PORT=free_port()))
    return ["taskset", "-c", str(ENVOY_CPU), str(ENVOY_BIN), "-c", str(config), "--concurrency", "1",
            "--disable-hot-restart", "-l", "warn"]


class BenchStack(Stack):
    """The demo stack with the benchmark's chain in Envoy: none, the ACP filter, or native."""

    ACCESS_LOG = False  # every chain measured without one, as before the demo wrote one

    def __init__(self, run_dir: Path, chain: str, scanning: dict | None, concurrency: int = 1):
        self.chain = chain
        self.scanning = scanning
        ports = Ports.free()
        super().__init__(run_dir, ports, wasm_filter=chain == "acp", filter_config=self.acp_config,
                         concurrency=concurrency, envoy_log_level="warn",
                         upstream=upstream_command(run_dir, ports.mcp), envoy_cpu=ENVOY_CPU)

    def acp_config(self, default: dict) -> dict:
        # The demo's per-user rate limit would refuse most of the load: the benchmark has none.
        measured = {k: v for k, v in default.items() if k != "rateLimits"}
        measured["identity"] = {**measured["identity"], "issuer": ISSUER}
        return {**measured, "scanning": self.scanning} if self.scanning else measured

    def envoy_config(self) -> str:
        if self.chain == "native":
            native = PlaceholderTemplate(NATIVE_TEMPLATE.read_text()).substitute(
                ISSUER=ISSUER, AUDIENCE=AUDIENCE, TENANT=self.tenant, JWKS=json.dumps(demo_idp.jwks()))
            return render_envoy(self.ports, native)
        if self.chain.startswith("floor-"):
            mode = self.chain.removeprefix("floor-")
            if mode == "audit":
                mode = f"audit\n{self.ingest_token}\n{json.dumps(floor_record(self.tenant), separators=(',', ':'))}"
            floor = PlaceholderTemplate(FLOOR_TEMPLATE.read_text()).substitute(
                WASM_PATH=FLOOR_WASM, CONFIGURATION=json.dumps(mode))
            return render_envoy(self.ports, floor)
        return super().envoy_config()


def floor_record(tenant: str) -> dict:
    """The record the auditing floor sends for each call, `{ID}` where its id goes: the fields
    ACP writes for the benchmark's call, the 1 KiB input whole, a content scan with no finding."""
    call = json.loads(tools_call_body(OPEN_LOOP_SIZE))
    return {"id": "{ID}", "event": "tool.call", "timestamp": "2026-12-05T10:00:00.000Z", "sub": "bench-floor",
            "email": None, "tool": call["params"]["name"], "input": call["params"]["arguments"],
            "scopes": ["salesforce:read"], "scopeRequired": ["salesforce:read"], "scopeResult": "pass",
            "contentScan": {"piiDetected": False, "riskScore": 0.0, "inputScanned": True, "outputScanned": True,
                            "findings": []},
            "result": "success", "reason": None, "latencyMs": 0.8, "tenantId": tenant, "clientType": None,
            "clientId": None, "delegationChain": None, "sessionId": None,
            "requestId": "0d1f6a2e-8c57-4b8e-9d57-2f8f0c7f1a3b", "traceId": None, "spanId": None,
            "sourceAddress": "127.0.0.1:40000", "userAgent": None, "protocolVersion": None, "inputSummary": None}


def stored_records(stack: Stack, user: str) -> int:
    count, url = 0, f"{stack.export_url}?user={user}&format=json&limit=1000"
    while url:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {stack.api_key}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.load(response)
        count += len(page["records"])
        url = page["next"] and stack.collector_url + page["next"]
    return count


def missing_records(stack: Stack, user: str) -> tuple[int, int]:
    """(records stored + dropped - calls made, dropped) once the outbox has drained (60 s at most)."""
    # Requests still in flight when wrk stopped are counted once Envoy has finished them.
    calls = -1
    while calls != (calls := int(stack.stats("wasmcustom.acp.")["wasmcustom.acp.calls_allowed"])):
        time.sleep(0.5)
    counters = stack.stats("wasmcustom.acp.")
    dropped = int(counters["wasmcustom.acp.audit_records_dropped"])
    deadline = time.monotonic() + 60
    while (stored := stored_records(stack, user)) + dropped < calls and time.monotonic() < deadline:
        time.sleep(0.5)
        dropped = int(stack.stats("wasmcustom.acp.")["wasmcustom.acp.audit_records_dropped"])
    return stored + dropped - calls, dropped


def measure(run_dir: Path, name: str, fresh_tokens: list[str]) -> dict[str, float]:
    chain, scanning, size = CONFIGURATIONS[name]
    with BenchStack(run_dir, chain, scanning) as stack:
        user = f"bench-{time.time_ns()}"
        token = demo_idp.mint(key=demo_idp.demo_key(), iss=ISSUER, aud=AUDIENCE, sub=user)
        script = wrk_script(run_dir / "post.lua", [token], size)
        envoy = stack.pid("envoy")
        wrk(stack.mcp_url, script, WARMUP_S, envoy)
        result = wrk(stack.mcp_url, script, DURATION_S, envoy)
        if size == OPEN_LOOP_SIZE:
            body = run_dir / "body.json"
            body.write_text(tools_call_body(size))
            result["open"] = oha(stack.mcp_url, token, body, DURATION_S, envoy)
        if chain == "acp":
            result["missing"], result["dropped"] = missing_records(stack, user)
        if name in ("acp", "native"):
            fresh = wrk(stack.mcp_url, wrk_script(run_dir / "fresh.lua", fresh_tokens, size), FIRST_SEEN_S, envoy)
            result["first_seen_us"] = fresh["cpu_us"] - result["cpu_us"]
            result["fresh_requests"] = fresh["requests"]
        return result


def memory(run_dir: Path, chain: str) -> float:
    """Envoy's RSS (MiB) at `--concurrency 2` after a short load with one cached token."""
    with BenchStack(run_dir, chain, None, concurrency=2) as stack:
        token = demo_idp.mint(key=demo_idp.demo_key(), iss=ISSUER, aud=AUDIENCE, sub="bench-memory")
        wrk(stack.mcp_url, wrk_script(run_dir / "post.lua", [token], 1024), MEMORY_LOAD_S, stack.pid("envoy"))
        return rss_mib(stack.pid("envoy"))


def verdict(value: float, target: float, at_most: bool = False) -> str:
    met = value <= target if at_most else value >= target
    return f"{'met' if met else 'MISSED'} (target {'<=' if at_most else '>='} {target})"


def report(med: dict[str, dict[str, float]], rss: dict[str, float], rounds: int, load: tuple[str, str]) -> None:
    print(f"\nmedian of {rounds} round(s), {DURATION_S} s each, wrk -c{CONNECTIONS}, Envoy and upstream on CPU {ENVOY_CPU}; "
          f"load average at start {load[0]}, at end {load[1]}")
    print("| configuration | requests/s | vs plain | p50 ms | p99 ms | Envoy CPU per request |\n|---|---|---|---|---|---|")
    for name, m in med.items():
        ratio = f"{m['rps'] / med['plain']['rps']:.2f}" if "plain" in med else "-"
        print(f"| {LABELS[name]} | {m['rps']:.0f} | {ratio} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['cpu_us']:.0f} us |")
    print()
    if {"plain", "acp"} <= med.keys():
        a, b = med["plain"], med["acp"]
        print(f"ACP / plain throughput   {b['rps'] / a['rps']:.3f}  {verdict(b['rps'] / a['rps'], TARGETS['vs_plain'])}")
        # When Envoy's CPU is the bottleneck, throughput goes as the inverse of its CPU per request.
        print(f"ACP / plain by Envoy CPU per request  {a['cpu_us'] / b['cpu_us']:.3f}")
        print(f"p99 added by ACP         {b['p99_ms'] - a['p99_ms']:.3f} ms  "
              f"{verdict(b['p99_ms'] - a['p99_ms'], TARGETS['p99_added_ms'], at_most=True)}")
        print(f"ACP Envoy CPU per request over plain  {b['cpu_us'] - a['cpu_us']:.0f} us")
    if {"plain", "native"} <= med.keys():
        print(f"native Envoy CPU per request over plain  {med['native']['cpu_us'] - med['plain']['cpu_us']:.0f} us")
    for floor in ("floor", "floor-hold", "floor-calls", "floor-audit"):
        if {"plain", floor} <= med.keys():
            print(f"{LABELS[floor]}: {med[floor]['rps'] / med['plain']['rps']:.3f} of plain, "
                  f"{med[floor]['cpu_us'] - med['plain']['cpu_us']:.0f} us CPU per request over plain")
    if {"floor-hold", "acp"} <= med.keys():
        r = med["acp"]["rps"] / med["floor-hold"]["rps"]
        print(f"ACP Envoy CPU per request over the holding floor  {med['acp']['cpu_us'] - med['floor-hold']['cpu_us']:.0f} us")
        print(f"ACP / holding floor throughput  {r:.3f}  {verdict(r, TARGETS['vs_floor_hold'])}")
    report_ladder(med, throughput=True)
    if {"acp", "native"} <= med.keys():
        r = med["acp"]["rps"] / med["native"]["rps"]
        print(f"ACP / jwt_authn+RBAC     {r:.3f}  {verdict(r, TARGETS['vs_native'])}")
    for name in ("acp", "native"):
        if name in med:
            ms = med[name]["first_seen_us"] / 1000
            target = f"  {verdict(ms, TARGETS['first_seen_ms'], at_most=True)}" if name == "acp" else ""
            print(f"first-seen token, {name:6}  {ms:.2f} ms Envoy CPU{target}")
    for size, on, off in (("1 KiB", "acp", "acp-noscan"), ("64 KiB", "acp-64k", "acp-64k-noscan")):
        if {on, off} <= med.keys():
            r = med[on]["rps"] / med[off]["rps"]
            target = f"  {verdict(r, TARGETS['scan_64k'])}" if size == "64 KiB" else ""
            print(f"scanning at {size}: throughput {r:.3f} of scanning off, "
                  f"{med[on]['cpu_us'] - med[off]['cpu_us']:.0f} us CPU per request{target}")
    if rss:
        line = ", ".join(f"{chain} {mib:.1f} MiB" for chain, mib in rss.items())
        print(f"Envoy RSS at --concurrency 2: {line}"
              + (f"; the filter adds {rss['acp'] - rss['plain']:.1f} MiB "
                 f"{verdict(rss['acp'] - rss['plain'], TARGETS['memory_added_mib'], at_most=True)}"
                 if {"plain", "acp"} <= rss.keys() else "")
              + (f", a Wasm filter doing nothing {rss['floor'] - rss['plain']:.1f} MiB" if {"plain", "floor"} <= rss.keys() else "")
              + (f", the auditing floor {rss['floor-audit'] - rss['plain']:.1f} MiB"
                 if {"plain", "floor-audit"} <= rss.keys() else ""))


# From the holding floor to ACP, one step at a time: what each step adds to Envoy's work.
LADDER = ("floor-hold", "floor-calls", "floor-audit", "acp")


def report_ladder(med: dict[str, dict[str, float]], throughput: bool) -> None:
    steps = [name for name in LADDER if name in med]
    for below, above in zip(steps, steps[1:]):
        ratio = f", throughput {med[above]['rps'] / med[below]['rps']:.3f} of it" if throughput else ""
        print(f"step: {LABELS[above]}: Envoy CPU per request {med[above]['cpu_us'] - med[below]['cpu_us']:+.0f} us "
              f"over {LABELS[below]}{ratio}")


def report_open(med: dict[str, dict[str, float]], dropped: dict[str, int], rounds: int) -> None:
    if dropped:
        print("\nrecords dropped (saturation and open loop): "
              + ", ".join(f"{name} {n}{'' if n == 0 else ' FAIL'}" for name, n in dropped.items()))
    if not med:
        return
    print(f"\nopen loop at {OPEN_RATE} requests/s (oha -q {OPEN_RATE} --latency-correction -c {OPEN_CONNECTIONS}), "
          f"median of {rounds} round(s), {DURATION_S} s each")
    print("| configuration | requests/s | p50 ms | p99 ms | p99.9 ms | Envoy CPU per request |\n|---|---|---|---|---|---|")
    for name, m in med.items():
        print(f"| {LABELS[name]} | {m['rps']:.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['p999_ms']:.3f} "
              f"| {m['cpu_us']:.0f} us |")
    print()
    for base in ("floor-hold", "plain", "native"):
        for name in ("acp", "acp-noscan"):
            if {base, name} <= med.keys():
                a, b = med[base]["cpu_us"], med[name]["cpu_us"]
                target = (f"  {verdict(b - a, TARGETS['over_floor_us'], at_most=True)}"
                          if (base, name) == ("floor-hold", "acp") else "")
                print(f"{LABELS[name]}: Envoy CPU per request {b - a:+.0f} us over {LABELS[base]} "
                      f"(ratio {b / a:.2f}){target}")
    report_ladder(med, throughput=False)
    if {"plain", "acp"} <= med.keys():
        added = med["acp"]["p99_ms"] - med["plain"]["p99_ms"]
        print(f"p99 added by ACP at {OPEN_RATE} requests/s  {added:.3f} ms  "
              f"{verdict(added, TARGETS['open_p99_added_ms'], at_most=True)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--only", default=",".join(CONFIGURATIONS), help="comma-separated configurations")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - CONFIGURATIONS.keys()
    if unknown:
        parser.error(f"unknown configuration(s) {sorted(unknown)}; known: {', '.join(CONFIGURATIONS)}")
    load_start = os.getloadavg()
    key = demo_idp.demo_key()
    fresh_tokens = [demo_idp.mint(key=key, iss=ISSUER, aud=AUDIENCE, sub="bench-first-seen", jti=str(i))
                    for i in range(FIRST_SEEN_TOKENS if {"acp", "native"} & set(names) else 0)]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="acp-bench-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for name in names:
                result = measure(Path(tmp) / f"{name}-{round_no}", name, fresh_tokens)
                rows[name].append(result)
                note = ""
                if "missing" in result:
                    note += f"  records stored + dropped - calls = {result['missing']} (dropped {result['dropped']})"
                if "first_seen_us" in result:
                    note += f"  first-seen token {result['first_seen_us']:.0f} us ({result['fresh_requests']} new tokens)"
                    if result["fresh_requests"] > len(fresh_tokens):
                        note += " [tokens reused: understated]"
                if "open" in result:
                    o = result["open"]
                    note += (f"  open loop {o['rps']:.0f} req/s p50 {o['p50_ms']:.3f} p99 {o['p99_ms']:.3f} "
                             f"p99.9 {o['p999_ms']:.3f} ms, Envoy CPU {o['cpu_us']:.0f} us/req")
                print(f"round {round_no} {name:14}  {result['rps']:8.0f} req/s  p50 {result['p50_ms']:.3f} ms"
                      f"  p99 {result['p99_ms']:.3f} ms  Envoy CPU {result['cpu_us']:.0f} us/req{note}", flush=True)
                if result.get("missing"):
                    print("FAIL: a call has neither a stored nor a counted-as-dropped record", file=sys.stderr)
                    return 1
        rss = {name: memory(Path(tmp) / f"memory-{name}", CONFIGURATIONS[name][0])
               for name in ("plain", "acp", "native", "floor", "floor-audit") if name in names}
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us", "first_seen_us")
    med = {name: {k: statistics.median(r[k] for r in runs) for k in keys if k in runs[0]} for name, runs in rows.items()}
    open_keys = ("rps", "p50_ms", "p99_ms", "p999_ms", "cpu_us")
    open_med = {name: {k: statistics.median(r["open"][k] for r in runs) for k in open_keys}
                for name, runs in rows.items() if "open" in runs[0]}
    dropped = {name: sum(r["dropped"] for r in runs) for name, runs in rows.items() if "dropped" in runs[0]}
    load_end = os.getloadavg()
    report(med, rss, args.rounds, (f"{load_start[0]:.1f}", f"{load_end[0]:.1f}"))
    report_open(open_med, dropped, args.rounds)
    return 1 if any(dropped.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
