"""Isolation (issue 11), the scenario "one bad endpoint among N": what a healthy subscriber gets
alone, then beside bad endpoints (one that accepts connections and never answers, one whose
port refuses connections, one that answers after SLOW_ANSWER_S), on an app and database of its
own (the bad endpoints' backlog would weigh on every later scenario).

For each of the two configurations:
- latency at light load: sequential POSTs 20 ms apart, webhook arrival at the healthy
  subscriber - POST answered (p50, p99, max), as the notification latency measurement;
- throughput under load: wrk POSTs at LOAD_CONNECTIONS connections for the run's duration,
  then the wait until the healthy subscriber has every one of those events (a dispatch asked
  for each second, as the periodic trigger does): its deliveries per second from the start of
  the load to the last arrival.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from pathlib import Path

from . import notifications, wrk
from .client import http_request
from .common import free_port
from .postgres import Postgres
from .receiver import Receiver

SLOW_ANSWER_S = 2.0
LOAD_CONNECTIONS = 32
DELIVERY_LIMIT_S = 120.0
DESCRIPTION = ("one bad endpoint among N: a healthy subscriber alone, then beside one that never answers, one "
               f"that refuses connections and one that answers after {SLOW_ANSWER_S:g} s (N = 4)")


class Silent:
    """Accepts connections, reads whatever comes and never answers; a connection is closed when
    its client gives up."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.listener.setblocking(False)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                if key.fileobj is self.listener:
                    try:
                        connection, _ = self.listener.accept()
                    except BlockingIOError:
                        continue
                    connection.setblocking(False)
                    self.selector.register(connection, selectors.EVENT_READ)
                    continue
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


class BadEndpoints:
    def __init__(self):
        self.silent = Silent()
        self.slow = Receiver(answer_after_s=SLOW_ANSWER_S)
        # Bound a moment ago and closed: nothing listens there.
        self.refusing_url = f"http://127.0.0.1:{free_port()}/hook"

    @property
    def urls(self) -> dict[str, str]:
        return {"never answers": self.silent.url, "refuses connections": self.refusing_url,
                f"answers after {SLOW_ANSWER_S:g} s": self.slow.url}

    def stop(self) -> None:
        self.silent.stop()
        self.slow.stop()


def measure(postgres: Postgres, database: str, base_url: str, token: str, notify_token: str,
            ids_file: Path, light_posts: int, load_s: int) -> dict:
    """Both configurations on the app at `base_url` (whose database is `database`); raises when
    a subscription cannot be made."""
    healthy = Receiver()
    bad = BadEndpoints()
    try:
        subscribe(base_url, token, healthy.url)
        alone = configuration(postgres, database, base_url, token, notify_token, ids_file, healthy,
                              light_posts, load_s)
        for url in bad.urls.values():
            subscribe(base_url, token, url)
        beside = configuration(postgres, database, base_url, token, notify_token, ids_file, healthy,
                               light_posts, load_s)
    finally:
        healthy.stop()
        bad.stop()
    result = {"description": DESCRIPTION, "bad_endpoints": list(bad.urls), "alone": alone,
              "beside_bad_endpoints": beside}
    if alone["light"].get("p99_ms") and beside["light"].get("p99_ms") is not None:
        result["p99_ratio"] = round(beside["light"]["p99_ms"] / alone["light"]["p99_ms"], 2)
    if alone["load"].get("deliveries_per_s") and beside["load"].get("deliveries_per_s") is not None:
        result["throughput_ratio"] = round(beside["load"]["deliveries_per_s"] / alone["load"]["deliveries_per_s"], 2)
    return result


def subscribe(base_url: str, token: str, url: str) -> None:
    sub = notifications.subscribe(base_url, token, url)
    if not sub["ok"]:
        raise RuntimeError(f"POST /subscriptions answered {sub['status']}: {sub['detail'][:200]}")


def configuration(postgres: Postgres, database: str, base_url: str, token: str, notify_token: str,
                  ids_file: Path, healthy: Receiver, light_posts: int, load_s: int) -> dict:
    light = notifications.latency(base_url, token, healthy, light_posts)
    before = int(postgres.psql(database, "SELECT coalesce(max(id), 0) FROM events"))
    started = time.monotonic()
    summary = wrk.summarize(wrk.run(base_url, "post", token, ids_file, None, LOAD_CONNECTIONS, load_s))
    created = postgres.psql(database, f"SELECT coalesce(string_agg(id::text, ','), '') FROM events WHERE id > {before}")
    keys = [key for key in created.split(",") if key]
    waited = deliver(base_url, notify_token, healthy, keys)
    arrivals = healthy.arrived(keys)
    load = {"connections": LOAD_CONNECTIONS, "seconds": load_s, "writes_per_s": summary["rps"],
            "write_errors": summary["errors"], "created": len(keys), "delivered": len(arrivals),
            "wait_after_load_s": waited}
    if arrivals:
        load["deliveries_per_s"] = round(len(arrivals) / (max(arrivals.values()) - started), 1)
    return {"light": light, "load": load}


def deliver(base_url: str, notify_token: str, healthy: Receiver, keys: list[str]) -> float:
    """Waits until the healthy subscriber has every one of `keys`, asking for a dispatch each
    second; the seconds waited (at most DELIVERY_LIMIT_S)."""
    started = time.monotonic()
    while len(healthy.arrived(keys)) < len(keys) and time.monotonic() - started < DELIVERY_LIMIT_S:
        http_request(base_url, "POST", "/notifications/dispatch", notify_token)
        deadline = time.monotonic() + 1
        while len(healthy.arrived(keys)) < len(keys) and time.monotonic() < deadline:
            time.sleep(0.05)
    return round(time.monotonic() - started, 2)


def failures(result: dict) -> list[str]:
    """What makes the check fail: a notification the healthy subscriber never got, an error."""
    out = []
    for name in ("alone", "beside_bad_endpoints"):
        light, load = result[name]["light"], result[name]["load"]
        if light["webhooks_matched"] < light["created"] or not light["created"]:
            out.append(f"{name}: {light['webhooks_matched']} of {light['created']} light-load webhooks within 10 s")
        if load["delivered"] < load["created"]:
            out.append(f"{name}: {load['delivered']} of {load['created']} loaded webhooks within "
                       f"{DELIVERY_LIMIT_S:g} s")
        if load["write_errors"]:
            out.append(f"{name}: {load['write_errors']} write errors")
    return out


def summary(result: dict) -> str:
    def figures(name: str) -> str:
        light, load = result[name]["light"], result[name]["load"]
        return f"p99 {light.get('p99_ms', '-')} ms, {load.get('deliveries_per_s', '-')} deliveries/s"

    return (f"healthy subscriber alone {figures('alone')}; beside the bad endpoints {figures('beside_bad_endpoints')}"
            f" (p99 x{result.get('p99_ratio', '-')}, deliveries/s x{result.get('throughput_ratio', '-')})")
