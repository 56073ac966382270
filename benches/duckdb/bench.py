#!/usr/bin/env python3
"""`ratecard rate` vs DuckDB on the same NDJSON events (issue 13).

What it does, in one invocation:

1. setup: makes sure the `duckdb` Python package imports (else `pip install --user duckdb`,
   retried with `--break-system-packages` where pip refuses a system Python). Idempotent.
2. events: generates N events (gen_events.py, fixed seed) into the bench-data directory, or
   reuses the file made earlier with the same parameters; copies plan.json there.
3. runs, alternating, R rounds each on the same (page-cached) file:
   - `ratecard rate --threads 1`
   - `ratecard rate` (default threads: one per core)
   - DuckDB (duckdb_rate.py: rate.sql, DuckDB's default threads)
   Each run is a child process: wall time from start to exit, peak RSS from `os.wait4`
   (the child's own `ru_maxrss`).
4. checks, and fails loudly (exit 1) if any differs: every ratecard run's output is
   byte-identical (1 thread vs all cores, round after round); ratecard and DuckDB agree per
   customer on the set of customers, every billed quantity, every line amount and the total,
   to the cent; the duplicates ratecard reports are the duplicates generated.
5. prints a Markdown table: median wall time (min-max), events/s, peak RSS, and the ratios
   ratecard events/s / DuckDB events/s, with the issue's targets.

No Rust parse+sum baseline: the one in host/benches/rate.rs generates and reads its own event
file (another shape) inside `cargo bench`, and cannot be pointed at this file.

Usage: `cargo xtask bench-duckdb [--events N] [--rounds R]`, or directly
`python3 benches/duckdb/bench.py --events 1000000` after `cargo build --release -p ratecard-host`.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, HERE)
import gen_events  # noqa: E402

TARGET_RATIO = 1.5  # ratecard events/s / DuckDB events/s, at 10 M events on 2 cores
TARGET_RSS_MIB = 444
PERIOD = "2026-11"
CHARGES = ("api", "storage", "egress")  # plan.json's charge ids, DuckDB's column prefixes
METRIC_COLUMNS = {"api": "api_calls", "storage": "storage", "egress": "egress"}


class BenchError(Exception):
    pass


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


# ---------------------------------------------------------------------------------------------
# setup


def ensure_duckdb(python):
    probe = [python, "-c", "import duckdb"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return
    print("setup: the duckdb package is missing, installing it with pip", file=sys.stderr)
    base = [python, "-m", "pip", "install", "--user", "duckdb"]
    result = subprocess.run(base, capture_output=True, text=True)
    if result.returncode != 0 and "externally-managed" in (result.stderr + result.stdout):
        result = subprocess.run(base + ["--break-system-packages"], capture_output=True, text=True)
    if result.returncode != 0 and "--user" in base and "virtualenv" in result.stderr.lower():
        # Inside a virtualenv, --user is refused: install into the environment itself.
        result = subprocess.run(
            [python, "-m", "pip", "install", "duckdb"], capture_output=True, text=True
        )
    if result.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise BenchError("could not install the duckdb Python package (pip install duckdb)")


def events_file(data_dir, n_events, dup_permille, seed):
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, gen_events.file_name(n_events, dup_permille, seed))
    meta_path = path + ".meta.json"
    if os.path.exists(path) and os.path.exists(meta_path):
        print(f"reusing {path}", file=sys.stderr)
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("bytes") != os.path.getsize(path):
            raise BenchError(f"{path} does not have the size recorded in {meta_path}: delete both")
        return path, meta
    print(f"generating {path} ({n_events} events)", file=sys.stderr)
    started = time.monotonic()
    n_dup = gen_events.generate(path, n_events, dup_permille, seed)
    meta = {
        "events": n_events,
        "duplicates": n_dup,
        "dup_permille": dup_permille,
        "seed": seed,
        "format_version": gen_events.FORMAT_VERSION,
        "bytes": os.path.getsize(path),
        "generated_s": round(time.monotonic() - started, 1),
    }
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    return path, meta


def warm_page_cache(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 24):
            pass


# ---------------------------------------------------------------------------------------------
# running one child


def run_child(argv, stdout_path):
    """Runs `argv` with its standard output into `stdout_path`; returns (wall seconds, peak RSS
    in bytes). The child is reaped with `os.wait4`, whose resource usage is that child's alone."""
    err_path = stdout_path + ".stderr"
    with open(stdout_path, "wb") as stdout, open(err_path, "wb") as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
        _, status, rusage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        with open(err_path, encoding="utf-8", errors="replace") as f:
            sys.stderr.write(f.read())
        raise BenchError(f"`{' '.join(argv)}` exited with {child.returncode}")
    os.remove(err_path)
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = rusage.ru_maxrss if sys.platform == "darwin" else rusage.ru_maxrss * 1024
    return wall, rss


# ---------------------------------------------------------------------------------------------
# reading and comparing results

DUP_NOTE = re.compile(r"^(\d+) events? not billed: (.*)$")


def read_ratecard(path):
    """customer -> {"total", "<charge>_amount", "<charge>_qty"}, and duplicates counted in notes
    (None if the notes do not say)."""
    result = {}
    duplicates = 0
    dup_seen = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            invoice = json.loads(line)
            if invoice["currency"] != "USD":
                raise BenchError(f"unexpected currency in {invoice['customer_id']}")
            row = {"total": Decimal(invoice["total"])}
            for charge in invoice["lines"]:
                row[charge["charge_id"] + "_amount"] = Decimal(charge["amount"])
                row[charge["charge_id"] + "_qty"] = Decimal(charge["quantity"])
            for note in invoice.get("notes", []):
                m = DUP_NOTE.match(note)
                if m and "duplicate" in m.group(2):
                    dup_seen = True
                    if m.group(2) == "duplicates":
                        duplicates += int(m.group(1))
                    else:
                        dup_seen = None  # several reasons in one note: cannot attribute
            customer = invoice["customer_id"]
            if customer in result:
                raise BenchError(f"two invoices for {customer}")
            result[customer] = row
    return result, (duplicates if dup_seen else None)


def read_duckdb(path):
    import csv

    result = {}
    with open(path, newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            row = {"total": Decimal(rec["total"])}
            for charge in CHARGES:
                row[charge + "_amount"] = Decimal(rec[charge + "_amount"])
                row[charge + "_qty"] = Decimal(rec[METRIC_COLUMNS[charge]])
            result[rec["customer"]] = row
    return result


def compare(ratecard, duckdb_rows):
    problems = []
    only_r = sorted(set(ratecard) - set(duckdb_rows))
    only_d = sorted(set(duckdb_rows) - set(ratecard))
    if only_r:
        problems.append(f"{len(only_r)} customers only in ratecard's output, e.g. {only_r[:5]}")
    if only_d:
        problems.append(f"{len(only_d)} customers only in DuckDB's output, e.g. {only_d[:5]}")
    for customer in sorted(set(ratecard) & set(duckdb_rows)):
        r, d = ratecard[customer], duckdb_rows[customer]
        for key in ["total"] + [c + s for c in CHARGES for s in ("_amount", "_qty")]:
            rv, dv = r.get(key, Decimal(0)), d[key]
            if rv != dv:
                problems.append(f"{customer} {key}: ratecard {rv}, DuckDB {dv}")
    return problems


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# report


def fmt_rate(events_per_s):
    if events_per_s >= 1e6:
        return f"{events_per_s / 1e6:.2f} M/s"
    return f"{events_per_s / 1e3:.0f} k/s"


def mib(n_bytes):
    return n_bytes / (1 << 20)


def machine_note():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load average unknown"
    return f"{os.cpu_count()} cores ({cpu}), {load}"


def source_note():
    """The commit measured, and whether the work tree had uncommitted changes to the code."""
    try:
        head = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "crates", "host", "Cargo.lock"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "source unknown"
    if not head:
        return "source unknown"
    return f"commit {head}" + (" + uncommitted changes in crates/ or host/" if dirty else "")


def main():
    parser = argparse.ArgumentParser(
        description="ratecard rate vs DuckDB on the same NDJSON events",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="default 10,000,000")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per runner; median reported")
    parser.add_argument("--dup-permille", type=int, default=5, help="duplicates per 1000 lines")
    parser.add_argument("--seed", type=int, default=20261113)
    parser.add_argument(
        "--ratecard",
        default=os.path.join(target_dir(), "release", "ratecard"),
        help="the ratecard binary (default: <target>/release/ratecard)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.path.join(target_dir(), "bench-data"),
        help="where the events, plan and outputs go (default: <target>/bench-data)",
    )
    parser.add_argument("--python", default=sys.executable, help="Python that runs DuckDB")
    parser.add_argument("--duckdb-threads", type=int, default=0, help="0: DuckDB's default")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.events <= 0 or args.rounds <= 0:
        parser.error("--events and --rounds must be positive")

    try:
        return bench(args)
    except BenchError as e:
        print(f"\nbench-duckdb FAILED: {e}", file=sys.stderr)
        return 1


def bench(args):
    if not os.access(args.ratecard, os.X_OK):
        raise BenchError(
            f"{args.ratecard} not found: `cargo build --release -p ratecard-host` "
            "(or run `cargo xtask bench-duckdb`)"
        )
    ensure_duckdb(args.python)
    events, meta = events_file(args.data_dir, args.events, args.dup_permille, args.seed)
    plan = os.path.join(args.data_dir, "plan-duckdb.json")
    shutil.copyfile(os.path.join(HERE, "plan.json"), plan)
    check = subprocess.run([args.ratecard, "validate", plan], capture_output=True, text=True)
    if check.returncode != 0:
        raise BenchError(f"ratecard validate {plan}: {check.stdout}{check.stderr}")
    out_dir = os.path.join(args.data_dir, f"duckdb-out-{args.events}")
    os.makedirs(out_dir, exist_ok=True)

    # DuckDB's own footprint before any work: the interpreter plus the imported module.
    _, import_rss = run_child(
        [args.python, "-c", "import duckdb"], os.path.join(out_dir, "import.txt")
    )

    print(f"warming the page cache ({meta['bytes'] / 1e6:.0f} MB)", file=sys.stderr)
    warm_page_cache(events)

    rate_base = [args.ratecard, "rate", "--plan", plan, "--events", events, "--period", PERIOD]
    runners = [
        ("ratecard rate --threads 1", "r1", lambda out: rate_base + ["--threads", "1", "--out", out]),
        ("ratecard rate (all cores)", "rN", lambda out: rate_base + ["--out", out]),
        (
            "DuckDB",
            "duckdb",
            lambda out: [
                args.python,
                os.path.join(HERE, "duckdb_rate.py"),
                "--events",
                events,
                "--out",
                out,
            ]
            + (["--threads", str(args.duckdb_threads)] if args.duckdb_threads else []),
        ),
    ]
    samples = {key: [] for _, key, _ in runners}
    duckdb_info = []
    first_out = {}  # "ratecard" / "duckdb" -> (sha256, path) of the first output
    for round_idx in range(args.rounds):
        # Alternate: each round starts with the next runner, so none always runs first.
        shift = round_idx % len(runners)
        for name, key, argv_for in runners[shift:] + runners[:shift]:
            ext = "csv" if key == "duckdb" else "ndjson"
            out = os.path.join(out_dir, f"{key}-round{round_idx}.{ext}")
            stdout = out + ".stdout"
            argv = argv_for(out)
            wall, rss = run_child(argv, stdout)
            samples[key].append((wall, rss))
            if key == "duckdb":
                with open(stdout, encoding="utf-8") as f:
                    duckdb_info.append(json.loads(f.read().strip().splitlines()[-1]))
            os.remove(stdout)
            side = "duckdb" if key == "duckdb" else "ratecard"
            digest = sha256(out)
            if side not in first_out:
                first_out[side] = (digest, out)
            elif digest != first_out[side][0]:
                raise BenchError(
                    f"{side} outputs differ: {out} vs {first_out[side][1]}"
                    + (" (1 thread and all cores must give byte-identical invoices)"
                       if side == "ratecard" else "")
                )
            else:
                os.remove(out)
            print(
                f"  round {round_idx + 1}/{args.rounds}  {name:<28} {wall:7.2f} s  "
                f"{fmt_rate(args.events / wall):>10}  peak RSS {mib(rss):6.0f} MiB",
                file=sys.stderr,
            )
    ratecard_out = first_out["ratecard"][1]
    duckdb_out = first_out["duckdb"][1]

    # Agreement, to the cent, per customer.
    ratecard_rows, rated_dups = read_ratecard(ratecard_out)
    duckdb_rows = read_duckdb(duckdb_out)
    problems = compare(ratecard_rows, duckdb_rows)
    if problems:
        for p in problems[:30]:
            print("  MISMATCH " + p, file=sys.stderr)
        raise BenchError(
            f"ratecard and DuckDB disagree ({len(problems)} differences; "
            f"outputs kept: {ratecard_out}, {duckdb_out})"
        )
    if rated_dups is not None and rated_dups != meta["duplicates"]:
        raise BenchError(
            f"ratecard reports {rated_dups} duplicates, the generator wrote {meta['duplicates']}"
        )
    grand_total = sum(row["total"] for row in ratecard_rows.values())

    # Figures.
    def summary(key):
        walls = sorted(w for w, _ in samples[key])
        rss = max(r for _, r in samples[key])
        median = statistics.median(walls)
        return {
            "median_s": median,
            "min_s": walls[0],
            "max_s": walls[-1],
            "events_per_s": args.events / median,
            "peak_rss_bytes": rss,
        }

    figures = {key: summary(key) for _, key, _ in runners}
    duck = figures["duckdb"]
    for key in ("r1", "rN"):
        figures[key]["ratio_vs_duckdb"] = figures[key]["events_per_s"] / duck["events_per_s"]
        # Fastest round against fastest round: the least disturbed runs of a shared machine.
        figures[key]["best_ratio_vs_duckdb"] = duck["min_s"] / figures[key]["min_s"]
    duck_query = statistics.median(i["query_s"] for i in duckdb_info)

    size = f"{args.events / 1e6:g} M" if args.events >= 1_000_000 else f"{args.events:,}"
    print()
    print(
        f"`ratecard rate` vs DuckDB {duckdb_info[0]['duckdb_version']} "
        f"(threads {duckdb_info[0]['threads']}): {args.events:,} events "
        f"({meta['duplicates']:,} duplicates), {meta['bytes'] / 1e9:.2f} GB, "
        f"{len(ratecard_rows)} customers, median of {args.rounds} rounds"
    )
    print(f"machine: {machine_note()}; ratecard: {source_note()}")
    print()
    print(
        "| events | runner | time (median, min–max) | events/s | peak RSS "
        "| ratio vs DuckDB (median; best rounds) |"
    )
    print("|-------:|--------|-----------------------:|---------:|---------:|------:|")
    for name, key, _ in runners:
        f = figures[key]
        ratio = (
            f"**{f['ratio_vs_duckdb']:.2f}×**; {f['best_ratio_vs_duckdb']:.2f}×"
            if "ratio_vs_duckdb" in f
            else "1"
        )
        print(
            f"| {size} | {name} | {f['median_s']:.2f} s ({f['min_s']:.2f}–{f['max_s']:.2f}) | "
            f"{fmt_rate(f['events_per_s'])} | {mib(f['peak_rss_bytes']):.0f} MiB | {ratio} |"
        )
    print()
    print(
        f"DuckDB child: query alone {duck_query:.2f} s (median), the rest of its wall time is "
        f"Python start-up, `import duckdb` ({statistics.median(i['import_s'] for i in duckdb_info):.2f} s) "
        f"and connecting; `python3 -c 'import duckdb'` alone peaks at {mib(import_rss):.0f} MiB."
    )
    rN = figures["rN"]
    ratio_ok = rN["ratio_vs_duckdb"] >= TARGET_RATIO
    rss_ok = mib(rN["peak_rss_bytes"]) <= TARGET_RSS_MIB
    print(
        f"targets (issue 13, at 10 M events on 2 cores): ratecard (all cores) / DuckDB events/s "
        f"{rN['ratio_vs_duckdb']:.2f} (≥ {TARGET_RATIO}: {'met' if ratio_ok else 'MISSED'}), "
        f"peak RSS {mib(rN['peak_rss_bytes']):.0f} MiB "
        f"(≤ {TARGET_RSS_MIB} MiB: {'met' if rss_ok else 'MISSED'})"
        + ("" if args.events == 10_000_000 else " — this run is not at 10 M events")
    )
    print(
        f"checked: ratecard output byte-identical over {2 * args.rounds} runs (1 thread, all cores); "
        f"ratecard = DuckDB for every customer (quantities, line amounts, totals; "
        f"grand total {grand_total} USD); "
        + (
            f"duplicates reported = generated ({meta['duplicates']:,})"
            if rated_dups is not None
            else "duplicates: ratecard's notes not recognized, not checked"
        )
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "events": args.events,
                    "rounds": args.rounds,
                    "meta": meta,
                    "machine": machine_note(),
                    "source": source_note(),
                    "duckdb": duckdb_info,
                    "figures": figures,
                    "samples": samples,
                },
                f,
                indent=2,
                default=str,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
