"""The results: ratios to the floor and to native, the document (JSON), the console table, the
Markdown tables, the files in bench/results, and the pass/fail summary."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

from . import chart, isolation, targets, wrk
from .common import ROOT, log
from .scenarios import SCENARIOS


# How the report names the floor of `--floor`.
FLOOR_KIND = {"plain": "",
              "outbox": ", whose writes also insert their notification rows into the app's outbox (--floor outbox)"}


def find(results: list[dict], server: str, scenario: str | None, connections: int) -> dict | None:
    return next((r for r in results if r["server"] == server and r["scenario"] == scenario
                 and r["connections"] == connections and "rps" in r), None)


def ratio(value, reference, digits: int) -> float | None:
    return round(value / reference, digits) if reference else None


def attach_ratios(results: list[dict]) -> None:
    """app ÷ floor (same scenario) and app or floor ÷ native (its native counterpart)."""
    for r in results:
        if r["server"] not in ("app", "floor") or "rps" not in r:
            continue
        native = find(results, "native", SCENARIOS[r["scenario"]].native, r["connections"])
        if native:
            r["native_reference"] = native["scenario"]
            r["rps_ratio_to_native"] = ratio(r["rps"], native["rps"], 3)
            r["p99_ratio_to_native"] = ratio(r["p99_ms"], native["p99_ms"], 2)
        floor = find(results, "floor", r["scenario"], r["connections"]) if r["server"] == "app" else None
        if floor:
            r["rps_ratio_to_floor"] = ratio(r["rps"], floor["rps"], 3)
            r["p50_ratio_to_floor"] = ratio(r["p50_ms"], floor["p50_ms"], 2)
            r["p99_ratio_to_floor"] = ratio(r["p99_ms"], floor["p99_ms"], 2)


def document(settings, runtime: str, results: list[dict], measurements: dict, checks: list[dict],
             statement_counts: dict, elapsed: float) -> dict:
    attach_ratios(results)
    doc = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "smoke" if settings.smoke else "full",
        "runtime": runtime,
        "app": settings.base_url or "started by the bench",
        "commit": commit(),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "cpu": cpu_model(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "load_generator": wrk.version(),
        "settings": {"floor": settings.floor, "duration_s": settings.duration, "warmup_s": settings.warmup,
                     "connections": settings.connections, "events": settings.events,
                     "scale_events": settings.scale_events, "empty_query_trap": settings.empty_query_trap},
        "scenarios": {name: s.description for name, s in SCENARIOS.items()},
        "results": results,
        "measurements": measurements,
        "checks": checks,
        "statement_counts": statement_counts,
        "elapsed_s": round(elapsed, 1),
    }
    doc["targets"] = targets.evaluate(doc)
    return doc


def write(doc: dict, out_dir: Path) -> None:
    """latest.{json,md,png} (smoke: latest-smoke.*): only the latest of each is kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "latest-smoke" if doc["mode"] == "smoke" else "latest"
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown(doc))
    try:
        chart.draw(doc, out_dir / f"{name}.png")
    except ImportError:
        log("matplotlib is not installed: no chart (bench/run installs it)")
    log(f"results: {(out_dir / name).relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir / name}"
        ".{json,md,png}")


def num(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def print_table(doc: dict) -> None:
    header = (f"{'server':15} {'scenario':17} {'conn':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
              f"{'÷ floor':>7} {'÷ native':>8} {'p99÷nat':>7} {'stmt/req':>8} {'ev-fn':>6} {'+pool':>6} {'RSS MiB':>7} {'cpu µs':>6} {'pg µs':>6}")
    print()
    print(header)
    print("-" * len(header))
    for r in doc["results"]:
        if "rps" not in r:
            print(f"{r['server']:15} {r['scenario']:17} {r['connections']:>4} FAILED: {r.get('detail', '')[:80]}")
            continue
        cpu = r.get("cpu_per_request_us", {})
        print(f"{r['server']:15} {r['scenario']:17} {r['connections']:>4} {r['rps']:>9.1f} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['errors']:>6} {num(r.get('rps_ratio_to_floor'), '>7.3f'):>7} "
              f"{num(r.get('rps_ratio_to_native'), '>8.3f'):>8} {num(r.get('p99_ratio_to_native'), '>7.2f'):>7} "
              f"{num(r.get('statements_per_request'), '>8.2f'):>8} "
              f"{num(r.get('event_fn_statements_per_request'), '>6.2f'):>6} "
              f"{num(r.get('pool_statements_per_request'), '>6.2f'):>6} {num(r.get('peak_rss_mib'), '>7.1f'):>7} "
              f"{num(cpu.get('runtime'), '>6'):>6} {num(cpu.get('postgres'), '>6'):>6}")
    print()
    m = doc["measurements"]
    if "cold_start_ms" in m:
        c = m["cold_start_ms"]
        print(f"cold start (launch -> first 200): warm cache {c['warm_cache']} ms, no cache {c.get('no_cache', '-')} ms")
    if "notification_latency" in m:
        print(f"notification latency: {m['notification_latency']}")
    if "isolation" in m:
        print(f"isolation: {isolation.summary(m['isolation'])}")
    print(f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end')} "
          f"(other work on this {os.cpu_count()}-CPU machine skews every figure)")
    print("\ntargets (reported, not enforced):")
    for t in doc["targets"]:
        mark = "n/a " if t["met"] is None else ("met " if t["met"] else "MISS")
        print(f"  [{mark}] {t['target']}: {t['value']} (goal {t['goal']})")
    print()


def markdown(doc: dict) -> str:
    """The results as Markdown tables, for bench/README.md."""
    m = doc["measurements"]
    load = lambda key: tuple(round(x, 1) for x in m.get(key, ()))  # noqa: E731
    lines = [
        f"Run: {doc['mode']}, {doc['date']}, commit {doc['commit']}, app and floor on {doc['runtime']}, "
        f"{doc['machine']['cpus']} CPUs ({doc['machine']['cpu']}), {doc['load_generator']}, "
        f"{doc['settings']['duration_s']} s per run after {doc['settings']['warmup_s']} s warm-up; "
        f"load average {load('load_average_at_start')} at start, {load('load_average_at_end')} at end.",
        "",
        f"App on {doc['runtime']} against the floor on {doc['runtime']}{FLOOR_KIND[doc['settings']['floor']]} "
        "(same data, one server loaded at a time, in turn in 2-s slices of each run):",
        "",
        "| scenario | conn | app req/s | floor req/s | app ÷ floor | app p50 ms | floor p50 ms | ÷ | app p99 ms "
        "| floor p99 ms | ÷ | app ÷ native req/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["results"]:
        floor = find(doc["results"], "floor", r["scenario"], r["connections"])
        if r["server"] != "app" or "rps" not in r or not floor:
            continue
        lines.append(
            f"| {r['scenario']} | {r['connections']} | {r['rps']:.0f} | {floor['rps']:.0f} "
            f"| **{num(r.get('rps_ratio_to_floor'), '.2f')}** | {r['p50_ms']:.2f} | {floor['p50_ms']:.2f} "
            f"| {num(r.get('p50_ratio_to_floor'), '.2f')} | {r['p99_ms']:.2f} | {floor['p99_ms']:.2f} "
            f"| {num(r.get('p99_ratio_to_floor'), '.2f')} | {num(r.get('rps_ratio_to_native'), '.3f')} |")
    lines += cpu_rows(doc["results"])
    lines += [
        "",
        "| server | scenario | conn | req/s | p50 ms | p99 ms | errors | ÷ floor req/s | ÷ native req/s "
        "| ÷ native p99 | statements/req | of which event-fn | + pool session reset | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["results"]:
        if "rps" not in r:
            lines.append(f"| {r['server']} | {r['scenario']} | {r['connections']} | failed: "
                         f"{r.get('detail', '')[:60]} |" + " |" * 10)
            continue
        lines.append(
            f"| {r['server']} | {r['scenario']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {num(r.get('rps_ratio_to_floor'), '.3f')} "
            f"| {num(r.get('rps_ratio_to_native'), '.3f')} | {num(r.get('p99_ratio_to_native'), '.2f')} "
            f"| {num(r.get('statements_per_request'), '.2f')} | {num(r.get('event_fn_statements_per_request'), '.2f')} "
            f"| {num(r.get('pool_statements_per_request'), '.2f')} | {num(r.get('peak_rss_mib'), '.1f')} |")
    lines += ["", "| measurement | value |", "| --- | --- |"]
    if "cold_start_ms" in m:
        c = m["cold_start_ms"]
        lines.append(f"| cold start, warm cache (ms) | median {c['warm_cache_median']} of {c['warm_cache']} |")
        if "no_cache" in c:
            lines.append(f"| cold start, no cache (ms) | median {c['no_cache_median']} of {c['no_cache']} |")
    n = m.get("notification_latency", {})
    if "p50_ms" in n:
        lines.append(f"| notification latency (ms) | p50 {n['p50_ms']}, p99 {n['p99_ms']}, max {n['max_ms']:.1f} "
                     f"({n['webhooks_matched']} of {n['posts']} matched) |")
    elif n:
        lines.append(f"| notification latency | not measured: {n.get('missed') or n} |")
    lines += isolation_rows(m.get("isolation"))
    for component, size in (m.get("wasm_bytes") or {}).items():
        lines.append(f"| {component}.wasm | {num(size, ',')} bytes |")
    lines += ["", "| target (reported, not enforced) | goal | value | met |", "| --- | --- | --- | --- |"]
    for t in doc["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['goal']} | {t['value']} | {met} |")
    return "\n".join(lines) + "\n"


def cpu_rows(results: list[dict]) -> list[str]:
    """Where the app's extra cost per request is: CPU per request of the runtime's process tree
    and of PostgreSQL's, app against floor, and PostgreSQL's part of the difference."""
    keys = ("runtime", "postgres")
    rows = []
    for r in results:
        floor = find(results, "floor", r["scenario"], r["connections"])
        app_cpu, floor_cpu = r.get("cpu_per_request_us") or {}, (floor or {}).get("cpu_per_request_us") or {}
        if r["server"] != "app" or not all(k in side for side in (app_cpu, floor_cpu) for k in keys):
            continue
        extra = {k: app_cpu[k] - floor_cpu[k] for k in keys}
        total = extra["runtime"] + extra["postgres"]
        share = f"{extra['postgres'] / total:.0%}" if total > 0 else "-"
        rows.append(
            f"| {r['scenario']} | {r['connections']} | {app_cpu['runtime']} | {floor_cpu['runtime']} "
            f"| {num(ratio(app_cpu['runtime'], floor_cpu['runtime'], 2), '.2f')} | {app_cpu['postgres']} "
            f"| {floor_cpu['postgres']} | {num(ratio(app_cpu['postgres'], floor_cpu['postgres'], 2), '.2f')} "
            f"| {total} | {share} |")
    if not rows:
        return []
    return ["", "CPU per request (µs, from /proc, during the wrk runs and 0.3 s after: the runtime's process "
            "tree, with its components, and PostgreSQL's, with every backend and autovacuum; not the app's "
            "notifications still undelivered then), app against floor:", "",
            "| scenario | conn | app runtime | floor runtime | ÷ | app PostgreSQL | floor PostgreSQL | ÷ "
            "| app's extra µs | of which PostgreSQL |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows]


def isolation_rows(result: dict | None) -> list[str]:
    """The healthy subscriber's figures, alone and beside the bad endpoints (measurement rows)."""
    if not result:
        return []
    rows = []
    for name, label in (("alone", "alone"), ("beside_bad_endpoints", "beside the bad endpoints")):
        light, load = result[name]["light"], result[name]["load"]
        rows.append(f"| isolation, healthy subscriber {label} | light load: p50 {light.get('p50_ms', '-')} ms, "
                    f"p99 {light.get('p99_ms', '-')} ms ({light['webhooks_matched']} of {light['posts']}); "
                    f"{load['connections']} connections: {load['writes_per_s']} writes/s, "
                    f"{load.get('deliveries_per_s', '-')} deliveries/s ({load['delivered']} of {load['created']}) |")
    rows.append(f"| isolation, beside ÷ alone | p99 x{result.get('p99_ratio', '-')}, "
                f"deliveries/s x{result.get('throughput_ratio', '-')} ({result['description']}) |")
    return rows


def summary(doc: dict) -> int:
    """Prints what failed and `N passed, M failed[, K skipped]`; the exit status."""
    results, checks = doc["results"], doc["checks"]
    passed = sum(r["status"] == "passed" for r in results) + sum(c["status"] == "passed" for c in checks)
    failed = sum(r["status"] != "passed" for r in results) + sum(c["status"] == "failed" for c in checks)
    skipped = sum(c["status"] == "skipped" for c in checks)
    print(f"bench finished in {doc['elapsed_s']:.0f} s")
    for r in results:
        if r["status"] != "passed":
            print(f"FAILED {r['server']} {r['scenario']} c={r['connections']}: "
                  f"{r.get('detail') or str(r.get('errors')) + ' errors'}")
    for c in checks:
        if c["status"] == "failed":
            print(f"FAILED {c['name']}: {c['detail']}")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

