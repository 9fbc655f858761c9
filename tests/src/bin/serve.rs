//! Serves the app for tools that test it from outside (tests/contract/run.sh: newman,
//! schemathesis): a throwaway PostgreSQL with a fresh migrated database and devhost running
//! spin.toml, each function as its own database role, until SIGINT, SIGTERM or SIGHUP; then
//! everything is stopped and removed.
//!
//!   serve [--env-file PATH]
//!
//! Prints `BASE_URL=...`, `API_TOKEN=...` and `NOTIFY_TOKEN=...` lines once the app serves (and
//! writes them to PATH). Webhooks may only reach `http://127.0.0.1:9` (nothing listens there),
//! and subscriptions to private addresses are refused: whatever URL a test subscribes, no
//! delivery leaves the machine. Deliveries retry once after 100 ms, then fail.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use e2e::{Devhost, DevhostOptions, Postgres, Role};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    if let Err(error) = run() {
        eprintln!("serve: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut env_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--env-file" => env_file = Some(args.next().context("--env-file needs a path")?),
            _ => bail!("usage: serve [--env-file PATH]"),
        }
    }
    let api_token = std::env::var("API_TOKEN").unwrap_or_else(|_| random_token());
    let notify_token = std::env::var("NOTIFY_TOKEN").unwrap_or_else(|_| random_token());

    let postgres = Postgres::start().context("starting PostgreSQL")?;
    let served = serve(&postgres, &api_token, &notify_token, env_file.as_deref());
    postgres.shutdown();
    served
}

fn serve(postgres: &Postgres, api_token: &str, notify_token: &str, env_file: Option<&str>) -> Result<()> {
    let db_url = postgres.create_database()?;
    // As the e2e suite: a query that returns no rows traps, as Spin 4.0.0-4.0.2 hang on one.
    let options = DevhostOptions::new("spin.toml")
        .env("DEVHOST_EMPTY_QUERY_TRAP", "1")
        .variable("event_fn_db_url", &Role::EventFn.in_url(&db_url))
        .variable("notify_fn_db_url", &Role::NotifyFn.in_url(&db_url))
        .variable("db_port", &postgres.port().to_string())
        .variable("api_token", api_token)
        .variable("notify_token", notify_token)
        .variable("allow_private_webhooks", "false")
        .variable("webhook_hosts", "http://127.0.0.1:9")
        .variable("delivery_schedule", "100ms")
        .variable("delivery_timeout_ms", "1000");
    let devhost = Devhost::start(options).context("starting devhost")?;
    let lines = format!(
        "BASE_URL={}\nAPI_TOKEN={api_token}\nNOTIFY_TOKEN={notify_token}\n",
        devhost.base_url()
    );
    if let Some(path) = env_file {
        std::fs::write(path, &lines).with_context(|| format!("writing {path}"))?;
    }
    print!("{lines}");
    std::io::stdout().flush()?;
    let mut devhost = devhost;
    while !STOP.load(Ordering::SeqCst) {
        if !devhost.is_running() {
            bail!("devhost stopped:\n{}", devhost.output());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Ok(log) = std::env::var("DEVHOST_LOG") {
        let _ = std::fs::write(log, devhost.output());
    }
    Ok(())
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut random, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
