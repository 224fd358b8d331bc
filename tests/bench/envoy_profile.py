"""Where the measured Envoy spends its CPU per request, by part: Envoy's own code (with V8's
runtime, which is linked into it), the module's code as V8 compiled it (`[JIT]`), the kernel
and libc. Compares configurations of `run.py` (default: the holding floor and ACP), alternating
them over `--rounds`.

Each configuration runs on the benchmark's stack (same pinning, wrk load, 1 KiB calls with one
cached token) while `perf record -e cpu-clock` samples the Envoy process for 8 s (software
clock sampling: this VM has no hardware counters; Envoy's binary is stripped, so the split is
by shared object, not by function). Needs Debian's `linux-perf`. Run:
`taskset -c 0 .venv/bin/python tests/bench/envoy_profile.py [--rounds N] [--only floor-hold,acp]`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import run
from run import AUDIENCE, CONFIGURATIONS, ISSUER, BenchStack, demo_idp, wrk, wrk_script

SAMPLE_S = 8


def profile(run_dir: Path, name: str) -> dict[str, float]:
    """Envoy CPU microseconds per request by shared object, under wrk load."""
    chain, scanning, size = CONFIGURATIONS[name]
    with BenchStack(run_dir, chain, scanning) as stack:
        token = demo_idp.mint(key=demo_idp.demo_key(), iss=ISSUER, aud=AUDIENCE, sub=f"profile-{time.time_ns()}")
        script = wrk_script(run_dir / "post.lua", [token], size)
        pid = stack.pid("envoy")
        wrk(stack.mcp_url, script, run.WARMUP_S, pid)
        load: dict[str, float] = {}
        loader = threading.Thread(target=lambda: load.update(wrk(stack.mcp_url, script, SAMPLE_S + 2, pid)))
        loader.start()
        time.sleep(1)
        data = run_dir / "perf.data"
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-p", str(pid), "-o", str(data),
                        "--", "sleep", str(SAMPLE_S)], check=True)
        loader.join()
    report = subprocess.run(["perf", "report", "-i", str(data), "--sort", "dso", "--stdio"],
                            capture_output=True, text=True, check=True).stdout
    parts = {"cpu_us": load["cpu_us"]}
    for share, dso in re.findall(r"^\s+([\d.]+)%\s+(\S+)", report, re.M):
        part = "[JIT]" if dso == "[JIT]" else dso
        parts[part] = parts.get(part, 0.0) + float(share) / 100 * load["cpu_us"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="floor-hold,acp")
    args = parser.parse_args()
    names = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="acp-envoy-profile-") as tmp:
        for round_no in range(1, args.rounds + 1):
            for name in names:
                parts = profile(Path(tmp) / f"{name}-{round_no}", name)
                split = ", ".join(f"{part} {us:.0f}" for part, us in parts.items() if part != "cpu_us" and us >= 1)
                print(f"round {round_no} {name:12} Envoy CPU {parts['cpu_us']:.0f} us/req: {split}", flush=True)


if __name__ == "__main__":
    main()
