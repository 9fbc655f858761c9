"""The data the scenarios need: events seeded in SQL (one copy per server) or through the API
(--base-url), and the deep page, whose cursor the app itself issued."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass

from .client import http_request, next_link, path_of
from .common import log
from .postgres import Postgres


@dataclass
class Databases:
    app: str
    floor: str
    native: str
    scale: str
    # The seeded events' ids, one a line (wrk's Lua script reads them).
    ids: list[int]


def in_sql(pg: Postgres, events: int, scale_events: int) -> Databases:
    started = time.monotonic()
    template = pg.seeded_database(events)
    # One copy per server, so the writes of one do not change the data of another.
    dbs = Databases(app=pg.copy_database(template, "bench_app"), floor=pg.copy_database(template, "bench_floor"),
                    native=pg.copy_database(template, "bench_native"), scale=pg.seeded_database(scale_events),
                    ids=[int(i) for i in pg.psql(template, "SELECT string_agg(id::text, ',') FROM events").split(",")])
    log(f"seeded {events:,} events (a copy each for the app, the floor and native) and {scale_events:,} scale "
        f"events in {time.monotonic() - started:.1f} s")
    return dbs


# The events a delete run deletes, each once: dated after every seeded or created event, so no
# list scenario sees them, and titled so that no search matches them (scenarios.NO_MATCH).
DELETE_POOL_SQL = """
WITH pool AS (
    INSERT INTO events (title, description, date)
    SELECT 'Doomed ' || g, 'deleted by bench', DATE '2099-12-31' FROM generate_series(1, {n}) AS g
    RETURNING id
)
SELECT string_agg(id::text, ',') FROM pool
"""


def delete_pool(pg: Postgres, database: str, events: int) -> list[int]:
    """`events` new events for a delete run, their ids in order."""
    return [int(i) for i in pg.psql(database, DELETE_POOL_SQL.format(n=events)).split(",")]


def drop_delete_pool(pg: Postgres, database: str, ids: list[int]) -> int:
    """Deletes what a delete run left of its pool, so the next scenario finds the database as seeded;
    returns how many were left. The pool is one insert's ids, so a range and its date find it."""
    left = pg.psql(database, f"""
        WITH dropped AS (
            DELETE FROM events WHERE id BETWEEN {min(ids)} AND {max(ids)} AND date = DATE '2099-12-31'
            RETURNING 1
        )
        SELECT count(*) FROM dropped""")
    return int(left)


def through_api(base_url: str, token: str, events: int) -> list[int]:
    log(f"seeding {events:,} events through POST /events")
    ids, errors, lock = [], [], threading.Lock()

    def worker(count):
        for i in range(count):
            status, _, body = http_request(base_url, "POST", "/events", token,
                                           {"title": f"Seeded {i}", "date": f"2024-{1 + i % 12:02d}-15"})
            if status != 201:
                errors.append(status)
                return
            with lock:
                ids.append(json.loads(body)["id"])

    workers = [threading.Thread(target=worker, args=(events // 16 + 1,)) for _ in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors or not ids:
        raise RuntimeError(f"seeding through the API failed: statuses {errors[:5]}")
    return ids


def deep_page(pg: Postgres, database: str, scale_events: int, base_url: str, token: str) -> tuple[str, int]:
    """The path of a page the app links to, about 100 rows before the end of the scale database,
    and the row it starts at."""
    back = 150
    date, last_id = pg.psql(database, f"""
        SELECT date || '|' || id FROM events ORDER BY date, id
        OFFSET {max(0, scale_events - back)} LIMIT 1""").split("|")
    cursor = base64.urlsafe_b64encode(f"{date}|{last_id}".encode()).decode().rstrip("=")
    status, headers, _ = http_request(base_url, "GET", f"/events?limit=50&cursor={cursor}", token)
    link = next_link(headers)
    if status != 200 or not link:
        raise RuntimeError(f"no Link header on a page near the end of the scale database (status {status})")
    path = path_of(link)
    status, _, body = http_request(base_url, "GET", path, token)
    if status != 200 or len(json.loads(body)) != 50:
        raise RuntimeError(f"the deep page from the Link header did not answer 50 events (status {status})")
    return path, scale_events - back + 50
