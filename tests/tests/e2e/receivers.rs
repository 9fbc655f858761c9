//! Webhooks against receivers nobody here wrote (issue 11), each run as a process of its own
//! from tests/receivers (pinned; installed under target/ by tests/receivers/install.sh):
//! Python's `http.server` with no chunked support, a Flask app verifying with the Standard
//! Webhooks reference library and parsing with the CloudEvents Python SDK, and Node parsing
//! with the CloudEvents JavaScript SDK. Each receiver appends a JSON line per request to a
//! file this test reads. And isolation: a healthy subscriber keeps its latency beside one that
//! never answers, one that refuses connections and one that answers slowly.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use e2e::{Answer, App, DELIVERY_TIMEOUT_MS, StubServer, TestResult, workspace_root};
use serde_json::{Value, json};

/// A receiver from tests/receivers.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `plain.py`: `http.server` reading exactly `Content-Length` bytes, `standardwebhooks`.
    NoChunked,
    /// `flask_app.py`: Flask, `standardwebhooks`, the CloudEvents Python SDK.
    Flask,
    /// `cloudevents.cjs`: Node, the CloudEvents JavaScript SDK (`HTTP.toEvent`).
    CloudEventsJs,
}

impl Kind {
    fn command(self, tools: &Path) -> Command {
        let python = tools.join("venv/bin/python");
        let (program, script) = match self {
            Kind::NoChunked => (python, "plain.py"),
            Kind::Flask => (python, "flask_app.py"),
            Kind::CloudEventsJs => (PathBuf::from("node"), "cloudevents.cjs"),
        };
        let mut command = Command::new(program);
        command
            .arg(workspace_root().join("tests/receivers").join(script))
            .env("RECEIVER_TOOLS", tools);
        command
    }
}

/// The receivers' pinned tools, installed once per run (the script does nothing when they
/// are already there, as after the test command's own call).
fn tools() -> Result<PathBuf> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let root = workspace_root();
            let output = Command::new("bash")
                .arg(root.join("tests/receivers/install.sh"))
                .output()
                .map_err(|error| format!("running tests/receivers/install.sh: {error}"))?;
            if !output.status.success() {
                return Err(format!(
                    "tests/receivers/install.sh failed:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(root.join("target/receivers-tools"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A receiver process on a loopback port of its own, recording every request it gets.
struct Receiver {
    kind: Kind,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Receiver {
    fn start(kind: Kind) -> Result<Self> {
        Self::answering_after(kind, Duration::ZERO)
    }

    /// A receiver that waits `delay` before it answers each request.
    fn answering_after(kind: Kind, delay: Duration) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut command = kind.command(&tools()?);
        command
            .arg("--record")
            .arg(dir.path().join("received.jsonl"))
            .arg("--secret-file")
            .arg(dir.path().join("secret"))
            .arg("--answer-after-ms")
            .arg(delay.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?);
        e2e::die_with_parent(&mut command, libc::SIGKILL);
        let mut child = command.spawn().with_context(|| format!("starting {kind:?}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        // The first line says which port it bound: {"port": N}.
        let (sender, announced) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut receiver = Self {
            kind,
            child,
            port: 0,
            dir,
        };
        let line = announced
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_default();
        match serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64())
        {
            Some(port) => receiver.port = u16::try_from(port)?,
            None => bail!("{kind:?} did not start: {line:?}\n{}", receiver.stderr()),
        }
        Ok(receiver)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The subscription's secret, for the receiver to verify with from its next request on.
    fn set_secret(&self, secret: &str) -> Result<()> {
        // Renamed into place, so the receiver never reads half a secret.
        let partial = self.dir.path().join("secret.partial");
        std::fs::write(&partial, secret)?;
        std::fs::rename(partial, self.dir.path().join("secret"))?;
        Ok(())
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// What it has received so far, one record per request (a line still being written is
    /// left for the next look).
    fn records(&self) -> Result<Vec<Record>> {
        let text = match std::fs::read_to_string(self.dir.path().join("received.jsonl")) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error.into()),
        };
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| Ok(Record(serde_json::from_str(line)?)))
            .collect()
    }

    /// Waits until `done(records)` holds, or fails after `seconds` showing what arrived.
    fn wait_for(&self, seconds: u64, done: impl Fn(&[Record]) -> bool) -> Result<Vec<Record>> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let records = self.records()?;
            if done(&records) {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{:?} timed out after {seconds} s with {} requests: {:#?}\n{}",
                    self.kind,
                    records.len(),
                    records.iter().rev().take(5).collect::<Vec<_>>(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as a receiver recorded it.
#[derive(Debug, Clone)]
struct Record(Value);

impl Record {
    fn header(&self, name: &str) -> Option<&str> {
        self.0["headers"][name].as_str()
    }

    /// The CloudEvent the receiver made of it: the verified JSON (`http.server`) or what the
    /// SDK parsed (Flask, Node); null when it did not get that far.
    fn event(&self) -> &Value {
        &self.0["event"]
    }

    /// Accepted: verified where the receiver verifies, parsed where it parses.
    fn accepted(&self) -> bool {
        self.0["status"] == 204
    }

    /// When it arrived, in seconds since the Unix epoch.
    fn arrived_at(&self) -> f64 {
        self.0["at"].as_f64().unwrap_or(f64::NAN)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or_default()
}

/// Subscribes `url` to every type; the subscription's secret.
fn subscribe(app: &App, url: &str) -> Result<String> {
    let response = app.json_post("/subscriptions", &json!({ "url": url }))?;
    ensure!(
        response.status == 201,
        "subscribe: {} {}",
        response.status,
        response.body
    );
    Ok(response.json()?["secret"]
        .as_str()
        .context("a secret")?
        .to_owned())
}

fn subscribe_receiver(app: &App, receiver: &Receiver) -> Result<()> {
    receiver.set_secret(&subscribe(app, &receiver.url())?)
}

/// A notification as the API lists it: what a receiver must make of its delivery.
struct Expected {
    /// The CloudEvent id (the notification's id).
    id: String,
    kind: String,
    data: Value,
}

/// Creates, updates and deletes an event whose title is not ASCII (so a `Content-Length`
/// counted in characters would be short) and whose description is a few KiB; the three
/// notifications, checked against what the API answered.
fn create_update_delete(app: &App) -> Result<Vec<Expected>> {
    let description = "Ünïcödé, and long enough to span several reads. ".repeat(80);
    let created = app.post(&json!({
        "title": "Café ☕ launch",
        "description": description,
        "date": "2024-11-15"
    }))?;
    ensure!(
        created.status == 201,
        "create: {} {}",
        created.status,
        created.body
    );
    let created = created.json()?;
    let path = format!("/events/{}", created["id"]);
    let updated = app.send(
        "PATCH",
        &path,
        &[("content-type", "application/merge-patch+json")],
        Some(r#"{"title": "Café ☕ launch, moved", "date": "2024-11-16"}"#),
    )?;
    ensure!(
        updated.status == 200,
        "update: {} {}",
        updated.status,
        updated.body
    );
    let updated = updated.json()?;
    let deleted = app.send("DELETE", &path, &[], None)?;
    ensure!(
        deleted.status == 204,
        "delete: {} {}",
        deleted.status,
        deleted.body
    );

    let listed = app
        .get(&format!("/notifications?event_id={}", created["id"]))?
        .json()?;
    let expected: Vec<Expected> = listed
        .as_array()
        .context("a list of notifications")?
        .iter()
        .map(|notification| Expected {
            id: notification["id"].to_string(),
            kind: notification["type"].as_str().unwrap_or_default().to_owned(),
            data: notification["data"].clone(),
        })
        .collect();
    let kinds: Vec<&str> = expected.iter().map(|e| e.kind.as_str()).collect();
    ensure!(
        kinds == ["event.created", "event.updated", "event.deleted"],
        "{listed:#}"
    );
    ensure!(
        expected[0].data == created && expected[1].data == updated,
        "{listed:#}"
    );
    // A deletion carries the event's last state.
    ensure!(expected[2].data == updated, "{listed:#}");
    Ok(expected)
}

/// Subscribes a receiver of `kind`, makes the three changes and waits until it has accepted
/// a delivery of each or has refused one; every request it got.
fn deliver_changes_to(kind: Kind) -> Result<(Vec<Expected>, Vec<Record>)> {
    let app = App::start()?;
    let receiver = Receiver::start(kind)?;
    subscribe_receiver(&app, &receiver)?;
    let expected = create_update_delete(&app)?;
    let all_accepted = |records: &[Record]| {
        expected.iter().all(|e| {
            records
                .iter()
                .any(|r| r.accepted() && r.event()["id"] == e.id.as_str())
        })
    };
    let records = receiver.wait_for(30, |records| {
        records.iter().any(|r| !r.accepted()) || all_accepted(records)
    })?;
    Ok((expected, records))
}

/// The receiver accepted every request, and each notification reached it as the CloudEvent it
/// stands for.
fn assert_events(expected: &[Expected], records: &[Record]) -> Result<()> {
    for record in records {
        ensure!(
            record.accepted(),
            "a delivery was refused: {:#}\n(every request: {records:#?})",
            record.0
        );
    }
    for e in expected {
        let record = records
            .iter()
            .find(|r| r.event()["id"] == e.id.as_str())
            .with_context(|| format!("no delivery of notification {}", e.id))?;
        let event = record.event();
        ensure!(event["specversion"] == "1.0", "{event:#}");
        ensure!(event["type"] == e.kind.as_str(), "{event:#}");
        ensure!(event["source"] == "/events", "{event:#}");
        ensure!(event["datacontenttype"] == "application/json", "{event:#}");
        ensure!(event["data"] == e.data, "{event:#}\nexpected data {:#}", e.data);
    }
    Ok(())
}

/// A receiver that reads exactly `Content-Length` bytes (no chunked decoding: a chunked request
/// reads as empty and cannot verify) verifies every delivery with the reference library;
/// every request had a `Content-Length` equal to its body's bytes, no `Transfer-Encoding`, and
/// named its sender.
#[e2e::test]
fn a_receiver_without_chunked_support_verifies_every_delivery() -> TestResult {
    let (expected, records) = deliver_changes_to(Kind::NoChunked)?;
    for record in &records {
        ensure!(
            record.header("transfer-encoding").is_none(),
            "a delivery arrived with Transfer-Encoding {:?}: {:#}",
            record.header("transfer-encoding"),
            record.0
        );
        let length = record.header("content-length").context("no Content-Length")?;
        ensure!(
            length.parse::<u64>().ok() == record.0["body_bytes"].as_u64(),
            "Content-Length {length} for a body of {} bytes",
            record.0["body_bytes"]
        );
        ensure!(
            record.header("user-agent").is_some_and(|agent| !agent.is_empty()),
            "no User-Agent: {:#}",
            record.0
        );
    }
    assert_events(&expected, &records)
}

/// Flask, the original service's stack: every delivery verifies with the Standard Webhooks
/// reference library and parses with the CloudEvents Python SDK, as a created, an updated and
/// a deleted notification with the API's id, source and data.
#[e2e::test]
fn flask_verifies_and_parses_created_updated_deleted() -> TestResult {
    let (expected, records) = deliver_changes_to(Kind::Flask)?;
    assert_events(&expected, &records)
}

/// The CloudEvents JavaScript SDK's `HTTP.toEvent` parses every delivery (it refuses a
/// structured-mode event sent as plain `application/json`: "no cloud event detected").
#[e2e::test]
fn the_cloudevents_javascript_sdk_parses_every_delivery() -> TestResult {
    let (expected, records) = deliver_changes_to(Kind::CloudEventsJs)?;
    for record in &records {
        let content_type = record.header("content-type").unwrap_or_default();
        ensure!(
            content_type.starts_with("application/cloudevents+json"),
            "content type {content_type:?}; the SDK said {}",
            record.0["parse_error"]
        );
    }
    assert_events(&expected, &records)
}

/// Notifications per phase of the isolation test.
const ISOLATION_NOTIFICATIONS: usize = 500;

/// Latencies in milliseconds, sorted.
struct Latencies(Vec<f64>);

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        let index = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[index.min(self.0.len() - 1)]
    }

    fn summary(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(100.0)
        )
    }
}

/// Creates `ISOLATION_NOTIFICATIONS` events one after another and measures, for each, the
/// time from the write's answer to the healthy receiver's arrival of its notification. A
/// periodic dispatch runs meanwhile, as the local loop and the CronJob do.
fn write_to_webhook_latencies(app: &App, healthy: &Receiver, label: &str) -> Result<Latencies> {
    let stop = AtomicBool::new(false);
    let (answered, records) = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _ = app.dispatch();
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let measured = (|| {
            let mut answered: HashMap<String, f64> = HashMap::new();
            for n in 0..ISOLATION_NOTIFICATIONS {
                let event = app.create(&format!("{label} {n}"), "2025-01-01")?;
                answered.insert(event["id"].to_string(), unix_now());
                std::thread::sleep(Duration::from_millis(10));
            }
            let arrived = |records: &[Record]| {
                let ids: std::collections::HashSet<String> = records
                    .iter()
                    .filter(|r| r.accepted() && r.event()["type"] == "event.created")
                    .map(|r| r.event()["data"]["id"].to_string())
                    .collect();
                answered.keys().all(|id| ids.contains(id))
            };
            let records = healthy
                .wait_for(60, arrived)
                .with_context(|| format!("{label}: not every notification reached the healthy subscriber"))?;
            Ok::<_, anyhow::Error>((answered, records))
        })();
        stop.store(true, Ordering::Relaxed);
        measured
    })?;
    let mut first_arrival: BTreeMap<String, f64> = BTreeMap::new();
    for record in records.iter().filter(|r| r.accepted()) {
        let id = record.event()["data"]["id"].to_string();
        let at = first_arrival.entry(id).or_insert(f64::INFINITY);
        *at = at.min(record.arrived_at());
    }
    let mut latencies: Vec<f64> = answered
        .iter()
        .map(|(id, at)| (first_arrival[id] - at) * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(Latencies(latencies))
}

/// Isolation (issue 11): a healthy subscriber receives 500 notifications beside one subscriber
/// that never answers, one whose port refuses connections and one that answers after 500 ms,
/// and none of them waits for the bad ones. Were a healthy delivery ever queued behind an
/// attempt to the silent subscriber (a round that waits for its slowest attempt), it would
/// wait out that attempt's timeout, and so would every notification committed meanwhile: the
/// healthy p99 would reach the delivery timeout. So the test holds it below the timeout (alone,
/// it is tens of milliseconds), a bound of behaviour, not of speed. How close it stays to its
/// latency alone (the issue's target: within 2x) is measured by the benchmark's isolation
/// scenario, not asserted here: two p99s on a shared 2-core machine differ by more than 2x
/// from noise alone.
#[e2e::test]
fn a_healthy_subscriber_keeps_its_latency_beside_dead_and_slow_ones() -> TestResult {
    let app = App::start()?;
    // Flask decodes chunked requests: the figure is about isolation, not the wire format.
    let healthy = Receiver::start(Kind::Flask)?;
    subscribe_receiver(&app, &healthy)?;
    let alone = write_to_webhook_latencies(&app, &healthy, "alone")?;

    let silent = StubServer::answering(Answer::Silence);
    subscribe(&app, &silent.url())?;
    subscribe(&app, &format!("http://127.0.0.1:{}/hook", e2e::free_port()))?;
    let slow = Receiver::answering_after(Kind::Flask, Duration::from_millis(500))?;
    subscribe_receiver(&app, &slow)?;
    let beside = write_to_webhook_latencies(&app, &healthy, "beside")?;
    eprintln!(
        "isolation: healthy subscriber alone {}; beside the bad ones {}",
        alone.summary(),
        beside.summary()
    );
    // The bad ones were there all along: each was sent deliveries.
    ensure!(
        !silent.received().is_empty(),
        "the silent subscriber was never tried"
    );
    ensure!(!slow.records()?.is_empty(), "the slow subscriber was never tried");
    ensure!(
        beside.percentile(99.0) < DELIVERY_TIMEOUT_MS as f64,
        "the healthy subscriber waited for the bad ones: its p99 went from {:.1} ms alone to \
         {:.1} ms beside them, against an attempt timeout of {DELIVERY_TIMEOUT_MS} ms (alone {}; \
         beside {})",
        alone.percentile(99.0),
        beside.percentile(99.0),
        alone.summary(),
        beside.summary()
    );
    Ok(())
}
