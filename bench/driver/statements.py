"""Statements per request, from pg_stat_statements: the app's own, event-fn's share, and the
pool's session reset apart."""

from __future__ import annotations

import random
import re
from collections import Counter

from .client import http_request
from .postgres import Postgres
from .scenarios import Scenario

# The session reset of the Postgres pool, not the component's statements: the deadpool
# RecyclingMethod::Clean batch Spin 3.6 runs when it reuses a pooled connection, which devhost
# sends after a ROLLBACK ahead of a connection's first statement. The app never sends ROLLBACK.
POOL_CLEANUP = {
    "ROLLBACK",
    "CLOSE ALL",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "UNLISTEN *",
    "SELECT pg_advisory_unlock_all()",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
}


def snapshot(postgres: Postgres, database: str) -> Counter:
    """Calls per statement that pg_stat_statements recorded for `database` since its reset."""
    calls: Counter = Counter()
    for query, n in postgres.statements(database):
        calls[query] += n
    return calls


def per_request(calls: Counter, requests: int) -> dict:
    """`calls` (a snapshot, or several summed) per request: the app's own, event-fn's share and
    the pool's session reset apart."""
    pool = sum(n for query, n in calls.items() if query.strip().rstrip(";") in POOL_CLEANUP)
    app = sum(n for query, n in calls.items() if query.strip().rstrip(";") not in POOL_CLEANUP)
    # event-fn's statements are those on the events table or calling its functions (the writes,
    # sql/011_write_functions_lease_first.sql; the read of one event, sql/014_read_function.sql):
    # notify-fn never reads it (a notification carries the event as it was). The floor's are
    # all on it.
    event_fn = sum(n for query, n in calls.items()
                   if re.search(r"\bevents\b|\b(create|update|delete|get)_event\(", query))
    top = sorted(calls.items(), key=lambda r: -r[1])[:25]
    ratio = (lambda n: round(n / requests, 3)) if requests else (lambda n: None)
    return {
        "statements_per_request": ratio(app),
        "pool_statements_per_request": ratio(pool),
        "event_fn_statements_per_request": ratio(event_fn),
        "statements": [{"query": " ".join(q.split())[:200], "calls": c} for q, c in top],
    }


def sequential(postgres: Postgres, database: str, base_url: str, token: str, scenario: Scenario,
               path: str | None, ids: list[int], requests: int) -> dict:
    """Counts over a fixed number of sequential requests (under load, requests still in flight
    when wrk stops blur the count). A delete deletes `ids` in order, each once."""
    rng = random.Random(7)
    postgres.reset_statements()
    statuses = []
    for i in range(requests):
        kind = scenario.mode if scenario.mode != "mix" else ("get" if i % 5 else "post")
        if kind == "get":
            request = ("GET", f"/events/{rng.choice(ids)}", None, "application/json")
        elif kind == "list":
            request = ("GET", path, None, "application/json")
        elif kind == "post":
            request = ("POST", "/events", {"title": f"Counted {i}", "date": "2025-05-05"}, "application/json")
        elif kind == "delete":
            request = ("DELETE", f"/events/{ids[i]}", None, "application/json")
        elif kind == "put":
            request = ("PUT", f"/events/{rng.choice(ids)}", {"title": f"Counted {i}", "date": "2025-05-05"},
                       "application/json")
        else:
            request = ("PATCH", f"/events/{rng.choice(ids)}", {"title": f"Counted {i}"},
                       "application/merge-patch+json")
        method, url_path, body, content_type = request
        status, _, _ = http_request(base_url, method, url_path, token, body, content_type)
        statuses.append(status)
    # Work a component does after answering (notify-fn's dispatch) counts too.
    postgres.wait_quiet(10)
    counted = per_request(snapshot(postgres, database), requests)
    counted["sequential_requests"] = requests
    counted["non_2xx"] = sum(1 for st in statuses if not 200 <= st < 300)
    return counted
