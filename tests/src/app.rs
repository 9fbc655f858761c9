//! The app under test as most tests use it: event-fn and notify-fn from `spin.toml` on a fresh
//! database, the test tokens, a client that sends them, and the assertion every API error
//! answer goes through.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::{Devhost, DevhostOptions, HttpResponse, Postgres, Role, StubServer, postgres};

/// The API's bearer token. Tokens have at least 32 bytes: the components refuse shorter ones
/// as a misconfiguration.
pub const TOKEN: &str = "e2e-api-token-of-at-least-32-bytes";
/// The bearer token of notify-fn's internal routes (the dispatch).
pub const NOTIFY_TOKEN: &str = "e2e-notify-token-of-at-least-32-bytes";

/// event-fn (and notify-fn) on devhost with a fresh database.
pub struct App {
    pub devhost: Devhost,
    pub database: String,
}

impl App {
    pub fn start() -> Result<Self> {
        Self::start_on(postgres())
    }

    pub fn start_on(postgres: &Postgres) -> Result<Self> {
        Self::start_with(postgres, |options| options)
    }

    /// Starts the app on a new database with `adjust` applied to the default options.
    pub fn start_with(
        postgres: &Postgres,
        adjust: impl FnOnce(DevhostOptions) -> DevhostOptions,
    ) -> Result<Self> {
        let url = postgres.create_database()?;
        let database = database_name(&url)?;
        let devhost = Devhost::start(adjust(app_options(&url, postgres.port())))?;
        Ok(Self { devhost, database })
    }

    /// Asks notify-fn to deliver what is due (it answers at once and works on).
    pub fn dispatch(&self) -> Result<()> {
        let request = self
            .devhost
            .request("POST", "/notifications/dispatch")
            .header("authorization", format!("Bearer {NOTIFY_TOKEN}"));
        let response = HttpResponse::send(request)?;
        ensure!(
            response.status == 202,
            "dispatch: {} {}",
            response.status,
            response.body
        );
        Ok(())
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<HttpResponse> {
        let mut request = self
            .devhost
            .request(method, path)
            .header("authorization", format!("Bearer {TOKEN}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        HttpResponse::send(request)
    }

    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        self.send("GET", path, &[], None)
    }

    pub fn post(&self, body: &Value) -> Result<HttpResponse> {
        self.send(
            "POST",
            "/events",
            &[("content-type", "application/json")],
            Some(&body.to_string()),
        )
    }

    pub fn create(&self, title: &str, date: &str) -> Result<Value> {
        let response = self.post(&json!({ "title": title, "date": date }))?;
        ensure!(
            response.status == 201,
            "create: {} {}",
            response.status,
            response.body
        );
        response.json()
    }

    /// POSTs `body` as JSON to `path`.
    pub fn json_post(&self, path: &str, body: &Value) -> Result<HttpResponse> {
        self.send(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(&body.to_string()),
        )
    }

    /// Subscribes the receiver (to `types`, or all) and gives it the signing secret.
    pub fn subscribe(&self, receiver: &StubServer, types: Option<&[&str]>) -> Result<Value> {
        let mut body = json!({ "url": receiver.url() });
        if let Some(types) = types {
            body["types"] = json!(types);
        }
        let response = self.json_post("/subscriptions", &body)?;
        ensure!(
            response.status == 201,
            "subscribe: {} {}",
            response.status,
            response.body
        );
        let subscription = response.json()?;
        receiver.set_secret(subscription["secret"].as_str().context("secret")?);
        Ok(subscription)
    }

    /// Calls dispatch until `done` holds for the notification, or fails after `seconds`.
    pub fn dispatch_until(
        &self,
        seconds: u64,
        done: impl Fn(&Value) -> bool,
        notification_id: i64,
    ) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            self.dispatch()?;
            std::thread::sleep(Duration::from_millis(100));
            let notification = self.get(&format!("/notifications/{notification_id}"))?.json()?;
            if done(&notification) {
                return Ok(notification);
            }
            ensure!(Instant::now() < deadline, "timed out: {notification:#}");
        }
    }

    /// Waits until no dispatch holds the dispatcher lease.
    pub fn wait_until_no_dispatch(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .sql("SELECT coalesce(holder, '') FROM dispatcher")?
            .is_empty()
        {
            ensure!(
                Instant::now() < deadline,
                "the dispatcher lease was never released"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn sql(&self, statement: &str) -> Result<String> {
        postgres().psql(&self.database, statement)
    }

    pub fn count(&self, table: &str) -> Result<i64> {
        Ok(self.sql(&format!("SELECT count(*) FROM {table}"))?.parse()?)
    }

    /// Statements of `role` (a function's) waiting for a lock in the app's database.
    pub fn waiting(&self, role: Role) -> Result<i64> {
        Ok(self
            .sql(&format!(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND usename = '{}' AND wait_event_type = 'Lock'",
                role.name()
            ))?
            .parse()?)
    }
}

/// Waits until `done`, looking every 20 ms, or fails after `seconds` naming `what`.
pub fn eventually(seconds: u64, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done()? {
        ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The database a connection URL names.
pub fn database_name(url: &str) -> Result<String> {
    let path = url.rsplit('/').next().context("a URL with a database")?;
    Ok(path.split('?').next().unwrap_or(path).to_owned())
}

/// The environment devhost runs every app test with, beyond the app's variables: the one
/// place to switch a devhost mode on for the whole suite. Another runtime (`E2E_RUNTIME`) gets
/// it too and ignores what it does not know.
/// - `DEVHOST_EMPTY_QUERY_TRAP`: a query that returns no rows traps, naming the statement, as
///   Spin 4.0.0-4.0.2 hang forever on one (issue 16): any such query of the app fails a test.
const APP_ENV: &[(&str, &str)] = &[("DEVHOST_EMPTY_QUERY_TRAP", "1")];

/// The app's variables for a test: its database (`db_url`, as `Postgres::create_database`
/// returns it), which each function reaches as its own role, as deployed, so a missing grant
/// fails a test; the test tokens, webhooks to loopback allowed, and a retry schedule of
/// fractions of a second; and `APP_ENV`.
pub fn app_options(db_url: &str, db_port: u16) -> DevhostOptions {
    let mut options = DevhostOptions::new("spin.toml");
    for (name, value) in APP_ENV {
        options = options.env(name, value);
    }
    options
        .variable("event_fn_db_url", &Role::EventFn.in_url(db_url))
        .variable("notify_fn_db_url", &Role::NotifyFn.in_url(db_url))
        .variable("db_port", &db_port.to_string())
        .variable("api_token", TOKEN)
        .variable("notify_token", NOTIFY_TOKEN)
        .variable("allow_private_webhooks", "true")
        .variable("delivery_schedule", "150ms,150ms")
        .variable("delivery_timeout_ms", &DELIVERY_TIMEOUT_MS.to_string())
}

/// The test app's attempt timeout: how long a receiver that never answers holds an attempt.
pub const DELIVERY_TIMEOUT_MS: u64 = 1000;

/// Asserts an RFC 9457 problem with `status` whose `errors` name exactly `fields`.
pub fn assert_problem(response: &HttpResponse, status: u16, fields: &[&str]) -> Result<Value> {
    ensure!(
        response.status == status,
        "expected {status}, got {} {}",
        response.status,
        response.body
    );
    ensure!(
        response.header("content-type") == Some("application/problem+json"),
        "content type {:?}",
        response.header("content-type")
    );
    let problem = response.json()?;
    for member in ["type", "title", "status", "detail"] {
        ensure!(
            problem.get(member).is_some(),
            "problem without {member}: {problem}"
        );
    }
    ensure!(problem["status"] == status, "{problem}");
    let mut named: Vec<String> = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    named.sort();
    let mut expected: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    expected.sort();
    ensure!(
        named == expected,
        "fields {named:?}, expected {expected:?}: {problem}"
    );
    Ok(problem)
}
