#!/usr/bin/env python3
"""The benchmark driver behind bench/run (see bench/README.md).

Starts its own PostgreSQL (with pg_stat_statements), seeds it in SQL, runs the app on devhost
and the native baseline (bench/native), drives each scenario with wrk (bench/wrk/scenario.lua),
and measures cold start, notification latency, peak RSS, statements per request and .wasm
sizes. With --base-url/--token it drives an already running deployment instead (seeding through
the API). Prints a table, writes bench/results/<timestamp>.json, latest.json and a PNG chart.

Standard library only, except matplotlib for the chart (bench/run installs it in a venv).
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import datetime as dt
import http.client
import http.server
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "wrk" / "scenario.lua"
DEVHOST = Path(os.environ.get("DEVHOST_BIN", ROOT / "target/release/devhost"))
NATIVE = Path(os.environ.get("BENCH_NATIVE_BIN", ROOT / "target/release/bench-native"))

# The session reset of the Postgres pool, not the component's statements: the deadpool
# RecyclingMethod::Clean batch Spin 3.6 runs when it reuses a pooled connection, which devhost
# sends after a ROLLBACK ahead of a connection's first statement (devhost/src/postgres.rs). The
# app itself never sends ROLLBACK.
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

# name -> (wrk mode, path, database it needs, native counterpart for the ratio, what it does)
SCENARIOS = {
    "get_by_id": ("get", None, "mix", "get_by_id", "GET /events/{id}, random ids of the seeded events"),
    "list_first": ("list", "/events?limit=50", "mix", "list_first", "GET /events?limit=50, the first page"),
    "list_first_scale": ("list", "/events?limit=50", "scale", "list_first_scale",
                         "GET /events?limit=50, first page of the scale database"),
    "list_deep_scale": ("list", None, "scale", "list_deep_scale",
                        "GET /events?limit=50&cursor=..., a page at the end of the scale database (real cursor from a Link header)"),
    "post": ("post", None, "mix", "post", "POST /events, plain insert (one webhook subscriber when notify-fn offers subscriptions)"),
    "patch": ("patch", None, "mix", "post", "PATCH /events/{id} (merge patch of the title), random ids; ratio to native plain insert"),
    "mix_80_20": ("mix", None, "mix", "mix_80_20", "80% GET /events/{id}, 20% POST /events"),
}
NATIVE_SCENARIOS = ["get_by_id", "list_first", "list_first_scale", "list_deep_scale", "post", "mix_80_20"]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(sig: int = signal.SIGKILL):
    def pre_exec():
        _libc.prctl(1, sig)  # PR_SET_PDEATHSIG

    return pre_exec


# ---------------------------------------------------------------------------------------------
# HTTP helpers (setup and measurements only: load is wrk's)

def http_request(base_url: str, method: str, path: str, token: str | None = None, body=None,
                 content_type: str = "application/json", timeout: float = 10.0):
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = content_type
    try:
        conn.request(method, url.path.rstrip("/") + path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()
    finally:
        conn.close()


def next_link(headers: dict) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', headers.get("link", ""))
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------------
# PostgreSQL of the bench's own, with pg_stat_statements

def find_pg_bindir() -> Path:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    versions = sorted(
        (int(p.name), p / "bin") for p in Path("/usr/lib/postgresql").glob("*") if p.name.isdigit()
        and (p / "bin/initdb").is_file()
    ) if Path("/usr/lib/postgresql").is_dir() else []
    if not versions:
        sys.exit("no PostgreSQL server binaries: apt-get install postgresql postgresql-contrib, or set PG_BINDIR")
    return versions[-1][1]


class Postgres:
    def __init__(self):
        self.bindir = find_pg_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            entry = next((pwd.getpwnam(n) for n in ("postgres", "nobody") if _has_user(n)), None)
            if entry is None:
                sys.exit("running as root and no postgres/nobody user to run PostgreSQL as")
            self.user = (entry.pw_uid, entry.pw_gid)
            os.chown(self.dir, *self.user)
        self.process = None

    def _pre_exec(self):
        user = self.user

        def pre_exec():
            if user:
                os.setgid(user[1])
                os.setuid(user[0])
            _libc.prctl(1, signal.SIGQUIT)

        return pre_exec

    def start(self) -> None:
        data = self.dir / "data"
        subprocess.run([self.bindir / "initdb", "--auth=trust", "--username=postgres", "--encoding=UTF8",
                        "--no-sync", "-D", data], check=True, stdout=subprocess.DEVNULL,
                       preexec_fn=self._pre_exec(), cwd=self.dir)
        logfile = open(self.dir / "server.log", "wb")
        self.process = subprocess.Popen(
            [self.bindir / "postgres", "-D", data, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "max_connections=400", "-c", "shared_buffers=256MB",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "shared_preload_libraries=pg_stat_statements",
             "-c", "pg_stat_statements.track=top", "-c", "pg_stat_statements.track_utility=on",
             "-c", "pg_stat_statements.max=10000"],
            stdout=subprocess.DEVNULL, stderr=logfile, preexec_fn=self._pre_exec(), cwd=self.dir)
        deadline = time.time() + 30
        while subprocess.run([self.bindir / "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"]).returncode:
            if self.process.poll() is not None or time.time() > deadline:
                sys.exit("PostgreSQL did not start:\n" + (self.dir / "server.log").read_text())
            time.sleep(0.05)
        self.psql("postgres", "CREATE EXTENSION pg_stat_statements")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            [self.bindir / "psql", self.url(database), "--no-psqlrc", "-qtA", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"psql failed: {sql[:200]!r}: {result.stderr}")
        return result.stdout.strip()

    def migrate(self, database: str) -> None:
        env = dict(os.environ, DATABASE_URL=self.url(database), PATH=f"{self.bindir}:{os.environ['PATH']}")
        subprocess.run(["sh", ROOT / "sql/migrate.sh"], check=True, env=env, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait_quiet(self, database: str, limit_s: float = 60.0) -> float:
        """Waits until no session of `database` runs a statement (e.g. a notification backlog left
        by a write scenario being delivered), so it does not weigh on the next scenario."""
        started = time.monotonic()
        quiet = 0
        while quiet < 3 and time.monotonic() - started < limit_s:
            active = self.psql("postgres", f"""SELECT count(*) FROM pg_stat_activity
                WHERE datname = '{database}' AND state = 'active'""")
            quiet = quiet + 1 if active == "0" else 0
            time.sleep(0.05)
        return round(time.monotonic() - started, 2)

    # pg_stat_statements, per database

    def reset_statements(self) -> None:
        self.psql("postgres", "SELECT pg_stat_statements_reset()")

    def statements(self, database: str) -> list[tuple[str, int]]:
        out = self.psql("postgres", f"""
            SELECT json_agg(json_build_array(query, calls)) FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{database}')""")
        return [(q, int(c)) for q, c in json.loads(out or "null") or []]


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


SEED_SQL = """
INSERT INTO events (title, description, date)
SELECT 'Event ' || g,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'Seeded event number ' || g || ' for the benchmark' END,
       DATE '2020-01-01' + (g % 3650)
FROM generate_series(1, {n}) AS g
"""


# ---------------------------------------------------------------------------------------------
# The processes under test

class Server:
    """devhost or the native baseline, with its output in a log file."""

    def __init__(self, name: str, command: list, env: dict, logdir: Path):
        self.name = name
        self.log_path = logdir / f"{name}-{int(time.time() * 1000)}.log"
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen([str(c) for c in command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=self.log_file, stdin=subprocess.DEVNULL, text=True,
                                        preexec_fn=_die_with_parent())
        self.base_url = None
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log_file.write(line)
            if line.startswith("Serving "):
                self.base_url = line.split(" ", 1)[1].strip()
                break
        if not self.base_url:
            self.stop()
            raise RuntimeError(f"{name} did not start:\n{self.log_path.read_text()[-3000:]}")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.process.stdout:
            self.log_file.write(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def reset_peak_rss(self) -> None:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_rss_kib(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def spin_variables(values: dict) -> dict:
    """SPIN_VARIABLE_* for the variables spin.toml declares; fails on a required one we lack."""
    manifest = tomllib.loads((ROOT / "spin.toml").read_text())
    env = {}
    missing = []
    for name, spec in manifest.get("variables", {}).items():
        if name in values:
            env[f"SPIN_VARIABLE_{name.upper()}"] = values[name]
        elif spec.get("required"):
            missing.append(name)
    if missing:
        raise RuntimeError(f"spin.toml requires variables the bench does not know how to set: {missing}")
    return env


# ---------------------------------------------------------------------------------------------
# Webhook receiver

class Receiver:
    def __init__(self):
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                at = time.monotonic()
                if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()
                try:
                    event = json.loads(body)
                    data = event.get("data") or {}
                    key = str(data.get("id") if isinstance(data, dict) and "id" in data else event.get("subject"))
                except (ValueError, AttributeError):
                    key = None
                with receiver.lock:
                    receiver.count += 1
                    if key and key not in receiver.arrivals:
                        receiver.arrivals[key] = at

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            # A dispatcher sends a batch of webhooks at once; the default backlog of 5 would
            # drop connections and slow delivery to TCP's retransmission timers.
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self):
        self.server.shutdown()


def subscribe(base_url: str, token: str, receiver: Receiver) -> dict:
    try:
        status, _, body = http_request(base_url, "POST", "/subscriptions", token,
                                       {"url": receiver.url, "types": ["event.created"]})
    except OSError as error:
        return {"ok": False, "status": None, "detail": str(error)}
    return {"ok": status == 201, "status": status, "detail": body.decode(errors="replace")[:300]}


def notification_latency(base_url: str, token: str, receiver: Receiver, count: int) -> dict:
    """Sequential POSTs at light load; latency = webhook arrival - POST answered, matched by id."""
    answered = {}
    for i in range(count):
        status, _, body = http_request(base_url, "POST", "/events", token,
                                       {"title": f"Notified {i}", "date": "2025-03-01"})
        at = time.monotonic()
        if status == 201:
            answered[str(json.loads(body)["id"])] = at
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with receiver.lock:
            if all(k in receiver.arrivals for k in answered):
                break
        time.sleep(0.05)
    with receiver.lock:
        latencies = sorted((receiver.arrivals[k] - t) * 1000 for k, t in answered.items() if k in receiver.arrivals)
    result = {"posts": count, "created": len(answered), "webhooks_matched": len(latencies)}
    if latencies:
        result.update(p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                      max_ms=latencies[-1])
    return result


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return round(sorted_values[index], 2)


# ---------------------------------------------------------------------------------------------
# Cold start

def cold_start(env: dict, cache_dir: Path | None, token: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        port = free_port()
        command = [DEVHOST, "--from", ROOT / "spin.toml", "--listen", f"127.0.0.1:{port}"]
        run_env = dict(env)
        if cache_dir is None:
            command.append("--no-cache")
        else:
            run_env["DEVHOST_CACHE_DIR"] = str(cache_dir)
        started = time.monotonic()
        process = subprocess.Popen([str(c) for c in command], cwd=ROOT, env=run_env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent())
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"devhost exited with {process.returncode} during the cold-start run")
                if time.monotonic() - started > 60:
                    raise RuntimeError("devhost did not answer within 60 s")
                try:
                    status, _, _ = http_request(f"http://127.0.0.1:{port}", "GET", "/events?limit=1", token,
                                                timeout=5)
                except OSError:
                    time.sleep(0.001)
                    continue
                if status == 200:
                    times.append(round((time.monotonic() - started) * 1000, 1))
                    break
                time.sleep(0.001)
        finally:
            process.terminate()
            process.wait()
    return times


# ---------------------------------------------------------------------------------------------
# wrk

def run_wrk(base_url: str, mode: str, token: str, ids_file: Path, path: str | None, connections: int,
            seconds: int) -> dict:
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
               "-s", str(LUA), base_url.rstrip("/"), "--", mode, token, str(ids_file)]
    if path:
        command.append(path)
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in result.stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if result.returncode or not line:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()} {result.stdout[-500:]}")
    return json.loads(line[len("WRK_JSON "):])


def summarize(raw: dict) -> dict:
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    pct = raw["latency_us"]["percentiles"]
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": pct["50"] / 1000,
        "p90_ms": pct["90"] / 1000,
        "p99_ms": pct["99"] / 1000,
        "errors": errors,
        "raw": raw,
    }


# ---------------------------------------------------------------------------------------------
# The run

class Bench:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.external = bool(args.base_url)
        self.duration = args.duration or (1 if self.smoke else 10)
        # Smoke: no wrk warm-up; the sequential requests that count statements warm up instead.
        self.warmup = args.warmup if args.warmup is not None else (0 if self.smoke else 2)
        self.connections = args.connections or ([1, 32] if self.smoke else [1, 32, 128])
        self.seed_events = args.events or (1_000 if self.smoke else 10_000)
        self.scale_events = args.scale_events or (20_000 if self.smoke else 1_000_000)
        self.token = args.token or secrets.token_hex(16)
        self.notify_token = secrets.token_hex(16)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
        self.results: list[dict] = []
        self.checks: list[dict] = []  # non-load measurements: passed / failed / skipped
        self.measurements: dict = {}
        self.postgres: Postgres | None = None
        self.receiver = Receiver()
        self.ids_files: dict[str, Path] = {}
        self.deep_path: str | None = None
        self.statement_counts: dict[tuple[str, str], dict] = {}
        self.scale_row: int | None = None

    # -- bookkeeping

    def check(self, name: str, status: str, detail: str = "") -> None:
        self.checks.append({"name": name, "status": status, "detail": detail})
        log(f"{name}: {status}{' - ' + detail if detail else ''}")

    def write_ids(self, name: str, ids) -> Path:
        path = self.workdir / f"ids-{name}.txt"
        path.write_text("\n".join(str(i) for i in ids) + "\n")
        return path

    # -- setup

    def start_postgres(self) -> None:
        log("starting PostgreSQL (pg_stat_statements preloaded)")
        self.postgres = Postgres()
        self.postgres.start()
        pg = self.postgres
        pg.psql("postgres", "CREATE DATABASE bench_template")
        pg.migrate("bench_template")
        started = time.monotonic()
        pg.psql("bench_template", SEED_SQL.format(n=self.seed_events))
        pg.psql("bench_template", "VACUUM ANALYZE events")
        for name in ("bench_devhost", "bench_native"):
            pg.psql("postgres", f"CREATE DATABASE {name} TEMPLATE bench_template")
        pg.psql("postgres", "CREATE DATABASE bench_scale")
        pg.migrate("bench_scale")
        pg.psql("bench_scale", SEED_SQL.format(n=self.scale_events))
        pg.psql("bench_scale", "VACUUM ANALYZE events")
        log(f"seeded {self.seed_events:,} events (x2) and {self.scale_events:,} scale events "
            f"in {time.monotonic() - started:.1f} s")
        ids = pg.psql("bench_template", "SELECT string_agg(id::text, ',') FROM events").split(",")
        self.ids_files["mix"] = self.write_ids("mix", ids)
        self.ids_files["scale"] = self.ids_files["mix"]
        self.measurements["seed"] = {"events": self.seed_events, "scale_events": self.scale_events}

    def app_env(self, database: str) -> dict:
        pg = self.postgres
        values = {
            "db_url": pg.url(database), "db_host": "127.0.0.1", "db_port": str(pg.port),
            "api_token": self.token, "notify_token": self.notify_token,
            "allow_private_webhooks": "true", "webhook_hosts": "http://127.0.0.1:*",
        }
        return dict(os.environ, **spin_variables(values))

    def start_devhost(self, database: str) -> Server:
        env = self.app_env(database)
        env["DEVHOST_CACHE_DIR"] = str(ROOT / "target/bench-devhost-cache")
        return Server("devhost", [DEVHOST, "--from", ROOT / "spin.toml", "--listen", "127.0.0.1:0"], env,
                      self.workdir)

    def start_native(self, database: str, spin_pool: bool = False) -> Server:
        env = dict(os.environ, DATABASE_URL=self.postgres.url(database), API_TOKEN=self.token,
                   BENCH_NATIVE_POOL="spin" if spin_pool else "fast")
        return Server("native", [NATIVE, "--listen", "127.0.0.1:0"], env, self.workdir)

    def seed_through_api(self, base_url: str) -> None:
        """For --base-url: create the events through the API (no SQL access)."""
        log(f"seeding {self.seed_events:,} events through POST /events")
        ids = []
        lock = threading.Lock()
        errors = []

        def worker(count):
            for i in range(count):
                status, _, body = http_request(base_url, "POST", "/events", self.token,
                                               {"title": f"Seeded {i}", "date": f"2024-{1 + i % 12:02d}-15"})
                if status != 201:
                    errors.append(status)
                    return
                with lock:
                    ids.append(json.loads(body)["id"])

        workers = [threading.Thread(target=worker, args=(self.seed_events // 16 + 1,)) for _ in range(16)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if errors or not ids:
            raise RuntimeError(f"seeding through the API failed: statuses {errors[:5]}")
        self.ids_files["mix"] = self.write_ids("mix", ids)

    # -- the deep page

    def find_deep_page(self, base_url: str) -> str:
        """A cursor the API issued, pointing about 100 rows before the end of the scale database."""
        back = 150
        date, last_id = self.postgres.psql("bench_scale", f"""
            SELECT date || '|' || id FROM events ORDER BY date, id
            OFFSET {max(0, self.scale_events - back)} LIMIT 1""").split("|")
        cursor = base64.urlsafe_b64encode(f"{date}|{last_id}".encode()).decode().rstrip("=")
        status, headers, _ = http_request(base_url, "GET", f"/events?limit=50&cursor={cursor}", self.token)
        link = next_link(headers)
        if status != 200 or not link:
            raise RuntimeError(f"no Link header on a page near the end of the scale database (status {status})")
        link_path = urllib.parse.urlsplit(link)
        path = link_path.path + ("?" + link_path.query if link_path.query else "")
        status, _, body = http_request(base_url, "GET", path, self.token)
        if status != 200 or len(json.loads(body)) != 50:
            raise RuntimeError(f"the deep page from the Link header did not answer 50 events (status {status})")
        self.scale_row = self.scale_events - back + 50
        return path

    # -- load

    def run_scenario(self, target: str, server_url: str, scenario: str, database: str,
                     server: Server | None = None, path: str | None = None) -> None:
        mode, default_path, _, native_of, _ = SCENARIOS[scenario]
        path = path or default_path
        ids_file = self.ids_files.get("mix")
        db_name = {"devhost": {"mix": "bench_devhost", "scale": "bench_scale"},
                   "native": {"mix": "bench_native", "scale": "bench_scale"},
                   "native-spinpool": {"mix": "bench_native"}}.get(target, {}).get(database)
        if self.postgres and db_name:
            try:
                self.postgres.wait_quiet(db_name)
                self.exact_statements(target, server_url, scenario, db_name, path)
            except Exception as error:  # noqa: BLE001
                log(f"counting statements for {target} {scenario} failed: {error}")
        for connections in self.connections:
            entry = {"target": target, "scenario": scenario, "connections": connections,
                     "duration_s": self.duration, "path": path or ("/events/{id}" if mode in ("get", "patch") else "/events")}
            try:
                if self.postgres and db_name:
                    entry["quiet_wait_before_s"] = self.postgres.wait_quiet(db_name)
                if self.warmup:
                    run_wrk(server_url, mode, self.token, ids_file, path, connections, self.warmup)
                time.sleep(0.2)
                if self.postgres and db_name:
                    self.postgres.reset_statements()
                if server:
                    server.reset_peak_rss()
                raw = run_wrk(server_url, mode, self.token, ids_file, path, connections, self.duration)
                entry.update(summarize(raw))
                if server:
                    entry["peak_rss_mib"] = round((server.peak_rss_kib() or 0) / 1024, 1)
                if self.postgres and db_name:
                    time.sleep(0.3)
                    under_load = self.count_statements(db_name, raw["requests"])
                    entry["statements_under_load"] = under_load
                entry["status"] = "passed" if entry["errors"] == 0 and entry["requests"] > 0 else "failed"
                if entry["requests"] == 0:
                    entry["detail"] = "no request completed"
                if target == "devhost" and self.postgres and db_name and mode in ("post", "patch", "mix"):
                    drained = self.drain_notifications(server_url, db_name)
                    entry["notifications_after_load"] = drained
                    if drained["undelivered"]:
                        entry["status"] = "failed"
                        entry["detail"] = f"{drained['undelivered']} notifications undelivered {drained['seconds']} s after the load"
            except Exception as error:  # noqa: BLE001 - a scenario that cannot run is a result too
                entry.update(status="failed", detail=str(error)[:500], errors=None)
            self.results.append(entry)
            log(f"{target:15} {scenario:17} c={connections:<3} "
                + (f"{entry.get('rps', 0):9.1f} req/s  p50 {entry.get('p50_ms', 0):7.2f} ms  "
                   f"p99 {entry.get('p99_ms', 0):7.2f} ms  errors {entry.get('errors')}"
                   if "rps" in entry else f"FAILED: {entry.get('detail')}"))
            if "notifications_after_load" in entry:
                drained = entry["notifications_after_load"]
                log(f"  {drained['waiting_when_load_stopped']} notifications undelivered when the load stopped; "
                    f"{drained['undelivered']} left after {drained['seconds']} s")

    def drain_notifications(self, server_url: str, database: str, limit_s: float = 120.0) -> dict:
        """After a write scenario: waits until every notification is delivered (the run's one
        subscriber answers 204 at once), asking for a dispatch each second as the periodic
        trigger would. How many were waiting when the load stopped, how long they took, and
        how many were still undelivered at the limit (each one a failure: nothing may be lost)."""
        undelivered_sql = "SELECT count(*) FROM notifications WHERE status <> 'delivered'"
        waiting = int(self.postgres.psql(database, undelivered_sql))
        started = time.monotonic()
        undelivered = waiting
        while undelivered and time.monotonic() - started < limit_s:
            http_request(server_url, "POST", "/notifications/dispatch", self.notify_token)
            deadline = time.monotonic() + 1
            while undelivered and time.monotonic() < deadline:
                time.sleep(0.05)
                undelivered = int(self.postgres.psql(database, undelivered_sql))
        return {"waiting_when_load_stopped": waiting, "seconds": round(time.monotonic() - started, 2),
                "undelivered": undelivered}

    def attach_statements(self) -> None:
        for entry in self.results:
            counted = self.statement_counts.get((entry["target"], entry["scenario"]))
            if counted:
                entry["statements_per_request"] = counted["statements_per_request"]
                entry["pool_statements_per_request"] = counted["pool_statements_per_request"]
                entry["event_fn_statements_per_request"] = counted["event_fn_statements_per_request"]

    def exact_statements(self, target: str, server_url: str, scenario: str, database: str,
                         path: str | None) -> None:
        """Statements per request from pg_stat_statements over a fixed number of sequential
        requests (under load, requests still in flight when wrk stops blur the count)."""
        if not self.postgres:
            return
        mode, default_path, _, _, _ = SCENARIOS[scenario]
        path = path or default_path
        ids = [int(i) for i in self.ids_files["mix"].read_text().split()]
        count = 20 if self.smoke else 100
        rng = __import__("random").Random(7)
        self.postgres.reset_statements()
        statuses = []
        for i in range(count):
            kind = mode if mode != "mix" else ("get" if i % 5 else "post")
            if kind == "get":
                request = ("GET", f"/events/{rng.choice(ids)}", None, None)
            elif kind == "list":
                request = ("GET", path, None, None)
            elif kind == "post":
                request = ("POST", "/events", {"title": f"Counted {i}", "date": "2025-05-05"}, "application/json")
            else:
                request = ("PATCH", f"/events/{rng.choice(ids)}", {"title": f"Counted {i}"},
                           "application/merge-patch+json")
            method, url_path, body, content_type = request
            status, _, _ = http_request(server_url, method, url_path, self.token, body,
                                        content_type or "application/json")
            statuses.append(status)
        # Work a component does after answering (notify-fn's dispatch) counts too.
        self.postgres.wait_quiet(database, 10)
        counted = self.count_statements(database, count)
        counted["sequential_requests"] = count
        counted["non_2xx"] = sum(1 for st in statuses if not 200 <= st < 300)
        self.statement_counts[(target, scenario)] = counted

    def count_statements(self, database: str, requests: int) -> dict:
        rows = self.postgres.statements(database)
        pool = sum(calls for query, calls in rows if query.strip().rstrip(";") in POOL_CLEANUP)
        app = sum(calls for query, calls in rows if query.strip().rstrip(";") not in POOL_CLEANUP)
        # event-fn's statements are those on the events table: notify-fn never reads it (a
        # notification carries the event as it was).
        event_fn = sum(calls for query, calls in rows if re.search(r"\bevents\b", query))
        top = sorted(rows, key=lambda r: -r[1])[:25]
        return {
            "statements_per_request": round(app / requests, 3) if requests else None,
            "pool_statements_per_request": round(pool / requests, 3) if requests else None,
            "event_fn_statements_per_request": round(event_fn / requests, 3) if requests else None,
            "statements": [{"query": " ".join(q.split())[:200], "calls": c} for q, c in top],
        }

    # -- the whole run

    def run(self) -> int:
        started = time.monotonic()
        self.measurements["load_average_at_start"] = os.getloadavg()
        try:
            if self.external:
                self.run_external()
            else:
                self.run_local()
        finally:
            self.receiver.stop()
            if self.postgres:
                self.postgres.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)
        elapsed = time.monotonic() - started
        self.measurements["load_average_at_end"] = os.getloadavg()
        return self.report(elapsed)

    def run_external(self) -> None:
        base = self.args.base_url.rstrip("/")
        status, _, _ = http_request(base, "GET", "/events?limit=1", self.token)
        if status != 200:
            raise SystemExit(f"{base}/events answered {status}: check --base-url and --token")
        self.seed_through_api(base)
        sub = subscribe(base, self.token, self.receiver)
        self.measurements["subscription"] = sub
        self.measure_notifications(base, sub)
        for scenario in ("get_by_id", "list_first", "post", "patch", "mix_80_20"):
            self.run_scenario("target", base, scenario, "mix")
        for name, why in (("cold_start", "needs the bench to start devhost"),
                          ("list_deep_scale", "needs SQL access to seed 1,000,000 rows"),
                          ("statements_per_request", "needs the bench's own PostgreSQL"),
                          ("native_baseline", "runs only with the bench's own PostgreSQL")):
            self.check(name, "skipped", why)

    def run_local(self) -> None:
        for path, what in ((DEVHOST, "scripts/build"), (NATIVE, "cargo build --release -p bench-native")):
            if not path.is_file():
                raise SystemExit(f"{path} is missing: run {what} (bench/run does)")
        self.start_postgres()
        self.measure_wasm_sizes()
        self.measure_cold_start()

        # Request mixes on the 10,000-event databases.
        devhost = self.start_devhost("bench_devhost")
        try:
            sub = subscribe(devhost.base_url, self.token, self.receiver)
            self.measurements["subscription"] = sub
            if not sub["ok"]:
                log(f"subscription failed ({sub['status']}): POST runs without a webhook subscriber")
            # At light load, so before the load runs leave a backlog of deliveries behind.
            self.measure_notifications(devhost.base_url, sub)
            for scenario in ("get_by_id", "list_first", "post", "patch", "mix_80_20"):
                self.run_scenario("devhost", devhost.base_url, scenario, "mix", devhost)
            self.measurements["devhost_peak_rss_mib"] = round((devhost.peak_rss_kib() or 0) / 1024, 1)
        finally:
            devhost.stop()
        native = self.start_native("bench_native")
        try:
            for scenario in ("get_by_id", "list_first", "post", "mix_80_20"):
                self.run_scenario("native", native.base_url, scenario, "mix", native)
        finally:
            native.stop()
        if not self.smoke:
            # Profile: the native server with Spin's pool policy, to split devhost's gap to native
            # into the pool policy's share and the rest (WebAssembly, instance per request).
            native = self.start_native("bench_native", spin_pool=True)
            try:
                for scenario in ("get_by_id", "post"):
                    self.run_scenario("native-spinpool", native.base_url, scenario, "mix", native)
            finally:
                native.stop()

        # The scale database: first page and a page at its end.
        devhost = self.start_devhost("bench_scale")
        try:
            try:
                self.deep_path = self.find_deep_page(devhost.base_url)
                self.measurements["deep_page"] = {"path": self.deep_path, "row": self.scale_row}
            except Exception as error:  # noqa: BLE001
                self.check("list_deep_scale", "failed", str(error))
            for scenario in ("list_first_scale", "list_deep_scale"):
                if scenario == "list_deep_scale" and not self.deep_path:
                    continue
                self.run_scenario("devhost", devhost.base_url, scenario, "scale", devhost, self.deep_path
                                  if scenario == "list_deep_scale" else None)
        finally:
            devhost.stop()
        native = self.start_native("bench_scale")
        try:
            for scenario in ("list_first_scale", "list_deep_scale"):
                if scenario == "list_deep_scale" and not self.deep_path:
                    continue
                self.run_scenario("native", native.base_url, scenario, "scale", native,
                                  self.deep_path if scenario == "list_deep_scale" else None)
        finally:
            native.stop()

    def measure_wasm_sizes(self) -> None:
        manifest = tomllib.loads((ROOT / "spin.toml").read_text())
        sizes = {}
        for component, spec in manifest.get("component", {}).items():
            source = ROOT / spec.get("source", "")
            sizes[component] = source.stat().st_size if source.is_file() else None
        self.measurements["wasm_bytes"] = sizes

    def measure_cold_start(self) -> None:
        runs = 1 if self.smoke else 5
        env = self.app_env("bench_devhost")
        cache = self.workdir / "devhost-cache"
        try:
            cold_start(env, cache, self.token, 1)  # fills the cache
            warm = cold_start(env, cache, self.token, runs)
            fresh = cold_start(env, None, self.token, max(1, runs - 2))
            self.measurements["cold_start_ms"] = {
                "warm_cache": warm, "warm_cache_median": statistics.median(warm),
                "no_cache": fresh, "no_cache_median": statistics.median(fresh),
            }
            self.check("cold_start", "passed", f"warm cache median {statistics.median(warm)} ms, "
                                               f"no cache median {statistics.median(fresh)} ms")
        except Exception as error:  # noqa: BLE001
            self.check("cold_start", "failed", str(error))

    def measure_notifications(self, base_url: str, sub: dict) -> None:
        if not sub["ok"]:
            # 404: notify-fn does not offer subscriptions (yet); anything else is a failure.
            status = "skipped" if sub["status"] == 404 else "failed"
            self.measurements["notification_latency"] = {
                "missed": f"POST /subscriptions answered {sub['status']}: {sub['detail'][:120]}"}
            self.check("notification_latency", status,
                       f"not measured: POST /subscriptions answered {sub['status']}")
            return
        result = notification_latency(base_url, self.token, self.receiver, 30 if self.smoke else 200)
        self.measurements["notification_latency"] = result
        if result["webhooks_matched"] < result["created"] or not result["created"]:
            self.check("notification_latency", "failed",
                       f"{result['webhooks_matched']} of {result['created']} webhooks arrived within 10 s")
        else:
            self.check("notification_latency", "passed",
                       f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")

    # -- report

    def native_for(self, entry: dict) -> dict | None:
        native_of = SCENARIOS[entry["scenario"]][3]
        return next((r for r in self.results if r["target"] == "native" and r["scenario"] == native_of
                     and r["connections"] == entry["connections"] and "rps" in r), None)

    def report(self, elapsed: float) -> int:
        self.attach_statements()
        for entry in self.results:
            if entry["target"] not in ("native", "native-spinpool") and "rps" in entry:
                native = self.native_for(entry)
                if native and native["rps"]:
                    entry["rps_ratio_to_native"] = round(entry["rps"] / native["rps"], 3)
                    entry["p99_ratio_to_native"] = round(entry["p99_ms"] / native["p99_ms"], 2) \
                        if native["p99_ms"] else None
                    entry["native_reference"] = SCENARIOS[entry["scenario"]][3]
        self.print_table()
        targets = self.targets()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip())
        document = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "mode": "smoke" if self.smoke else "full",
            "target": self.args.base_url or "devhost (release) started by the bench",
            "commit": commit + ("+dirty" if dirty else ""),
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "cpu": cpu_model(),
                        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
            "load_generator": wrk_version(),
            "settings": {"duration_s": self.duration, "warmup_s": self.warmup, "connections": self.connections,
                         "events": self.seed_events, "scale_events": self.scale_events},
            "scenarios": {name: spec[4] for name, spec in SCENARIOS.items()},
            "results": self.results,
            "measurements": self.measurements,
            "checks": self.checks,
            "statement_counts": {f"{t}/{sc}": v for (t, sc), v in self.statement_counts.items()},
            "targets": targets,
            "elapsed_s": round(elapsed, 1),
        }
        out = Path(self.args.out_dir or BENCH / "results")
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{stamp}{'-smoke' if self.smoke else ''}"
        (out / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
        (out / ("latest-smoke.json" if self.smoke else "latest.json")).write_text(json.dumps(document, indent=2) + "\n")
        markdown = to_markdown(document)
        (out / f"{name}.md").write_text(markdown)
        (out / ("latest-smoke.md" if self.smoke else "latest.md")).write_text(markdown)
        chart = out / f"{name}.png"
        try:
            draw_chart(self.results, chart, document)
            shutil.copyfile(chart, out / ("latest-smoke.png" if self.smoke else "latest.png"))
            log(f"chart: {chart.relative_to(ROOT) if chart.is_relative_to(ROOT) else chart}")
        except ImportError:
            log("matplotlib is not installed: no chart (bench/run installs it)")
        log(f"results: {out / (name + '.json')}")
        self.print_targets(targets)

        passed = sum(1 for r in self.results if r["status"] == "passed") + \
            sum(1 for c in self.checks if c["status"] == "passed")
        failed = sum(1 for r in self.results if r["status"] != "passed") + \
            sum(1 for c in self.checks if c["status"] == "failed")
        skipped = sum(1 for c in self.checks if c["status"] == "skipped")
        print(f"bench finished in {elapsed:.0f} s")
        for entry in self.results:
            if entry["status"] != "passed":
                print(f"FAILED {entry['target']} {entry['scenario']} c={entry['connections']}: "
                      f"{entry.get('detail') or str(entry.get('errors')) + ' errors'}")
        for c in self.checks:
            if c["status"] == "failed":
                print(f"FAILED {c['name']}: {c['detail']}")
        print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
        return 1 if failed else 0

    def print_table(self) -> None:
        header = f"{'target':15} {'scenario':17} {'conn':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} " \
                 f"{'errors':>6} {'x native':>8} {'p99 x nat':>9} {'stmt/req':>8} {'ev-fn':>6} {'+pool':>6} {'RSS MiB':>7}"
        print()
        print(header)
        print("-" * len(header))
        for r in self.results:
            if "rps" not in r:
                print(f"{r['target']:15} {r['scenario']:17} {r['connections']:>4} FAILED: {r.get('detail', '')[:80]}")
                continue
            def fmt(v, f):
                width = int(re.sub(r"\D.*", "", f.lstrip(">")) or 0)
                return format(v, f) if isinstance(v, (int, float)) else "-".rjust(width)

            print(f"{r['target']:15} {r['scenario']:17} {r['connections']:>4} {r['rps']:>9.1f} "
                  f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} "
                  f"{fmt(r.get('rps_ratio_to_native'), '>8.3f')} {fmt(r.get('p99_ratio_to_native'), '>9.2f')} "
                  f"{fmt(r.get('statements_per_request'), '>8.2f')} {fmt(r.get('event_fn_statements_per_request'), '>6.2f')} "
                  f"{fmt(r.get('pool_statements_per_request'), '>6.2f')} "
                  f"{fmt(r.get('peak_rss_mib'), '>7.1f')}")
        print()
        m = self.measurements
        if "cold_start_ms" in m:
            c = m["cold_start_ms"]
            print(f"cold start (launch -> first 200): warm cache {c['warm_cache']} ms, no cache {c['no_cache']} ms")
        if "notification_latency" in m:
            print(f"notification latency: {m['notification_latency']}")
        print(f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end')} "
              f"(other work on this {os.cpu_count()}-CPU machine skews every figure)")
        if "wasm_bytes" in m:
            print("wasm sizes: " + ", ".join(f"{k} {v / 1024:.0f} KiB" if v else f"{k} missing"
                                            for k, v in m["wasm_bytes"].items()))
        print()

    def _result(self, target, scenario, connections):
        return next((r for r in self.results if r["target"] == target and r["scenario"] == scenario
                     and r["connections"] == connections and "rps" in r), None)

    def targets(self) -> list[dict]:
        """The issue's targets, reported (never enforced)."""
        out = []
        app = "target" if self.external else "devhost"
        hi = max(self.connections)

        def add(name, value, met, detail=""):
            out.append({"target": name, "value": value, "met": met if value is not None else None,
                        "detail": detail})

        for c in self.connections:
            r = self._result(app, "get_by_id", c)
            if r and "rps_ratio_to_native" in r:
                add(f"GET by id >= 0.25x native rps (c={c})", r["rps_ratio_to_native"], r["rps_ratio_to_native"] >= 0.25)
                add(f"GET by id p99 < 5x native (c={c})", r["p99_ratio_to_native"],
                    r["p99_ratio_to_native"] is not None and r["p99_ratio_to_native"] < 5)
            r = self._result(app, "post", c)
            if r and "rps_ratio_to_native" in r:
                add(f"POST >= 0.2x native plain insert (c={c})", r["rps_ratio_to_native"],
                    r["rps_ratio_to_native"] >= 0.2)
            deep, first = self._result(app, "list_deep_scale", c), self._result(app, "list_first_scale", c)
            if deep and first:
                ratio = round(deep["p50_ms"] / first["p50_ms"], 2) if first["p50_ms"] else None
                add(f"deep page within 1.5x first page latency, p50 (c={c})", ratio, ratio is not None and ratio <= 1.5,
                    f"row {self.scale_row:,} of {self.scale_events:,}")
        n = self.measurements.get("notification_latency", {})
        add("notification latency p99 < 100 ms", n.get("p99_ms"), n.get("p99_ms") is not None and n["p99_ms"] < 100,
            n.get("missed", ""))
        c = self.measurements.get("cold_start_ms", {})
        add("cold start with warm cache < 100 ms (median)", c.get("warm_cache_median"),
            c.get("warm_cache_median") is not None and c["warm_cache_median"] < 100)
        rss = [r.get("peak_rss_mib") for r in self.results if r["target"] == "devhost" and r["connections"] == hi]
        rss = [v for v in rss if v]
        add(f"devhost RSS < 150 MB at {hi} connections (peak)", max(rss) if rss else None,
            bool(rss) and max(rss) * 1.048576 < 150)
        errors = sum(r.get("errors") or 0 for r in self.results)
        add("zero errors in every scenario", errors, all(r["status"] == "passed" for r in self.results))
        for scenario in ("get_by_id", "list_first", "post", "patch"):
            runs = [r for r in self.results if r["target"] == app and r["scenario"] == scenario
                    and r.get("event_fn_statements_per_request") is not None]
            if runs:
                worst = max(r["event_fn_statements_per_request"] for r in runs)
                total = max(r["statements_per_request"] for r in runs)
                add(f"event-fn statements per request = 1 ({scenario})", worst, worst <= 1.01,
                    f"all app statements incl. notify-fn's dispatch: {total}; the pool's session reset apart")
        return out

    def print_targets(self, targets: list[dict]) -> None:
        print("\ntargets (reported, not enforced):")
        for t in targets:
            mark = "n/a " if t["value"] is None else ("met " if t["met"] else "MISS")
            print(f"  [{mark}] {t['target']}: {t['value']}{'  (' + t['detail'] + ')' if t['detail'] else ''}")
        print()


def to_markdown(document: dict) -> str:
    """The results as Markdown tables, for bench/README.md."""
    def num(value, spec):
        return format(value, spec) if isinstance(value, (int, float)) else "-"

    lines = [
        f"Run: {document['mode']}, {document['date']}, commit {document['commit']}, "
        f"{document['machine']['cpus']} CPUs ({document['machine']['cpu']}), {document['load_generator']}, "
        f"{document['settings']['duration_s']} s per run after {document['settings']['warmup_s']} s warm-up; "
        f"load average {tuple(round(x, 1) for x in document['measurements'].get('load_average_at_start', ()))} "
        f"at start, {tuple(round(x, 1) for x in document['measurements'].get('load_average_at_end', ()))} at end.",
        "",
        "| target | scenario | conn | req/s | p50 ms | p99 ms | errors | × native req/s | × native p99 "
        "| statements/req | of which event-fn | + pool session reset | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in document["results"]:
        if "rps" not in r:
            lines.append(f"| {r['target']} | {r['scenario']} | {r['connections']} | failed: {r.get('detail', '')[:60]} "
                         "| | | | | | | | | |")
            continue
        lines.append(
            f"| {r['target']} | {r['scenario']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {num(r.get('rps_ratio_to_native'), '.3f')} "
            f"| {num(r.get('p99_ratio_to_native'), '.2f')} | {num(r.get('statements_per_request'), '.2f')} "
            f"| {num(r.get('event_fn_statements_per_request'), '.2f')} "
            f"| {num(r.get('pool_statements_per_request'), '.2f')} | {num(r.get('peak_rss_mib'), '.1f')} |")
    m = document["measurements"]
    lines += ["", "| measurement | value |", "| --- | --- |"]
    if "cold_start_ms" in m:
        c = m["cold_start_ms"]
        lines.append(f"| cold start, warm cache (ms) | median {c['warm_cache_median']} of {c['warm_cache']} |")
        lines.append(f"| cold start, no cache (ms) | median {c['no_cache_median']} of {c['no_cache']} |")
    n = m.get("notification_latency", {})
    if "p50_ms" in n:
        lines.append(f"| notification latency (ms) | p50 {n['p50_ms']}, p99 {n['p99_ms']}, max {n['max_ms']:.1f} "
                     f"({n['webhooks_matched']} of {n['posts']} matched) |")
    elif n:
        lines.append(f"| notification latency | not measured: {n.get('missed') or n} |")
    for component, size in (m.get("wasm_bytes") or {}).items():
        lines.append(f"| {component}.wasm | {num(size, ',')} bytes |")
    lines += ["", "| target (reported, not enforced) | value | met |", "| --- | --- | --- |"]
    for t in document["targets"]:
        met = "n/a" if t["value"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['value']} | {met} |")
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def wrk_version() -> str:
    result = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0].strip() if text else "wrk"


def draw_chart(results: list[dict], path: Path, document: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    connections = sorted({r["connections"] for r in results})
    fig, axes = plt.subplots(1, len(connections), figsize=(max(9, 6.5 * len(connections)), 6.5), squeeze=False,
                             sharey=True)
    levels = ["50", "75", "90", "95", "99", "99.9"]
    colors = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(SCENARIOS)}
    styles = {"native": "--", "native-spinpool": ":"}
    for ax, c in zip(axes[0], connections):
        for r in results:
            if r["connections"] != c or "raw" not in r:
                continue
            pct = r["raw"]["latency_us"]["percentiles"]
            ax.plot(levels, [max(pct[level], 1) / 1000 for level in levels], styles.get(r["target"], "-"),
                    color=colors.get(r["scenario"]), marker="o", markersize=3,
                    label=f"{r['target']} {r['scenario']} ({r['rps']:.0f}/s)")
        ax.set_yscale("log")
        ax.set_title(f"{c} connection{'s' if c > 1 else ''}")
        ax.set_xlabel("percentile")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left")
    axes[0][0].set_ylabel("latency (ms, log scale)")
    fig.suptitle(f"Latency percentiles per scenario ({document['mode']} run, {document['date']}, "
                 f"commit {document['commit']}, {document['machine']['cpus']} CPUs)\n"
                 "solid: devhost (or --base-url target); dashed: native baseline; dotted: native with Spin's pool policy",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per scenario, 1 and 32 connections")
    parser.add_argument("--base-url", help="drive this running deployment instead of starting devhost")
    parser.add_argument("--token", help="its API bearer token (required with --base-url)")
    parser.add_argument("--duration", type=int, help="whole seconds per measured run (10; smoke 1)")
    parser.add_argument("--warmup", type=int, help="whole seconds of warm-up before each run, 0 for none (2; smoke 0)")
    parser.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated connection counts (1,32,128; smoke 1,32)")
    parser.add_argument("--events", type=int, help="events seeded for the request mixes (10000; smoke 1000)")
    parser.add_argument("--scale-events", type=int, help="events in the scale database (1000000; smoke 20000)")
    parser.add_argument("--out-dir", help="where results go (bench/results)")
    args = parser.parse_args()
    if args.base_url is not None and not args.base_url.startswith(("http://", "https://")):
        parser.error("--base-url needs an http:// or https:// URL")
    if args.base_url and not args.token:
        parser.error("--base-url needs --token")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk (bench/run does)")
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
