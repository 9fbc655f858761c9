"""bench/run's options (bench/run --help)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .common import BENCH
from .run import Run, Settings
from .scenarios import ISOLATION, SCENARIOS

# The default output; the full run there, against the plain floor, is the run of record.
RESULTS = BENCH / "results"


ABOUT = """Loads the app and the floor (the smallest component doing the same queries) on devhost or
another up-compatible runtime, in turn in 2-s slices of each run, and a native baseline, one
server loaded at a time on the same databases; reports app ÷ floor and app ÷ native per
scenario. See bench/README.md."""


def parse(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="bench/run", description=ABOUT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="a plumbing check: a second per run, 1 and 32 connections, small databases")
    parser.add_argument("--runtime", metavar="CMD",
                        help="start the app and the floor with this up-compatible command instead of devhost, "
                             "run as CMD --from FILE --listen ADDR (e.g. \"spin up\")")
    parser.add_argument("--floor", choices=("plain", "outbox"), default="plain",
                        help="plain: the floor's writes change the event only; outbox: each also inserts its "
                             "notification row into the app's outbox, as the app's write commits it (plain)")
    parser.add_argument("--base-url", help="drive this running deployment instead of starting anything")
    parser.add_argument("--token", help="its API bearer token (required with --base-url)")
    parser.add_argument("--duration", type=int, help="whole seconds per measured run (10; smoke 1)")
    parser.add_argument("--warmup", type=int, help="whole seconds of warm-up before each run, 0 for none (2; smoke 0)")
    parser.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated connection counts (1,32,128; smoke 1,32)")
    parser.add_argument("--events", type=int, help="events seeded for the request mixes (10000; smoke 1000)")
    parser.add_argument("--scale-events", type=int, help="events in the scale database (1000000; smoke 20000)")
    parser.add_argument("--scenarios", type=lambda s: s.split(","),
                        help="comma-separated scenarios to run (all; see bench/README.md); isolation only when named")
    parser.add_argument("--out-dir", type=Path,
                        help="where latest.{json,md,png} go (bench/results; smoke: latest-smoke.*; "
                             "required with --floor outbox, and not bench/results, which keeps the plain floor's run)")
    args = parser.parse_args(argv)
    if args.base_url is not None and not args.base_url.startswith(("http://", "https://")):
        parser.error("--base-url needs an http:// or https:// URL")
    if args.base_url and not args.token:
        parser.error("--base-url needs --token")
    unknown = sorted(set(args.scenarios or []) - set(SCENARIOS) - {ISOLATION})
    if unknown:
        parser.error(f"unknown scenarios {unknown}: choose among {', '.join([*SCENARIOS, ISOLATION])}")
    if args.base_url and args.runtime:
        parser.error("--runtime starts the app; --base-url drives one already running: give one of them")
    if args.base_url and args.floor != "plain":
        parser.error("--floor needs the bench to start the floor: not with --base-url")
    if args.floor != "plain" and (args.out_dir is None or args.out_dir.resolve() == RESULTS.resolve()):
        parser.error(f"--floor {args.floor} needs an --out-dir other than bench/results, which holds the "
                     "plain floor's run of record")
    smoke = args.smoke
    return Settings(
        smoke=smoke, base_url=args.base_url, token=args.token, runtime=args.runtime, floor=args.floor,
        # Issue 16: the smoke runs devhost with DEVHOST_EMPTY_QUERY_TRAP=1 (a query that returns no
        # rows traps, as Spin 4.0.0-4.0.2 hang on one), so a new query that can return nothing
        # fails CI.
        empty_query_trap=smoke,
        duration=args.duration or (1 if smoke else 10),
        # Smoke: no wrk warm-up; the sequential requests that count statements warm up instead.
        warmup=args.warmup if args.warmup is not None else (0 if smoke else 2),
        connections=args.connections or ([1, 32] if smoke else [1, 32, 128]),
        events=args.events or (1_000 if smoke else 10_000),
        scale_events=args.scale_events or (20_000 if smoke else 1_000_000),
        out_dir=args.out_dir or RESULTS,
        scenarios=args.scenarios,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (bench/run does)")
    return Run(settings).execute()
