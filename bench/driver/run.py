"""One benchmark run: sets up PostgreSQL and the servers, loads one server at a time with every
scenario (the app and the floor in turn, in slices of each run), and measures what goes with
it. bench/README.md describes the method."""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import cpu, isolation, notifications, report, seed, statements, wrk
from .client import http_request
from .common import log
from .postgres import EVENT_FN_ROLE, NOTIFY_FN_ROLE, Postgres
from .receiver import Receiver
from .scenarios import ISOLATION, MIX, NATIVE_MIX, NATIVE_SPINPOOL, SCALE, SCENARIOS, Scenario
from .servers import APP_MANIFEST, FLOOR_MANIFEST, FLOOR_OUTBOX_SQL, Runtime, Server, start_native, wasm_sizes


# More deletes a second than any server here answers (the floor's plain delete makes about 3,300
# at 32 connections): a delete run's pool holds this many events per second of load, and 1,000
# more for the requests wrk has in flight when it stops.
DELETE_RATE_CEILING = 8_000

# See `slices`.
SLICE_SECONDS = 2


@dataclass(frozen=True)
class Loaded:
    """A server under load: its name in the results, the process (None: a deployment the bench
    did not start), its URL and its database (None: no SQL access)."""
    name: str
    server: Server | None
    base_url: str
    database: str | None


def slices(duration: int) -> list[int]:
    """A measured run of `duration` seconds as slices of `SLICE_SECONDS` (the last one shorter
    when it does not divide): the servers run in turn within each slice, in the other order in
    the next, so that a burst of other work on this shared machine lands on both halves of a
    ratio rather than on one (a ratio's two halves 10 s apart still moved by up to 20%)."""
    whole, rest = divmod(duration, SLICE_SECONDS)
    return [SLICE_SECONDS] * whole + ([rest] if rest else [])


class Measured:
    """One server's measured run of a scenario at a connection count, gathered over its slices."""

    def __init__(self, loaded: Loaded, scenario: Scenario, connections: int, duration: int, path: str | None,
                 counted: dict):
        self.loaded, self.scenario, self.connections = loaded, scenario, connections
        self.entry: dict = {"server": loaded.name, "scenario": scenario.name, "connections": connections,
                            "duration_s": duration, "path": path or scenario.shown_path}
        self.entry.update({k: v for k, v in counted.items() if k.endswith("_per_request")})
        self.slices: list[dict] = []
        self.statements: Counter = Counter()
        # CPU seconds of each slice by process tree (see `Run.cpu_so_far`); None once a slice
        # could not be read whole.
        self.cpu_slices: list[dict[str, float]] | None = []
        self.peak_rss_mib: float | None = None
        self.quiet_wait_s = 0.0
        self.pool_events = self.pool_left = 0
        self.drains: list[dict] = []
        self.error: str | None = None

    def attempt(self, step) -> None:
        """Runs `step` unless an earlier one failed; a failure is this run's result."""
        if self.error is None:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - a scenario that cannot run is a result too
                self.error = str(error)[:500]

    def add_cpu(self, before: dict[str, float], after: dict[str, float]) -> None:
        """A slice's CPU seconds by tree; a tree missing from a reading, or whose total fell (a
        process left it), leaves the run without CPU figures rather than with low ones."""
        if self.cpu_slices is None:
            return
        if not before or before.keys() != after.keys() or any(after[k] < before[k] for k in before) \
                or (self.cpu_slices and self.cpu_slices[0].keys() != before.keys()):
            self.cpu_slices = None
            return
        self.cpu_slices.append({k: after[k] - before[k] for k in before})

    def finish(self) -> None:
        entry = self.entry
        if self.error is not None or not self.slices:
            entry.update(status="failed", detail=self.error or "not measured", errors=None)
            return
        raw = wrk.combine(self.slices)
        entry.update(wrk.summarize(raw), slices_s=[round(s["duration_us"] / 1e6, 1) for s in self.slices],
                     quiet_wait_before_s=round(self.quiet_wait_s, 2))
        if self.peak_rss_mib is not None:
            entry["peak_rss_mib"] = self.peak_rss_mib
        if self.loaded.database:
            entry["statements_under_load"] = statements.per_request(self.statements, raw["requests"])
        if self.cpu_slices and raw["requests"]:
            entry["cpu_per_request_us"] = {name: round(sum(s[name] for s in self.cpu_slices) * 1e6 / raw["requests"])
                                           for name in self.cpu_slices[0]}
        if self.pool_events:
            entry["delete_pool"] = {"events": self.pool_events, "left": self.pool_left}
        entry["status"] = "passed" if entry["errors"] == 0 and entry["requests"] > 0 else "failed"
        if entry["requests"] == 0:
            entry["detail"] = "no request completed"
        if self.drains:
            drained = {"waiting_when_load_stopped": sum(d["waiting_when_load_stopped"] for d in self.drains),
                       "seconds": round(sum(d["seconds"] for d in self.drains), 2),
                       "undelivered": sum(d["undelivered"] for d in self.drains)}
            entry["notifications_after_load"] = drained
            if drained["undelivered"]:
                entry["status"] = "failed"
                entry["detail"] = f"{drained['undelivered']} notifications undelivered 120 s after a slice of the load"


@dataclass
class Settings:
    smoke: bool
    base_url: str | None
    token: str | None
    runtime: str | None
    # "plain", or "outbox": the floor's writes also insert their notification rows.
    floor: str
    empty_query_trap: bool
    duration: int
    warmup: int
    connections: list[int]
    events: int
    scale_events: int
    out_dir: Path
    # Only these scenarios (isolation among them only when named); None: everything.
    scenarios: list[str] | None = None


class Run:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.token = settings.token or secrets.token_hex(16)
        self.notify_token = secrets.token_hex(16)
        self.runtime = Runtime(settings.runtime, settings.empty_query_trap)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
        self.ids_file = self.workdir / "ids.txt"
        self.delete_ids_prefix = self.workdir / "delete-ids.txt"
        self.ids: list[int] = []
        self.receiver = Receiver()
        self.postgres: Postgres | None = None
        self.deep_path: str | None = None
        self.results: list[dict] = []
        self.checks: list[dict] = []  # measurements besides the load runs: passed, failed or skipped
        self.measurements: dict = {}
        self.statement_counts: dict[str, dict] = {}

    def execute(self) -> int:
        started = time.monotonic()
        self.measurements["load_average_at_start"] = os.getloadavg()
        try:
            if self.settings.base_url:
                self.external(self.settings.base_url.rstrip("/"))
            else:
                self.local()
        finally:
            self.receiver.stop()
            if self.postgres:
                self.postgres.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.measurements["load_average_at_end"] = os.getloadavg()
        doc = report.document(self.settings, self.runtime.description, self.results, self.measurements,
                              self.checks, self.statement_counts, time.monotonic() - started)
        report.print_table(doc)
        report.write(doc, self.settings.out_dir)
        return report.summary(doc)

    def check(self, name: str, status: str, detail: str = "") -> None:
        self.checks.append({"name": name, "status": status, "detail": detail})
        log(f"{name}: {status}{' - ' + detail if detail else ''}")

    # -- the two kinds of run

    def local(self) -> None:
        self.runtime.check()
        log("starting PostgreSQL (the test harness's, pg_stat_statements preloaded)")
        self.postgres = Postgres()
        dbs = seed.in_sql(self.postgres, self.settings.events, self.settings.scale_events)
        self.write_ids(dbs.ids)
        self.measurements["wasm_bytes"] = wasm_sizes()
        self.measure_cold_start(dbs.app)
        if self.settings.floor == "outbox":
            # The floor's writes with their notification rows (bench/floor/outbox.sql).
            self.postgres.psql(dbs.floor, FLOOR_OUTBOX_SQL.read_text())
        with self.start_app(dbs.app) as app, self.start_floor(dbs.floor) as floor:
            # At light load, before the load runs leave a backlog of deliveries behind.
            self.measure_notifications(app.base_url)
            self.load(self.chosen(MIX), Loaded("app", app, app.base_url, dbs.app),
                      Loaded("floor", floor, floor.base_url, dbs.floor))
        self.check_floor_outbox(dbs.floor)
        if self.settings.scenarios is None or ISOLATION in self.settings.scenarios:
            self.measure_isolation()
        with start_native(self.event_fn_url(dbs.native), self.token, False, self.workdir) as native:
            self.load(self.chosen(NATIVE_MIX), Loaded("native", native, native.base_url, dbs.native))
        if not self.settings.smoke and self.chosen(NATIVE_SPINPOOL):
            # Spin's pool policy on native splits the app's distance to native into the pool
            # policy's share and the rest (WebAssembly, an instance per request).
            with start_native(self.event_fn_url(dbs.native), self.token, True, self.workdir) as native:
                self.load(self.chosen(NATIVE_SPINPOOL), Loaded("native-spinpool", native, native.base_url, dbs.native))
        if not self.chosen(SCALE):
            return
        with self.start_app(dbs.scale) as app, self.start_floor(dbs.scale) as floor:
            self.find_deep_page(app.base_url, dbs.scale)
            self.load(self.chosen(SCALE), Loaded("app", app, app.base_url, dbs.scale),
                      Loaded("floor", floor, floor.base_url, dbs.scale))
        with start_native(self.event_fn_url(dbs.scale), self.token, False, self.workdir) as native:
            self.load(self.chosen(SCALE), Loaded("native", native, native.base_url, dbs.scale))

    def chosen(self, names: list[str]) -> list[str]:
        """The scenarios of `names` that `--scenarios` selects (all without it)."""
        return [name for name in names if self.settings.scenarios is None or name in self.settings.scenarios]

    def external(self, base_url: str) -> None:
        """A running deployment: seeded through its API, no SQL access, nothing else started."""
        status, _, _ = http_request(base_url, "GET", "/events?limit=1", self.token)
        if status != 200:
            raise SystemExit(f"{base_url}/events answered {status}: check --base-url and --token")
        self.write_ids(seed.through_api(base_url, self.token, self.settings.events))
        self.measure_notifications(base_url)
        self.load([name for name in self.chosen(MIX) if not SCENARIOS[name].deletes],
                  Loaded("app", None, base_url, None))
        for name, why in (("cold_start", "needs the bench to start the app"),
                          ("delete", "needs SQL access to seed the events it deletes"),
                          ("floor", "needs the bench to start the floor beside the app"),
                          ("scale_scenarios", "need SQL access to seed 1,000,000 rows"),
                          ("statements_per_request", "needs the bench's own PostgreSQL"),
                          ("isolation", "needs an app of the bench's own (it leaves failing subscriptions behind)"),
                          ("native_baseline", "runs only with the bench's own PostgreSQL")):
            self.check(name, "skipped", why)

    # -- set-up

    def event_fn_url(self, database: str) -> str:
        """event-fn's database role connects the app's event-fn, and the floor and the native server
        too: the same privileges and role settings (statement_timeout), so they compare like for like."""
        return self.postgres.url(database, EVENT_FN_ROLE)

    def app_variables(self, database: str) -> dict:
        return {"event_fn_db_url": self.event_fn_url(database),
                "notify_fn_db_url": self.postgres.url(database, NOTIFY_FN_ROLE),
                "db_host": "127.0.0.1", "db_port": str(self.postgres.port),
                "api_token": self.token, "notify_token": self.notify_token,
                "allow_private_webhooks": "true", "webhook_hosts": "http://127.0.0.1:*"}

    def start_app(self, database: str) -> Server:
        return self.runtime.start("app", APP_MANIFEST, self.app_variables(database), self.workdir)

    def start_floor(self, database: str) -> Server:
        variables = {"db_url": self.event_fn_url(database), "db_host": "127.0.0.1",
                     "db_port": str(self.postgres.port),
                     "outbox": "true" if self.settings.floor == "outbox" else "false"}
        return self.runtime.start("floor", FLOOR_MANIFEST, variables, self.workdir)

    def check_floor_outbox(self, database: str) -> None:
        """The floor wrote what `--floor` says: notification rows with `outbox`, none without
        (nothing else writes notifications in the floor's database)."""
        if not any(SCENARIOS[name].writes for name in self.chosen(MIX)):
            self.check("floor_outbox", "skipped", "no write scenario ran")
            return
        try:
            rows = int(self.postgres.psql(database, "SELECT count(*) FROM notifications"))
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            self.check("floor_outbox", "failed", str(error))
            return
        wanted = self.settings.floor == "outbox"
        status = "passed" if (rows > 0) == wanted else "failed"
        self.check("floor_outbox", status, f"--floor {self.settings.floor}: {rows} notification rows in its database")

    def find_deep_page(self, base_url: str, database: str) -> None:
        try:
            self.deep_path, row = seed.deep_page(self.postgres, database, self.settings.scale_events, base_url,
                                                 self.token)
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            self.check("list_deep_scale", "failed", str(error))
            return
        self.measurements["deep_page"] = {"path": self.deep_path, "row": row}

    # -- load

    def load(self, names: list[str], *servers: Loaded) -> None:
        """Each scenario on each of `servers`: statements per request from sequential requests
        first, then wrk at each connection count, the servers in turn (see `slices`); after each
        write run on the app, the wait until every notification is out."""
        for name in names:
            if name == "list_deep_scale" and not self.deep_path:
                continue
            scenario = SCENARIOS[name]
            self.vacuum(servers)
            counted = {s.name: self.count_statements(s, scenario) for s in servers}
            for connections in self.settings.connections:
                self.run_loads(servers, scenario, connections, counted)
        for s in servers:
            if s.name == "app" and s.server:
                self.measurements.setdefault("app_peak_rss_mib", {})[s.database] = s.server.peak_rss_mib()

    def vacuum(self, servers: tuple[Loaded, ...]) -> None:
        """VACUUM ANALYZE of each server's database before a scenario, so that each starts it from
        the same state whatever came before: the app's notification latency measurement and every
        write scenario add rows, dead row versions and entries to the pending list of the title
        search's GIN index, which every search reads through until a vacuum merges it (200 such
        entries in the app's database alone made its empty search cost PostgreSQL half as much
        again as the floor's)."""
        for database in dict.fromkeys(s.database for s in servers if s.database):
            self.postgres.wait_quiet()
            try:
                self.postgres.psql(database, "VACUUM ANALYZE")
                # The pages the vacuum dirtied are written now, not during a later slice.
                self.postgres.psql(database, "CHECKPOINT")
            except RuntimeError as error:
                log(f"VACUUM ANALYZE of {database} failed, the scenario runs anyway: {error}")

    def path(self, scenario: Scenario) -> str | None:
        return self.deep_path if scenario.name == "list_deep_scale" else scenario.path

    def count_statements(self, loaded: Loaded, scenario: Scenario) -> dict:
        if not loaded.database:
            return {}
        pg = self.postgres
        try:
            pg.wait_quiet()
            requests = 20 if self.settings.smoke else 100
            ids = seed.delete_pool(pg, loaded.database, requests) if scenario.deletes else self.ids
            counted = statements.sequential(pg, loaded.database, loaded.base_url, self.token, scenario,
                                            self.path(scenario), ids, requests)
            if scenario.deletes:
                seed.drop_delete_pool(pg, loaded.database, ids)
        except Exception as error:  # noqa: BLE001 - the load runs still tell something
            log(f"counting statements for {loaded.name} {scenario.name} failed: {error}")
            return {}
        self.statement_counts[f"{loaded.name}/{scenario.name}"] = counted
        return counted

    def run_loads(self, servers: tuple[Loaded, ...], scenario: Scenario, connections: int, counted: dict) -> None:
        """wrk on each server at `connections`: a warm-up each, then the measured run in slices,
        the servers in turn within a slice and in the other order in the next."""
        runs = [Measured(s, scenario, connections, self.settings.duration, self.path(scenario), counted[s.name])
                for s in servers]
        if self.settings.warmup:
            for run in runs:
                run.attempt(lambda run=run: self.measure_slice(run, self.settings.warmup, warm_up=True))
        for number, seconds in enumerate(slices(self.settings.duration)):
            for run in runs if number % 2 == 0 else reversed(runs):
                run.attempt(lambda run=run, seconds=seconds: self.measure_slice(run, seconds))
        for run in runs:
            run.finish()
            self.results.append(run.entry)
            log_entry(run.entry)

    def measure_slice(self, run: Measured, seconds: int, warm_up: bool = False) -> None:
        """One wrk run of `seconds` on `run`'s server; a warm-up only leaves the database as it
        found it. A delete run deletes a pool of events seeded for it."""
        loaded, scenario = run.loaded, run.scenario
        pg = self.postgres if loaded.database else None
        if pg:
            run.quiet_wait_s += pg.wait_quiet()
        pool = self.delete_pool(loaded.database, run.connections, seconds) if scenario.deletes else []
        try:
            time.sleep(0.2)
            if pg:
                pg.reset_statements()
            if loaded.server:
                loaded.server.reset_peak_rss()
            cpu_before = self.cpu_so_far(loaded)
            raw = wrk.run(loaded.base_url, scenario.mode, self.token,
                          self.delete_ids_prefix if scenario.deletes else self.ids_file, self.path(scenario),
                          run.connections, seconds)
            if not warm_up:
                run.slices.append(raw)
                if loaded.server:
                    run.peak_rss_mib = max(run.peak_rss_mib or 0, loaded.server.peak_rss_mib() or 0) or None
                if pg:
                    time.sleep(0.3)
                run.add_cpu(cpu_before, self.cpu_so_far(loaded))
                if pg:
                    run.statements.update(statements.snapshot(pg, loaded.database))
        finally:
            # After the count (these are not the server's statements), and after a failure too: the
            # next slice or scenario finds the database as seeded and no backlog.
            left = seed.drop_delete_pool(pg, loaded.database, pool) if pool else 0
            drained = (notifications.drain(pg, loaded.database, loaded.base_url, self.notify_token)
                       if pg and loaded.name == "app" and scenario.writes else None)
        if not warm_up:
            run.pool_events += len(pool)
            run.pool_left += left
            if drained:
                run.drains.append(drained)

    def cpu_so_far(self, loaded: Loaded) -> dict[str, float]:
        """CPU seconds so far of the loaded server's process tree (`runtime`: devhost or
        `--runtime`, with its components) and of PostgreSQL's (`postgres`: the postmaster with
        every backend and worker, those that exited too). Read around a wrk run and the 0.3 s
        after it that the statement count waits, so PostgreSQL's includes autovacuum and the work
        a component does after answering within that window (not the notifications still
        undelivered then, which the drain waits for), and nothing of the driver's own SQL (the
        reset before, the counts after). Empty for a deployment the bench did not start, or when
        /proc cannot be read."""
        if not loaded.server:
            return {}
        roots = {"runtime": loaded.server.pid}
        postmaster = self.postgres.postmaster if loaded.database else None
        if postmaster:
            roots["postgres"] = postmaster
        try:
            return cpu.trees_seconds(roots)
        except OSError as error:
            log(f"CPU time not read from /proc: {error}")
            return {}

    def delete_pool(self, database: str, connections: int, seconds: int) -> list[int]:
        """The events a delete run of `seconds` deletes, more than it can, split between wrk's threads."""
        pool = seed.delete_pool(self.postgres, database, DELETE_RATE_CEILING * seconds + 1_000)
        wrk.write_ids_per_thread(self.delete_ids_prefix, pool, connections)
        return pool

    def write_ids(self, ids: list[int]) -> None:
        self.ids = ids
        self.ids_file.write_text("\n".join(map(str, ids)) + "\n")

    # -- other measurements

    def measure_cold_start(self, database: str) -> None:
        """Launch to the first 200, with a compilation cache filled by one run first, and
        (devhost only) with --no-cache."""
        runs = 1 if self.settings.smoke else 5
        variables = self.app_variables(database)
        cache = self.workdir / "devhost-cache"
        try:
            self.runtime.cold_start(APP_MANIFEST, variables, self.token, self.workdir, cache, 1)
            warm = self.runtime.cold_start(APP_MANIFEST, variables, self.token, self.workdir, cache, runs)
            result = {"warm_cache": warm, "warm_cache_median": statistics.median(warm)}
            if self.runtime.is_devhost:
                fresh = self.runtime.cold_start(APP_MANIFEST, variables, self.token, self.workdir, None,
                                                max(1, runs - 2))
                result.update(no_cache=fresh, no_cache_median=statistics.median(fresh))
            self.measurements["cold_start_ms"] = result
            self.check("cold_start", "passed", f"warm cache median {result['warm_cache_median']} ms"
                       + (f", no cache median {result['no_cache_median']} ms" if "no_cache" in result else ""))
        except Exception as error:  # noqa: BLE001
            self.check("cold_start", "failed", str(error))

    def measure_notifications(self, base_url: str) -> None:
        sub = notifications.subscribe(base_url, self.token, self.receiver.url)
        self.measurements["subscription"] = sub
        if not sub["ok"]:
            # 404: notify-fn does not offer subscriptions; anything else is a failure.
            self.measurements["notification_latency"] = {
                "missed": f"POST /subscriptions answered {sub['status']}: {sub['detail'][:120]}"}
            self.check("notification_latency", "skipped" if sub["status"] == 404 else "failed",
                       f"not measured: POST /subscriptions answered {sub['status']}")
            return
        result = notifications.latency(base_url, self.token, self.receiver, 30 if self.settings.smoke else 200)
        self.measurements["notification_latency"] = result
        if result["webhooks_matched"] < result["created"] or not result["created"]:
            self.check("notification_latency", "failed",
                       f"{result['webhooks_matched']} of {result['created']} webhooks arrived within 10 s")
        else:
            self.check("notification_latency", "passed", f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")


    def measure_isolation(self) -> None:
        """The scenario "one bad endpoint among N" (isolation), on an app and a database of its own."""
        database = self.postgres.create_database()
        try:
            with self.start_app(database) as app:
                result = isolation.measure(self.postgres, database, app.base_url, self.token, self.notify_token,
                                           self.ids_file, 30 if self.settings.smoke else 500, self.settings.duration)
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            self.check("isolation", "failed", str(error)[:500])
            return
        self.measurements["isolation"] = result
        problems = isolation.failures(result)
        self.check("isolation", "failed" if problems else "passed", "; ".join(problems) or isolation.summary(result))


def log_entry(entry: dict) -> None:
    if "rps" not in entry:
        log(f"{entry['server']:15} {entry['scenario']:17} c={entry['connections']:<3} FAILED: {entry.get('detail')}")
        return
    log(f"{entry['server']:15} {entry['scenario']:17} c={entry['connections']:<3} {entry['rps']:9.1f} req/s  "
        f"p50 {entry['p50_ms']:7.2f} ms  p99 {entry['p99_ms']:7.2f} ms  errors {entry['errors']}")
    drained = entry.get("notifications_after_load")
    if drained:
        log(f"  {drained['waiting_when_load_stopped']} notifications undelivered when the load stopped; "
            f"{drained['undelivered']} left after {drained['seconds']} s")
