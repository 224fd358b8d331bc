"""`make bench`: collector ingest on PostgreSQL, beside SQLite, against the targets.

Run under `tests/pg/with-postgres.sh` with `ACP_PG_DURABLE=1` (the Makefile does): a throw-away
PostgreSQL server on this machine, fsync and synchronous commit on, so a record counts once its
commit is durable. Each run is the ingest bench (`cargo bench -p acp-collector --bench ingest`,
release collectors posting batches of 100 `tool.call` records over HTTP for `--seconds`) on a
database of its own, in one of these shapes:

- pg 1x100: one collector, records spread over 100 tenants;
- pg 2x100: two collector processes on the same database, the clients split between them;
- pg 1x1 and pg 2x1: the same with one hot tenant (every record in one tree);
- sqlite x1 and sqlite x100: the SQLite file, for comparison;
- a shape with `/N` (pg-2x100/32) runs with N clients instead of `--clients`: two replicas
  over 100 tenants take turns on the same tenants' locks, so their throughput depends on how
  many batches wait to share each commit (a mesh of many sidecars posts many at once).

Shapes alternate within each of `--rounds` rounds, so that other load on the machine spreads
over all of them; the medians are compared with the targets (PostgreSQL: 20,000 durable
records/s with one replica, 30,000 with two, on both workloads). After each run `verify` checks
the whole store (its records/s are printed), and the storage per record is measured:
`pg_total_relation_size('records')` (table, TOAST and indexes) or the SQLite file, over the
records stored. The load average before each run is printed, as the figures depend on it.

`--only pg-1x1,sqlite-x1` limits the shapes; `--clients` (of shapes without `/N`) and
`--seconds` tune the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys

SHAPES = {
    "pg-1x100": ("pg", 1, 100),
    "pg-2x100": ("pg", 2, 100),
    "pg-1x1": ("pg", 1, 1),
    "pg-2x1": ("pg", 2, 1),
    "sqlite-x100": ("sqlite", 1, 100),
    "sqlite-x1": ("sqlite", 1, 1),
    "pg-2x100/32": ("pg", 2, 100),
}
TARGETS = {1: 20_000, 2: 30_000}
BUILD = ["cargo", "bench", "--locked", "-p", "acp-collector", "--bench", "ingest", "--no-run",
         "--message-format=json"]


def built_bench() -> list[str]:
    """Builds the ingest bench once; the command that runs it (as `cargo bench` would)."""
    out = subprocess.run(BUILD, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("target", {}).get("name") == "ingest" and message.get("executable"):
            return [message["executable"], "--bench"]
    sys.exit("cargo built no ingest bench")


def psql(server: str, sql: str) -> str:
    out = subprocess.run(
        ["psql", server, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


TICK = os.sysconf("SC_CLK_TCK")


def postmaster_cpu(server: str) -> float:
    """CPU seconds of the PostgreSQL cluster so far: the postmaster with its ended backends,
    and every live backend (the server is on this machine)."""
    backend = psql(server, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    with open(f"/proc/{backend}/stat") as f:  # a child of the postmaster
        postmaster = int(f.read().rsplit(")", 1)[1].split()[1])

    def fields(pid: int) -> list[int]:
        with open(f"/proc/{pid}/stat") as f:
            return [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]

    total = sum(fields(postmaster))
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read().rsplit(")", 1)[1].split()
                if int(stat[1]) == postmaster:
                    total += int(stat[11]) + int(stat[12])
            except (OSError, ValueError):
                pass
    return total / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def database_url(server: str, name: str) -> str:
    base, _, query = server.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


def run(bench: list[str], shape: str, n: int, args: argparse.Namespace) -> dict:
    store, replicas, tenants = SHAPES[shape]
    clients = int(shape.partition("/")[2] or args.clients)
    env = dict(
        os.environ,
        ACP_BENCH_CLIENTS=str(clients),
        ACP_BENCH_SECONDS=str(args.seconds),
        ACP_BENCH_BATCH="100",
        ACP_BENCH_EXPORT_RECORDS="0",
        ACP_BENCH_TENANTS=str(tenants),
        ACP_BENCH_REPLICAS=str(replicas),
    )
    server = os.environ.get("ACP_TEST_POSTGRES_URL", "")
    name = f"acp_bench_{n}"
    if store == "pg":
        psql(server, f"DROP DATABASE IF EXISTS {name}")
        psql(server, f"CREATE DATABASE {name}")
        env["ACP_BENCH_DATABASE_URL"] = database_url(server, name)
    load = os.getloadavg()[0]
    server_cpu = postmaster_cpu(server) if store == "pg" else 0.0
    own_cpu = children_cpu()
    out = subprocess.run(bench, env=env, capture_output=True, text=True)
    own_cpu = children_cpu() - own_cpu
    server_cpu = (postmaster_cpu(server) - server_cpu) if store == "pg" else 0.0
    if out.returncode != 0:
        sys.exit(f"{shape}: the bench failed:\n{out.stdout}\n{out.stderr}")
    ingest = re.search(r"ingest: (\d+) records .* = (\d+) durable records/s", out.stdout)
    latency = re.search(r"p50 ([^,]+), p99 ([^;]+);", out.stdout)
    verify = re.search(r"verify: verified (\d+) records.*\((\d+) records/s\)", out.stdout)
    if not (ingest and verify and latency):
        sys.exit(f"{shape}: unexpected bench output:\n{out.stdout}")
    result = {
        "shape": shape,
        "load": load,
        "rate": int(ingest[2]),
        "p50": latency[1],
        "p99": latency[2],
        "verified": int(verify[1]),
        "verify_rate": int(verify[2]),
    }
    if store == "pg":
        url = env["ACP_BENCH_DATABASE_URL"]
        result["bytes"] = int(psql(url, "SELECT pg_total_relation_size('records')"))
        psql(server, f"DROP DATABASE {name}")
    else:
        size = re.search(r"db (\d+) MiB", out.stdout)
        result["bytes"] = int(size[1]) << 20 if size else 0
    result["per_record"] = result["bytes"] / max(result["verified"], 1)
    # CPU per record over the whole run (ingest, export, verify, start and stop): collectors
    # and clients (children of this script), and the PostgreSQL server.
    result["cpu_us"] = own_cpu / result["verified"] * 1e6
    result["server_us"] = server_cpu / result["verified"] * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--only", default=",".join(SHAPES))
    args = parser.parse_args()
    shapes = [s for s in args.only.split(",") if s]
    for shape in shapes:
        if shape not in SHAPES:
            sys.exit(f"--only: unknown shape {shape!r} (one of {', '.join(SHAPES)})")
    if any(SHAPES[s][0] == "pg" for s in shapes) and not os.environ.get("ACP_TEST_POSTGRES_URL"):
        sys.exit("PostgreSQL shapes need ACP_TEST_POSTGRES_URL (run under tests/pg/with-postgres.sh)")
    bench = built_bench()
    results: dict[str, list[dict]] = {s: [] for s in shapes}
    n = 0
    for round_ in range(args.rounds):
        # Each round starts with another shape, so that none always runs first.
        order = shapes[round_ % len(shapes) :] + shapes[: round_ % len(shapes)]
        for shape in order:
            r = run(bench, shape, n, args)
            n += 1
            results[shape].append(r)
            print(
                f"round {round_ + 1} {shape:12} {r['rate']:>7,} durable records/s "
                f"(batch p50 {r['p50']}, p99 {r['p99']}; load {r['load']:.2f}); "
                f"verify {r['verified']:,} records at {r['verify_rate']:,}/s; "
                f"{r['per_record']:.0f} bytes/record; CPU per record {r['cpu_us']:.0f} us "
                f"(collector and clients) + {r['server_us']:.0f} us (PostgreSQL)",
                flush=True,
            )
    print(f"\nmedians of {args.rounds} rounds ({args.clients} clients unless /N, {args.seconds} s runs, "
          "batches of 100):")
    for shape in shapes:
        runs = results[shape]
        rate = statistics.median(r["rate"] for r in runs)
        store, replicas, tenants = SHAPES[shape]
        target = TARGETS[replicas] if store == "pg" else None
        verdict = "" if target is None else (
            f" (target {target:,}: {'met' if rate >= target else 'NOT met'})"
        )
        median = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        print(
            f"  {shape:12} {rate:>9,.0f} durable records/s{verdict}; "
            f"verify {median('verify_rate'):,.0f} records/s; "
            f"{median('per_record'):.0f} bytes/record; CPU per record "
            f"{median('cpu_us'):.0f} + {median('server_us'):.0f} us "
            f"(load {min(r['load'] for r in runs):.2f}-{max(r['load'] for r in runs):.2f})"
        )

if __name__ == "__main__":
    main()
