"""The targets, as one table: reported by every run against the figures, never enforced (a run
fails only on errors, lost notifications and checks that could not run)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Iterator

from .scenarios import FLOOR_NAMES

Reading = Iterator[tuple[str, float | None]]


def app_runs(document: dict, scenarios, connections=None) -> Iterator[dict]:
    for r in document["results"]:
        if r["server"] == "app" and r["scenario"] in scenarios and "rps" in r \
                and (connections is None or r["connections"] in connections):
            yield r


def per_run(metric: str, scenarios: tuple, connections: tuple | None = None) -> Callable[[dict], Reading]:
    """`metric` of each app run of `scenarios` (at `connections`, else at every count)."""
    def read(document):
        for r in app_runs(document, scenarios, connections):
            yield f"{r['scenario']}, c={r['connections']}", r.get(metric)
    return read


def farthest_per_scenario(metric: str, scenarios: tuple, expected: float) -> Callable[[dict], Reading]:
    """Per scenario, the app's value of `metric` farthest from `expected`."""
    def read(document):
        for scenario in scenarios:
            values = [r[metric] for r in app_runs(document, (scenario,)) if r.get(metric) is not None]
            if values:
                yield scenario, max(values, key=lambda value: abs(value - expected))
    return read


def measurement(name: str, key: str) -> Callable[[dict], Reading]:
    def read(document):
        value = document["measurements"].get(name, {}).get(key)
        yield "", value
    return read


def deep_page_ratio(document: dict) -> Reading:
    deep = {r["connections"]: r for r in app_runs(document, ("list_deep_scale",))}
    for first in app_runs(document, ("list_first_scale",)):
        if first["connections"] in deep and first["p50_ms"]:
            yield f"c={first['connections']}", round(deep[first["connections"]]["p50_ms"] / first["p50_ms"], 2)


def peak_rss_mb(document: dict) -> Reading:
    top = max(document["settings"]["connections"])
    rss = [r["peak_rss_mib"] for r in document["results"]
           if r["server"] == "app" and r["connections"] == top and r.get("peak_rss_mib")]
    yield f"c={top}", round(max(rss) * 1.048576, 1) if rss else None


def errors(document: dict) -> Reading:
    yield "every load run", sum(r.get("errors") or 0 for r in document["results"])


def undelivered(document: dict) -> Reading:
    drained = [r["notifications_after_load"]["undelivered"] for r in document["results"]
               if "notifications_after_load" in r]
    yield "after the write scenarios", sum(drained) if drained else None


@dataclass(frozen=True)
class Target:
    name: str
    comparison: str
    threshold: float
    read: Callable[[dict], Reading]


# "~": within 0.01 of the threshold (a count per request, with room for rounding).
COMPARISONS = {"<": operator.lt, "<=": operator.le, ">=": operator.ge,
               "~": lambda value, threshold: abs(value - threshold) <= 0.01}
READS = ("get_by_id", "list_first", "list_empty")
WRITES = ("post", "put", "patch", "delete")

TARGETS = [
    Target("app req/s ÷ floor, reads", ">=", 0.95, per_run("rps_ratio_to_floor", READS, (32, 128))),
    Target("app req/s ÷ floor, writes", ">=", 0.8, per_run("rps_ratio_to_floor", WRITES, (32, 128))),
    Target("app p50 ÷ floor p50, writes", "<=", 1.3, per_run("p50_ratio_to_floor", WRITES, (32, 128))),
    Target("app req/s ÷ native, GET by id", ">=", 0.25, per_run("rps_ratio_to_native", ("get_by_id",))),
    Target("app p99 ÷ native p99, GET by id", "<", 5, per_run("p99_ratio_to_native", ("get_by_id",))),
    Target("app req/s ÷ native plain insert, POST", ">=", 0.2, per_run("rps_ratio_to_native", ("post",))),
    Target("deep page p50 ÷ first page p50 (1,000,000 rows)", "<=", 1.5, deep_page_ratio),
    Target("notification latency p99 at light load, ms", "<", 100, measurement("notification_latency", "p99_ms")),
    Target("notifications undelivered 120 s after the load", "<=", 0, undelivered),
    Target("healthy subscriber's p99 beside bad endpoints ÷ alone (isolation)", "<=", 2,
           measurement("isolation", "p99_ratio")),
    Target("cold start with a warm cache, median ms", "<", 100, measurement("cold_start_ms", "warm_cache_median")),
    Target("app peak RSS at the highest connection count, MB", "<", 150, peak_rss_mb),
    Target("errors", "<=", 0, errors),
    # Exactly 1: more is a second round trip, none a statement the count no longer recognises
    # (statements.py); all statements incl. notify-fn's dispatch and the pool's reset are in the
    # tables beside.
    Target("event-fn statements per request (sequential)", "~", 1,
           farthest_per_scenario("event_fn_statements_per_request", READS + WRITES, 1)),
]


def evaluate(document: dict) -> list[dict]:
    out = []
    # Against the floor of `--floor outbox`, its ratios say so in their names.
    floor = document["settings"]["floor"]
    for target in TARGETS:
        compare = COMPARISONS[target.comparison]
        name = target.name + (f" against the {FLOOR_NAMES[floor]}" if "floor" in target.name and floor != "plain" else "")
        for label, value in target.read(document):
            out.append({"target": name + (f" ({label})" if label else ""),
                        "goal": f"{target.comparison} {target.threshold:g}", "value": value,
                        "met": None if value is None else compare(value, target.threshold)})
    return out
