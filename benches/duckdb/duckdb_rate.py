#!/usr/bin/env python3
"""The DuckDB side of the benchmark: runs rate.sql over an NDJSON event file, writes the
per-customer result as CSV, and prints one JSON line with DuckDB's own timings.

Run by bench.py as a child process (so its wall time and peak RSS are measured like
`ratecard rate`'s), or directly:

    python3 benches/duckdb/duckdb_rate.py --events target/bench-data/<file>.ndjson --out out.csv
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sql_string(text):
    return "'" + text.replace("'", "''") + "'"


def main():
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True)
    parser.add_argument("--out", required=True, help="CSV file written with the result")
    parser.add_argument("--threads", type=int, default=0, help="0: DuckDB's default")
    args = parser.parse_args()

    import duckdb  # noqa: PLC0415 (timed separately: the import is part of the child's wall time)

    imported = time.perf_counter()
    with open(os.path.join(HERE, "rate.sql"), encoding="utf-8") as f:
        query = f.read().replace("{events}", sql_string(os.path.abspath(args.events)))
    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {int(args.threads)}")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    t0 = time.perf_counter()
    out = os.path.abspath(args.out)
    con.execute(f"COPY ({query}) TO {sql_string(out)} (FORMAT csv, HEADER)")
    t1 = time.perf_counter()
    con.close()
    json.dump(
        {
            "duckdb_version": duckdb.__version__,
            "threads": threads,
            "import_s": imported - started,
            "query_s": t1 - t0,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
