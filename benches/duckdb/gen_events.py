#!/usr/bin/env python3
"""Deterministic event generator for the `ratecard rate` vs DuckDB benchmark.

Writes N events in `ratecard rate`'s NDJSON shape, one object a line:

    {"id":"evt_0000000000000000","customer":"cust-0042","timestamp":"2026-11-01T00:00:00Z",
     "code":"api.request","properties":{"value":187}}

- 1,000 customers, Zipf-distributed (s = 1.1): the busiest customer has ~18 % of the events,
  the quietest ~0.008 %, so the graduated API tiers are crossed (at 10 M events the busiest
  customers go past 100,000 and 1,000,000 calls) and the long tail stays small.
- three codes: `api.request` 60 % (value: a latency in ms, integer, not billed),
  `storage.write` 20 % (value: MB written, integer 1..10000),
  `egress` 20 % (value: GB, two decimals, 0.01..50.00).
- timestamps: RFC 3339 UTC, non-decreasing through November 2026 (all in one billing month).
- duplicates: a fraction (default 0.5 %) of the lines are exact re-sends of one of the last
  65,536 lines written, so deduplicating by id matters (a re-send keeps its original timestamp,
  so the file is not perfectly time-ordered).

Only `random.Random.random()` (Mersenne Twister, stable across Python versions) is used, with a
fixed seed, so a given (events, duplicates, seed) always gives byte-identical files.

Run: `python3 benches/duckdb/gen_events.py --events 1000000 --out events.ndjson`.
"""

import argparse
import bisect
import os
import random
import sys
import time

N_CUSTOMERS = 1000
ZIPF_S = 1.1
MONTH_START_DAY = 1
MONTH_SECONDS = 30 * 86400  # November has 30 days
RING = 65536
# Bump when the output for the same parameters changes, so cached files are not reused.
FORMAT_VERSION = 1


def customer_cdf():
    weights = [1.0 / (k ** ZIPF_S) for k in range(1, N_CUSTOMERS + 1)]
    total = sum(weights)
    cdf = []
    acc = 0.0
    for w in weights:
        acc += w
        cdf.append(acc / total)
    cdf[-1] = 1.0
    return cdf


def file_name(n_events, dup_permille, seed):
    return f"events-duckdb-v{FORMAT_VERSION}-{n_events}-dup{dup_permille}-seed{seed}.ndjson"


def generate(path, n_events, dup_permille=5, seed=20261113, progress=True):
    """Writes `n_events` lines to `path` (atomically: a `.partial` file renamed at the end).

    `dup_permille`: duplicates per thousand lines (5 = 0.5 %). Returns the number of duplicate
    lines written.
    """
    rng = random.Random(seed)
    rand = rng.random
    cdf = customer_cdf()
    # The busiest customer is not cust-0000: shuffle ranks onto names deterministically.
    names = [f"cust-{i:04d}" for i in range(N_CUSTOMERS)]
    rng.shuffle(names)
    dup_p = dup_permille / 1000.0
    ring = [None] * RING
    n_fresh = 0
    n_dup = 0
    last_sec = -1
    ts = ""
    bisect_right = bisect.bisect_right
    partial = path + ".partial"
    started = time.monotonic()
    buf = []
    live = progress and sys.stderr.isatty()
    with open(partial, "w", encoding="ascii", newline="\n", buffering=1 << 20) as out:
        write = out.write
        for i in range(n_events):
            if n_fresh > 0 and rand() < dup_p:
                # An exact re-send of a recent line.
                back = int(rand() * min(n_fresh, RING))
                line = ring[(n_fresh - 1 - back) % RING]
                n_dup += 1
            else:
                sec = i * MONTH_SECONDS // n_events
                if sec != last_sec:
                    last_sec = sec
                    day, rem = divmod(sec, 86400)
                    hour, rem = divmod(rem, 3600)
                    minute, second = divmod(rem, 60)
                    ts = f"2026-11-{day + MONTH_START_DAY:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
                customer = names[bisect_right(cdf, rand())]
                r = rand()
                if r < 0.6:
                    code = "api.request"
                    value = str(5 + int(rand() * 500))
                elif r < 0.8:
                    code = "storage.write"
                    value = str(1 + int(rand() * 10000))
                else:
                    code = "egress"
                    cents = 1 + int(rand() * 5000)
                    value = f"{cents // 100}.{cents % 100:02d}"
                line = (
                    f'{{"id":"evt_{n_fresh:016x}","customer":"{customer}","timestamp":"{ts}",'
                    f'"code":"{code}","properties":{{"value":{value}}}}}\n'
                )
                ring[n_fresh % RING] = line
                n_fresh += 1
            buf.append(line)
            if len(buf) >= 8192:
                write("".join(buf))
                buf.clear()
                if live and i % (1 << 20) < 8192:
                    pct = 100.0 * i / n_events
                    print(f"\r  generating: {pct:5.1f} %", end="", file=sys.stderr, flush=True)
        write("".join(buf))
    os.replace(partial, path)
    if progress:
        print(
            f"{chr(13) if live else ''}  generated {n_events} events ({n_dup} duplicates) in "
            f"{time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
    return n_dup


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--dup-permille", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261113)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    generate(args.out, args.events, args.dup_permille, args.seed)


if __name__ == "__main__":
    main()
