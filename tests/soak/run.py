"""`make soak`: a fixed rate of tool calls through the whole stack (Envoy with the ACP filter,
the demo MCP server, the real collector) on loopback, for `SOAK_SECONDS` (default 600) at
`SOAK_RATE` calls per second (default 50). Then it checks that the collector stored exactly one
record per call made, and reports per minute: calls, p50/p99/max latency, and the resident
memory (RSS) of Envoy and of the collector.

The load is open-loop: call `i` is due at `start + i / rate` whatever happened to the calls
before it, and its latency is measured from that due time, so a stall shows up as latency
instead of silently lowering the rate. Each call carries a distinct input; the records are
counted through the export API. Exit status 1 when a record is missing or extra, a call failed,
or the filter dropped a record.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from idp import demo_idp  # noqa: E402
from stack import Stack  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
RATE = float(os.environ.get("SOAK_RATE", "50"))
CLIENTS = 16
RUN_DIR = ROOT / ".run" / "soak"
SUB = "soak-user"
ACP_STATS = "wasmcustom.acp."


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Soak:
    """Open-loop load: `CLIENTS` threads take the next due call, wait for its time, send it on
    their own keep-alive connection and record (due minute, latency from due time, status)."""

    def __init__(self, stack: Stack, token: str, total: int):
        self.stack, self.token, self.total = stack, token, total
        self.next = 0
        self.lock = threading.Lock()
        self.results: list[tuple[int, float, int]] = []
        self.start = 0.0

    def run(self) -> None:
        self.start = time.monotonic() + 0.5
        threads = [threading.Thread(target=self.client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.ports.envoy, timeout=30)
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Authorization": f"Bearer {self.token}"}
        while True:
            with self.lock:
                i = self.next
                self.next += 1
            if i >= self.total:
                conn.close()
                return
            due = self.start + i / RATE
            time.sleep(max(0.0, due - time.monotonic()))
            body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                               "params": {"name": "salesforce.query", "arguments": {"query": f"soak call {i}"}}})
            try:
                conn.request("POST", "/mcp", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = 0
            latency_ms = (time.monotonic() - due) * 1000
            with self.lock:
                self.results.append((int((due - self.start) // 60), latency_ms, status))


def stored_records(stack: Stack) -> Counter[str]:
    """How many stored records there are of each call (its input), read as one NDJSON export."""
    query = urllib.parse.urlencode({"user": SUB, "format": "ndjson"})
    path = urllib.parse.urlsplit(stack.export_url).path + "?" + query
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports.collector, timeout=120)
    conn.request("GET", path, headers={"Authorization": f"Bearer {stack.api_key}"})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    assert response.status == 200, text[:500]
    return Counter(json.loads(line)["input"]["query"] for line in text.splitlines() if line)


def acp_counters(stack: Stack) -> dict[str, int]:
    return {k.removeprefix(ACP_STATS): v for k, v in stack.stats(ACP_STATS).items()}


def main() -> int:
    total = int(SECONDS * RATE)
    shutil.rmtree(RUN_DIR, ignore_errors=True)

    def no_rate_limit(cfg: dict) -> dict:
        cfg.pop("rateLimits", None)
        return cfg

    with Stack(RUN_DIR, filter_config=no_rate_limit) as stack:
        token = demo_idp.mint(iss=stack.issuer, sub=SUB, email=f"{SUB}@acme.com", scope="salesforce:read",
                              exp=int(time.time()) + SECONDS + 3600)
        pids = {"envoy": stack.pid("envoy"), "collector": stack.pid("collector")}
        memory: dict[int, dict[str, float]] = {}
        done = threading.Event()

        def sample_memory() -> None:
            while True:
                minute = int((time.monotonic() - soak.start) // 60) if soak.start else 0
                memory[max(0, minute)] = {name: rss_mib(pid) for name, pid in pids.items()}
                if done.wait(5):
                    return

        print(f"soak: {total} tool calls at {RATE:g}/s for {SECONDS} s through {stack.mcp_url} "
              f"({CLIENTS} clients, open loop); run dir {RUN_DIR.relative_to(ROOT)}", flush=True)
        soak = Soak(stack, token, total)
        start_rss = {name: rss_mib(pid) for name, pid in pids.items()}
        sampler = threading.Thread(target=sample_memory)
        sampler.start()
        soak.run()
        done.set()
        sampler.join()
        end_rss = {name: rss_mib(pid) for name, pid in pids.items()}

        by_minute: dict[int, list[float]] = defaultdict(list)
        for minute, latency, _ in soak.results:
            by_minute[minute].append(latency)
        print("\nminute  calls  p50 ms  p99 ms  max ms  Envoy RSS MiB  collector RSS MiB")
        for minute in sorted(by_minute):
            lat = by_minute[minute]
            rss = memory.get(minute, {})
            print(f"{minute:>6}  {len(lat):>5}  {statistics.median(lat):>6.1f}  {percentile(lat, 99):>6.1f}  "
                  f"{max(lat):>6.1f}  {rss.get('envoy', float('nan')):>13.1f}  {rss.get('collector', float('nan')):>17.1f}")
        statuses = Counter(status for _, _, status in soak.results)

        deadline = time.monotonic() + 120
        while (counters := acp_counters(stack))["audit_records_buffered"] and time.monotonic() < deadline:
            time.sleep(0.5)
        stored = stored_records(stack)
        made = Counter(f"soak call {i}" for i in range(total))
        missing, extra = made - stored, stored - made

    print(f"\ncalls made {total}, answered {dict(statuses)}; records stored {sum(stored.values())} "
          f"(missing {sum(missing.values())}, duplicated or unexpected {sum(extra.values())})")
    print(f"filter counters: queued {counters['audit_records_queued']}, sent {counters['audit_records_sent']}, "
          f"retried {counters['audit_records_retried']}, dropped {counters['audit_records_dropped']}, "
          f"buffered {counters['audit_records_buffered']}")
    print("RSS MiB start -> end: " + ", ".join(f"{n} {start_rss[n]:.1f} -> {end_rss[n]:.1f}" for n in pids))
    ok = not missing and not extra and statuses == {200: total} and counters["audit_records_dropped"] == 0
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
