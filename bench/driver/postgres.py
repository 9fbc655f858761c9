"""PostgreSQL for the bench: the end-to-end harness's own throwaway server, through its binary
(tests/src/bin/pg.rs) with pg_stat_statements preloaded, driven over a pipe. It is stopped and
removed when the pipe closes, even if the driver dies."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
import urllib.parse
from pathlib import Path

from . import cpu
from .common import ROOT, die_with_parent, log

PG = Path(os.environ.get("BENCH_PG_BIN", ROOT / "target/debug/pg"))

# The database roles of sql/004_roles.sql, which the servers under test connect as (the harness's
# PostgreSQL trusts loopback: a URL names the role, no password).
EVENT_FN_ROLE = "event_fn"
NOTIFY_FN_ROLE = "notify_fn"

SEED_SQL = """
INSERT INTO events (title, description, date)
SELECT 'Event ' || g,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'Seeded event number ' || g || ' for the benchmark' END,
       DATE '2020-01-01' + (g % 3650)
FROM generate_series(1, {n}) AS g
"""


class Postgres:
    def __init__(self):
        self.process = subprocess.Popen([str(PG), "--stat-statements"], cwd=ROOT, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent())
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{PG} did not start PostgreSQL (its error is above)")
        ready = json.loads(line)
        self.port: int = ready["port"]
        self._url = urllib.parse.urlsplit(ready["url"])

    def _call(self, request: dict) -> str:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline() or '{"error": "pg exited"}')
        if "error" in answer:
            raise RuntimeError(f"{request.get('op')}: {answer['error']}")
        return answer["ok"]

    def url(self, database: str, role: str | None = None) -> str:
        """The URL of `database`, as the superuser or as `role`."""
        url = self._url._replace(path=f"/{database}")
        if role is not None:
            url = url._replace(netloc=f"{role}@{url.hostname}:{url.port}")
        return url.geturl()

    def psql(self, database: str, sql: str) -> str:
        return self._call({"op": "psql", "database": database, "sql": sql})

    def create_database(self) -> str:
        """A new database with sql/ applied; returns its name."""
        return urllib.parse.urlsplit(self._call({"op": "create_database"})).path.lstrip("/")

    def seeded_database(self, events: int) -> str:
        database = self.create_database()
        self.psql(database, SEED_SQL.format(n=events))
        self.psql(database, "VACUUM ANALYZE events")
        return database

    def copy_database(self, template: str, name: str) -> str:
        self.psql("postgres", f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    @functools.cached_property
    def postmaster(self) -> int | None:
        """The server's main process (its backends and workers are its children)."""
        return cpu.child_named(self.process.pid, "postgres")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                self.process.wait()

    def wait_quiet(self, limit_s: float = 60.0) -> float:
        """Waits until no session of any database runs a statement and no autovacuum works (a
        notification backlog being delivered, the clean-up after a write scenario), so that it
        weighs on neither the next run nor the other server's (app and floor run in turn)."""
        started = time.monotonic()
        quiet = 0
        while quiet < 3 and time.monotonic() - started < limit_s:
            active = self.psql("postgres", """SELECT count(*) FROM pg_stat_activity
                WHERE pid <> pg_backend_pid()
                  AND (backend_type = 'autovacuum worker'
                       OR (backend_type = 'client backend' AND state = 'active'))""")
            quiet = quiet + 1 if active == "0" else 0
            time.sleep(0.05)
        if quiet < 3:
            log(f"PostgreSQL still busy after {limit_s:.0f} s of waiting for quiet; the next run starts anyway")
        return round(time.monotonic() - started, 2)

    # pg_stat_statements, per database

    def reset_statements(self) -> None:
        self.psql("postgres", "SELECT pg_stat_statements_reset()")

    def statements(self, database: str) -> list[tuple[str, int]]:
        out = self.psql("postgres", f"""
            SELECT json_agg(json_build_array(query, calls)) FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{database}')""")
        return [(q, int(c)) for q, c in json.loads(out or "null") or []]
