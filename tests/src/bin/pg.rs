//! The harness's PostgreSQL for tools outside the test suite (bench/driver): the same throwaway
//! server the end-to-end tests start, driven over stdin and stdout with one JSON object a line,
//! until stdin ends or SIGINT, SIGTERM or SIGHUP arrives; then it is stopped and removed.
//!
//!   pg [--stat-statements]
//!
//! Once the server runs it prints `{"port": P, "url": "postgres://…/postgres?sslmode=disable"}`,
//! the superuser's URL; the app's database roles exist (`e2e::Role`), and with `trust`
//! authentication a URL with another user name connects as that role.
//! Then each request line gets one answer line, `{"ok": …}` or `{"error": "…"}`:
//!
//!   {"op": "create_database"}                  → the URL of a new database with `sql/` applied
//!   {"op": "psql", "database": D, "sql": S}    → psql's unaligned, tuples-only output
//!
//! `--stat-statements` preloads pg_stat_statements (top-level statements, utility statements
//! too) and creates its view in the `postgres` database, for counting statements per request.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use e2e::Postgres;
use serde_json::{Value, json};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// pg_stat_statements' settings: statements as clients send them (not those run inside
/// functions or triggers), utility statements too. Set once the library is loaded (PostgreSQL
/// refuses them before), and read on a reload.
const STAT_STATEMENTS: &[(&str, &str)] = &[
    ("pg_stat_statements.track", "top"),
    ("pg_stat_statements.track_utility", "on"),
];

fn main() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    if let Err(error) = run() {
        eprintln!("pg: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut stat_statements = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--stat-statements" => stat_statements = true,
            _ => bail!("usage: pg [--stat-statements]"),
        }
    }
    let postgres = Postgres::start().context("starting PostgreSQL")?;
    let served = serve(&postgres, stat_statements);
    postgres.shutdown();
    served
}

fn serve(postgres: &Postgres, stat_statements: bool) -> Result<()> {
    if stat_statements {
        preload_stat_statements(postgres)?;
    }
    let mut stdout = std::io::stdout().lock();
    let ready = json!({"port": postgres.port(), "url": postgres.url("postgres")});
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;

    // stdin is read on a thread of its own, so a signal is noticed while no request comes.
    let (lines, requests) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    while !STOP.load(Ordering::SeqCst) {
        let line = match requests.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let answer = match answer(postgres, &line) {
            Ok(value) => json!({"ok": value}),
            Err(error) => json!({"error": format!("{error:#}")}),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// Through `ALTER SYSTEM`, so the harness needs no option for it: the settings go to the data
/// directory's `postgresql.auto.conf`, which the harness's own command-line settings do not
/// touch. A preloaded library is loaded at start only, hence the restart.
fn preload_stat_statements(postgres: &Postgres) -> Result<()> {
    postgres.psql(
        "postgres",
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
    )?;
    postgres.restart()?;
    for (name, value) in STAT_STATEMENTS {
        postgres.psql("postgres", &format!("ALTER SYSTEM SET {name} = '{value}'"))?;
    }
    postgres.psql("postgres", "SELECT pg_reload_conf()")?;
    postgres.psql("postgres", "CREATE EXTENSION pg_stat_statements")?;
    Ok(())
}

fn answer(postgres: &Postgres, line: &str) -> Result<Value> {
    let request: Value = serde_json::from_str(line).context("a request is one JSON object")?;
    let field = |name: &str| {
        request[name]
            .as_str()
            .with_context(|| format!("the request has no string {name:?}"))
    };
    match field("op")? {
        "create_database" => Ok(postgres.create_database()?.into()),
        "psql" => Ok(postgres.psql(field("database")?, field("sql")?)?.into()),
        other => bail!("unknown op {other:?}: create_database or psql"),
    }
}
