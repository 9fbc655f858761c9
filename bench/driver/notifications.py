"""Notifications: the receiver's subscription, latency at light load, and the wait after a write
scenario until every notification is delivered (nothing may be lost under load)."""

from __future__ import annotations

import json
import time

from .client import http_request
from .postgres import Postgres
from .receiver import Receiver

UNDELIVERED_SQL = "SELECT count(*) FROM notifications WHERE status <> 'delivered'"


def subscribe(base_url: str, token: str, url: str) -> dict:
    """Subscribes `url` to event.created."""
    try:
        status, _, body = http_request(base_url, "POST", "/subscriptions", token,
                                       {"url": url, "types": ["event.created"]})
    except OSError as error:
        return {"ok": False, "status": None, "detail": str(error)}
    return {"ok": status == 201, "status": status, "detail": body.decode(errors="replace")[:300]}


def latency(base_url: str, token: str, receiver: Receiver, count: int) -> dict:
    """Sequential POSTs 20 ms apart; latency = webhook arrival - POST answered, matched by id."""
    answered = {}
    for i in range(count):
        status, _, body = http_request(base_url, "POST", "/events", token,
                                       {"title": f"Notified {i}", "date": "2025-03-01"})
        at = time.monotonic()
        if status == 201:
            answered[str(json.loads(body)["id"])] = at
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(receiver.arrived(answered)) < len(answered):
        time.sleep(0.05)
    arrivals = receiver.arrived(answered)
    latencies = sorted((at - answered[k]) * 1000 for k, at in arrivals.items())
    result = {"posts": count, "created": len(answered), "webhooks_matched": len(latencies)}
    if latencies:
        result.update(p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99), max_ms=latencies[-1])
    return result


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return round(sorted_values[index], 2)


def drain(postgres: Postgres, database: str, base_url: str, notify_token: str, limit_s: float = 120.0) -> dict:
    """After a write scenario: waits until every notification is delivered (the run's one
    subscriber answers 204 at once), asking for a dispatch each second as the periodic trigger
    would. How many were waiting when the load stopped, how long they took, and how many were
    still undelivered at the limit (each one a failure)."""
    waiting = int(postgres.psql(database, UNDELIVERED_SQL))
    started = time.monotonic()
    undelivered = waiting
    while undelivered and time.monotonic() - started < limit_s:
        http_request(base_url, "POST", "/notifications/dispatch", notify_token)
        deadline = time.monotonic() + 1
        while undelivered and time.monotonic() < deadline:
            time.sleep(0.05)
            undelivered = int(postgres.psql(database, UNDELIVERED_SQL))
    return {"waiting_when_load_stopped": waiting, "seconds": round(time.monotonic() - started, 2),
            "undelivered": undelivered}
