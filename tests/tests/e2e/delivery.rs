//! Webhook delivery (issue 11): the wire format every receiver accepts, per-endpoint isolation,
//! hostile receivers, fencing, backlog semantics, endpoint health, secret rotation, retention
//! and destinations refused at send time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{
    Answer, App, Devhost, DevhostOptions, Framing, Received, Role, TestResult, WebhookReceiver, app_options,
    assert_problem, database_name, eventually, postgres,
};
use serde_json::{Value, json};
use standardwebhooks::Webhook;

const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=utf-8";

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// Checks what every webhook request must be: its body framed by `Content-Length` (never
/// chunked), the CloudEvents structured-mode content type, a `User-Agent` naming the product
/// and its version, and a signature the Standard Webhooks reference crate verifies with
/// `secret` (timestamp tolerance included).
fn assert_wire_format(received: &Received, secret: &str) -> Result<()> {
    ensure!(
        received.framing == Framing::ContentLength(received.body.len() as u64),
        "framed {:?} for a body of {} bytes",
        received.framing,
        received.body.len()
    );
    ensure!(
        received.headers.get("transfer-encoding").is_none(),
        "{:?}",
        received.headers
    );
    ensure!(
        header(received, "content-type") == CLOUDEVENTS_JSON,
        "content type {:?}",
        header(received, "content-type")
    );
    let agent = header(received, "user-agent");
    let version = agent
        .strip_prefix("event-platform-notify/")
        .with_context(|| format!("user agent {agent:?}"))?;
    ensure!(
        version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
        "user agent {agent:?}"
    );
    Webhook::new(secret)?
        .verify(received.body.as_bytes(), &received.headers)
        .with_context(|| format!("signature of {received:?}"))?;
    Ok(())
}

fn secret_of(subscription: &Value) -> Result<String> {
    Ok(subscription["secret"].as_str().context("a secret")?.to_owned())
}

#[e2e::test]
fn every_delivery_is_framed_typed_named_and_signed() -> TestResult {
    let app = App::start()?;
    let receiver = WebhookReceiver::start();
    let secret = secret_of(&app.subscribe(&receiver, None)?)?;
    let event = app.create("Framed", "2024-11-15")?;
    let path = format!("/events/{}", event["id"]);
    let json_type = ("content-type", "application/json");
    let patched = app.send(
        "PATCH",
        &path,
        &[json_type],
        Some(&json!({"description": "é ✓"}).to_string()),
    )?;
    assert_eq!(patched.status, 200);
    assert_eq!(app.send("DELETE", &path, &[], None)?.status, 204);
    let mut received = receiver.wait_for(10, |r| r.len() == 3)?;
    // Deliveries to one subscriber run concurrently: their order is not the changes'.
    received.sort_by_key(|r| r.json()["id"].as_str().and_then(|id| id.parse::<i64>().ok()));
    for delivery in &received {
        assert_wire_format(delivery, &secret)?;
    }
    let types: Vec<Value> = received.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        types,
        [
            json!("event.created"),
            json!("event.updated"),
            json!("event.deleted")
        ]
    );
    assert_eq!(received[1].json()["data"]["description"], "é ✓");
    Ok(())
}

/// Holds the dispatcher lease for a dispatch that does not exist, so that writes only count
/// their hand-offs: what they commit waits, all due at once, until `let_dispatch`.
fn hold_dispatch(app: &App) -> Result<()> {
    app.sql("UPDATE dispatcher SET holder = 'a test', held_until = (now() AT TIME ZONE 'utc') + interval '1 hour'")?;
    Ok(())
}

/// Ends the lease `hold_dispatch` took, and asks for a dispatch.
fn let_dispatch(app: &App) -> Result<()> {
    app.sql("UPDATE dispatcher SET holder = NULL, held_until = '-infinity'")?;
    app.dispatch()
}

/// Asks for dispatches until no notification is pending, or fails after `seconds`.
fn settle(app: &App, seconds: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let pending = app.count("notifications WHERE status = 'pending'")?;
        if pending == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{pending} notifications still pending after {seconds} s"
        );
        app.dispatch()?;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `done` holds for the answer to `GET path`, or fails after `seconds`.
fn wait_for_resource(app: &App, path: &str, seconds: u64, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let resource = app.get(path)?.json()?;
        if done(&resource) {
            return Ok(resource);
        }
        ensure!(Instant::now() < deadline, "timed out: {resource:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes the pending deliveries of `notification` due now (a schedule of "1h" leaves its last
/// attempt an hour away) and dispatches until their failure leaves it failed.
fn fail_last_attempt_now(app: &App, notification: i64) -> Result<()> {
    app.sql(&format!(
        "UPDATE deliveries SET next_attempt_at = (now() AT TIME ZONE 'utc') WHERE notification_id = {notification} AND status = 'pending'"
    ))?;
    app.dispatch_until(10, |n| n["status"] == "failed", notification)?;
    Ok(())
}

/// The notification of type `kind` of the event `event_id` (an event has one of each kind in
/// these tests).
fn notification_of(app: &App, event_id: impl std::fmt::Display, kind: &str) -> Result<i64> {
    Ok(app
        .sql(&format!(
            "SELECT id FROM notifications WHERE event_id = {event_id} AND type = '{kind}'"
        ))?
        .parse()?)
}

/// The deliveries of every notification to the subscription with `url`, oldest first, each
/// as `GET /notifications/{id}` shows it.
fn deliveries_to(app: &App, url: &str) -> Result<Vec<Value>> {
    let ids = app.sql("SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM notifications")?;
    let mut deliveries = Vec::new();
    for id in ids.split(',').filter(|id| !id.is_empty()) {
        let notification = app.get(&format!("/notifications/{id}"))?.json()?;
        for delivery in notification["deliveries"].as_array().into_iter().flatten() {
            if delivery["url"] == url {
                deliveries.push(delivery.clone());
            }
        }
    }
    Ok(deliveries)
}

fn attempts(delivery: &Value) -> &[Value] {
    delivery["attempts"].as_array().map_or(&[], Vec::as_slice)
}

/// Redirects are not followed, a body is read only up to 4 KiB, and one time limit covers an
/// answer's headers and body: a receiver answering with an endless body, one trickling it
/// byte by byte, and one redirecting to a private address end as those rules say, once each
/// (nothing is sent again and again), while a healthy subscriber gets everything and devhost's
/// memory stays flat.
#[e2e::test]
fn hostile_receivers_end_as_the_rules_say() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options
            .variable("delivery_timeout_ms", "1000")
            .variable("delivery_schedule", "100ms")
    })?;
    let healthy = WebhookReceiver::start();
    let endless = WebhookReceiver::answering(Answer::Endless);
    let trickle = WebhookReceiver::answering(Answer::Trickle(Duration::from_millis(50)));
    let private = WebhookReceiver::start();
    let redirect = WebhookReceiver::answering(Answer::Redirect(302, private.url()));
    for receiver in [&healthy, &endless, &trickle, &redirect] {
        app.subscribe(receiver, None)?;
    }
    // Warm up: the components compiled and instantiated, the pools made.
    app.create("warm", "2024-11-15")?;
    healthy.wait_for(10, |r| r.len() == 1)?;
    let before = app.devhost.resident_kib()?;
    let events = 5;
    let ((), peak) = app.devhost.peak_resident_kib(|| {
        for n in 0..events {
            app.create(&format!("hostile {n}"), "2024-11-15")?;
        }
        healthy.wait_for(10, |r| r.len() == events + 1)?;
        settle(&app, 60)
    })?;
    ensure!(
        peak < before + 32 * 1024,
        "devhost grew from {before} KiB to {peak} KiB"
    );
    let notifications = events + 1;
    // An endless 200: delivered, with its first 4 KiB in the log.
    let to_endless = deliveries_to(&app, &endless.url())?;
    ensure!(to_endless.len() == notifications, "{to_endless:#?}");
    for delivery in &to_endless {
        ensure!(delivery["status"] == "delivered", "{delivery:#}");
        let [attempt] = attempts(delivery) else {
            anyhow::bail!("{delivery:#}");
        };
        ensure!(attempt["status_code"] == 200, "{attempt:#}");
        ensure!(
            attempt["response_body"].as_str() == Some("x".repeat(4096).as_str()),
            "{attempt:#}"
        );
    }
    // A body that never ends in time: both attempts failed, then the delivery.
    for delivery in deliveries_to(&app, &trickle.url())? {
        ensure!(delivery["status"] == "failed", "{delivery:#}");
        ensure!(attempts(&delivery).len() == 2, "{delivery:#}");
        for attempt in attempts(&delivery) {
            ensure!(attempt["status_code"].is_null(), "{attempt:#}");
            ensure!(
                attempt["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("no end of its body")),
                "{attempt:#}"
            );
        }
    }
    // A redirect: a failed attempt, never followed.
    for delivery in deliveries_to(&app, &redirect.url())? {
        ensure!(delivery["status"] == "failed", "{delivery:#}");
        ensure!(attempts(&delivery).len() == 2, "{delivery:#}");
        for attempt in attempts(&delivery) {
            ensure!(attempt["status_code"] == 302, "{attempt:#}");
            ensure!(
                attempt["error"].as_str().is_some_and(|e| e.contains("redirect")),
                "{attempt:#}"
            );
        }
    }
    ensure!(private.received().is_empty(), "the redirect was followed");
    // Nothing goes on being sent.
    let sent = |r: &WebhookReceiver| r.received().len();
    let counts = [sent(&healthy), sent(&endless), sent(&trickle), sent(&redirect)];
    assert_eq!(
        counts,
        [notifications, notifications, 2 * notifications, 2 * notifications]
    );
    for _ in 0..5 {
        app.dispatch()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        [sent(&healthy), sent(&endless), sent(&trickle), sent(&redirect)],
        counts
    );
    // And the app still serves, and delivers.
    app.create("after", "2024-11-15")?;
    healthy.wait_for(10, |r| r.len() == notifications + 1)?;
    Ok(())
}

/// event-fn and notify-fn deployed apart on one database, as on Kubernetes: notify-fn can be
/// stopped and started again (at the same address) while event-fn goes on.
struct Split {
    url: String,
    database: String,
    notify_address: String,
    events: App,
}

impl Split {
    fn start() -> Result<Self> {
        let url = postgres().create_database()?;
        let database = database_name(&url)?;
        let notify_address = format!("127.0.0.1:{}", e2e::free_port());
        let events = App {
            devhost: Devhost::start(
                app_options(&url, postgres().port())
                    .component("event-fn")
                    .variable("notify_url", &format!("http://{notify_address}")),
            )?,
            database: database.clone(),
        };
        Ok(Self {
            url,
            database,
            notify_address,
            events,
        })
    }

    /// notify-fn, with `adjust` applied to its options.
    fn notify(&self, adjust: impl FnOnce(DevhostOptions) -> DevhostOptions) -> Result<App> {
        let options = app_options(&self.url, postgres().port())
            .component("notify-fn")
            .listen(&self.notify_address);
        Ok(App {
            devhost: Devhost::start(adjust(options))?,
            database: self.database.clone(),
        })
    }
}

/// A subscription receives exactly the changes committed after it was created, whatever the
/// backlog: 1,000 changes committed while notify-fn is down reach the subscribers that existed
/// then, and none of them the one created after them.
#[e2e::test]
fn a_new_subscription_receives_only_what_commits_after_it() -> TestResult {
    let split = Split::start()?;
    let notify = split.notify(|options| options)?;
    let old = WebhookReceiver::start();
    notify.subscribe(&old, None)?;
    split.events.create("before", "2024-11-15")?;
    old.wait_for(10, |r| r.len() == 1)?;
    notify.wait_until_no_dispatch()?;
    drop(notify);

    let backlog = 1000;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let events = &split.events;
                scope.spawn(move || -> Result<()> {
                    for n in (writer..backlog).step_by(4) {
                        events.create(&format!("backlog {n}"), "2024-11-15")?;
                    }
                    Ok(())
                })
            })
            .collect();
        writers.into_iter().try_for_each(|writer| {
            writer
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer panicked")))
        })
    })?;
    assert_eq!(
        split.events.count("notifications WHERE fanned_out_at IS NULL")?,
        backlog as i64
    );

    // notify-fn is back; nothing has dispatched the backlog yet when the subscription is made.
    let notify = split.notify(|options| options)?;
    let new = WebhookReceiver::start();
    notify.subscribe(&new, None)?;
    for n in 0..5 {
        split.events.create(&format!("after {n}"), "2024-11-15")?;
    }
    let total = 1 + backlog + 5;
    old.wait_for(60, |r| r.len() >= total)?;
    new.wait_for(10, |r| r.len() >= 5)?;
    settle(&notify, 30)?;
    let titles = |receiver: &WebhookReceiver| -> Vec<String> {
        let mut titles: Vec<String> = receiver
            .received()
            .iter()
            .map(|r| r.json()["data"]["title"].as_str().unwrap_or_default().to_owned())
            .collect();
        titles.sort();
        titles
    };
    let new_titles = titles(&new);
    ensure!(
        new_titles == (0..5).map(|n| format!("after {n}")).collect::<Vec<_>>(),
        "the new subscription received {} notifications, from {:?} to {:?}",
        new_titles.len(),
        new_titles.first(),
        new_titles.last()
    );
    let old_titles = titles(&old);
    assert_eq!(old_titles.len(), total, "each once");
    old_titles.windows(2).try_for_each(|pair| {
        ensure!(pair[0] != pair[1], "{} twice", pair[0]);
        Ok(())
    })?;
    ensure!(old.received().iter().all(|r| r.signature_valid));
    ensure!(new.received().iter().all(|r| r.signature_valid));
    Ok(())
}

/// The `webhook-signature` values of a delivery that `secret` made (Standard Webhooks'
/// reference crate signs the same id, timestamp and body).
fn signatures_by(received: &Received, secret: &str) -> Result<usize> {
    let expected = Webhook::new(secret)?.sign(
        &received.webhook_id,
        received.timestamp.parse()?,
        received.body.as_bytes(),
    )?;
    Ok(header(received, "webhook-signature")
        .split(' ')
        .filter(|signature| *signature == expected)
        .count())
}

/// After a rotation every delivery is signed with the new secret and the old one until the
/// grace period ends, then with the new one only; a secret is shown only when it is made.
#[e2e::test]
fn a_rotated_secret_signs_beside_the_new_one_for_the_grace_period() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options.variable("secret_rotation_grace", "3s")
    })?;
    let receiver = WebhookReceiver::start();
    let subscription = app.subscribe(&receiver, None)?;
    let old = secret_of(&subscription)?;
    let id = subscription["id"].as_i64().context("id")?;
    ensure!(subscription["previous_secret_expires_at"].is_null());
    app.create("before", "2024-11-15")?;
    let before = receiver.wait_for(10, |r| r.len() == 1)?;
    assert_eq!(header(&before[0], "webhook-signature").split(' ').count(), 1);
    assert_eq!(signatures_by(&before[0], &old)?, 1);

    let rotated = app.send("POST", &format!("/subscriptions/{id}/rotate-secret"), &[], None)?;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let rotated = rotated.json()?;
    let new = secret_of(&rotated)?;
    ensure!(new != old && new.starts_with("whsec_"));
    ensure!(rotated["previous_secret_expires_at"].is_string(), "{rotated:#}");
    receiver.set_secret(&new);
    let shown = app.get(&format!("/subscriptions/{id}"))?.json()?;
    ensure!(shown.get("secret").is_none(), "{shown:#}");
    assert_eq!(
        shown["previous_secret_expires_at"],
        rotated["previous_secret_expires_at"]
    );

    app.create("during", "2024-11-15")?;
    let during = receiver.wait_for(10, |r| r.len() == 2)?;
    let during = &during[1];
    assert_wire_format(during, &new)?;
    assert_eq!(header(during, "webhook-signature").split(' ').count(), 2);
    assert_eq!(signatures_by(during, &new)?, 1);
    assert_eq!(signatures_by(during, &old)?, 1);
    // A receiver still on the old secret verifies it too.
    Webhook::new(&old)?.verify(during.body.as_bytes(), &during.headers)?;

    std::thread::sleep(Duration::from_millis(3500));
    app.create("after", "2024-11-15")?;
    let after = receiver.wait_for(10, |r| r.len() == 3)?;
    let after = &after[2];
    assert_wire_format(after, &new)?;
    assert_eq!(header(after, "webhook-signature").split(' ').count(), 1);
    assert_eq!(signatures_by(after, &old)?, 0);
    ensure!(
        Webhook::new(&old)?
            .verify(after.body.as_bytes(), &after.headers)
            .is_err()
    );
    ensure!(app.get(&format!("/subscriptions/{id}"))?.json()?["previous_secret_expires_at"].is_null());
    assert_problem(
        &app.send("POST", "/subscriptions/999999/rotate-secret", &[], None)?,
        404,
        &[],
    )?;
    Ok(())
}

/// After `disable_after_failed_deliveries` deliveries in a row failed, a subscription is
/// disabled: its pending deliveries fail unattempted, nothing new is delivered to it, its
/// health says why, and enabling it brings it back.
#[e2e::test]
fn a_failing_subscription_is_disabled_until_enabled() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options
            .variable("delivery_schedule", "")
            .variable("disable_after_failed_deliveries", "2")
    })?;
    let failing = WebhookReceiver::answering(Answer::Status(500));
    let healthy = WebhookReceiver::start();
    let id = app.subscribe(&failing, None)?["id"].as_i64().context("id")?;
    app.subscribe(&healthy, None)?;
    let path = format!("/subscriptions/{id}");
    let fresh = app.get(&path)?.json()?;
    assert_eq!(
        fresh["health"],
        json!({"last_success_at": null, "failing_since": null,
               "consecutive_failed_attempts": 0, "consecutive_failed_deliveries": 0})
    );
    assert_eq!(fresh["disabled_at"], Value::Null);

    // Ten deliveries due at once: the first claim takes four (delivery_concurrency), which
    // fail; the second failure disables the subscription and fails the rest unattempted.
    hold_dispatch(&app)?;
    for n in 0..10 {
        app.create(&format!("failing {n}"), "2024-11-15")?;
    }
    let_dispatch(&app)?;
    healthy.wait_for(10, |r| r.len() == 10)?;
    let disabled = wait_for_resource(&app, &path, 10, |s| s["disabled_at"].is_string())?;
    ensure!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("deliveries in a row failed")),
        "{disabled:#}"
    );
    settle(&app, 10)?;
    let attempted = failing.received().len();
    ensure!((2..=4).contains(&attempted), "{attempted} attempts");
    let deliveries = deliveries_to(&app, &failing.url())?;
    ensure!(deliveries.len() == 10, "{deliveries:#?}");
    ensure!(
        deliveries.iter().all(|d| d["status"] == "failed"),
        "{deliveries:#?}"
    );
    let attempts_made: usize = deliveries.iter().map(|d| attempts(d).len()).sum();
    assert_eq!(attempts_made, attempted);
    assert_eq!(app.count("notifications WHERE status = 'failed'")?, 10);
    let health = app.get(&path)?.json()?["health"].clone();
    ensure!(
        health["failing_since"].is_string() && health["last_success_at"].is_null(),
        "{health:#}"
    );
    ensure!(
        health["consecutive_failed_deliveries"].as_i64() >= Some(2),
        "{health:#}"
    );
    ensure!(
        health["consecutive_failed_attempts"].as_i64() >= Some(2),
        "{health:#}"
    );

    // Disabled: nothing new goes to it.
    app.create("while disabled", "2024-11-15")?;
    healthy.wait_for(10, |r| r.len() == 11)?;
    settle(&app, 10)?;
    assert_eq!(failing.received().len(), attempted);
    let last = app.sql("SELECT max(id) FROM notifications")?;
    let notification = app.get(&format!("/notifications/{last}"))?.json()?;
    assert_eq!(notification["status"], "delivered");
    assert_eq!(notification["deliveries"].as_array().map(Vec::len), Some(1));

    // Enabled again (and the endpoint fixed): new changes reach it, a failed one can be
    // delivered again.
    failing.script(&[Answer::Status(200), Answer::Status(200)]);
    let enabled = app.send("POST", &format!("{path}/enable"), &[], None)?;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    let enabled = enabled.json()?;
    assert_eq!(enabled["disabled_at"], Value::Null);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    assert_eq!(enabled["health"]["failing_since"], Value::Null);
    assert_eq!(enabled["health"]["consecutive_failed_deliveries"], 0);
    app.create("enabled", "2024-11-15")?;
    let received = failing.wait_for(10, |r| r.len() == attempted + 1)?;
    assert_eq!(received[attempted].json()["data"]["title"], "enabled");
    let first = app.sql("SELECT min(id) FROM notifications")?;
    assert_eq!(
        app.send("POST", &format!("/notifications/{first}/redeliver"), &[], None)?
            .status,
        202
    );
    let first: i64 = first.parse()?;
    app.dispatch_until(10, |n| n["status"] == "delivered", first)?;
    let health = wait_for_resource(&app, &path, 10, |s| s["health"]["last_success_at"].is_string())?;
    assert_eq!(health["health"]["consecutive_failed_attempts"], 0);
    assert_problem(
        &app.send("POST", "/subscriptions/999999/enable", &[], None)?,
        404,
        &[],
    )?;
    assert_problem(&app.get(&format!("{path}/enable"))?, 405, &[])?;
    Ok(())
}

/// A subscription whose every attempt has failed for `disable_after_failing_for` is disabled
/// too, however few its deliveries.
#[e2e::test]
fn a_subscription_failing_for_the_period_is_disabled() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options
            .variable("delivery_schedule", "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms")
            .variable("disable_after_failing_for", "2s")
            .variable("disable_after_failed_deliveries", "0")
    })?;
    let failing = WebhookReceiver::answering(Answer::Status(503));
    let id = app.subscribe(&failing, None)?["id"].as_i64().context("id")?;
    app.create("one", "2024-11-15")?;
    let path = format!("/subscriptions/{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let disabled = loop {
        app.dispatch()?;
        std::thread::sleep(Duration::from_millis(200));
        let subscription = app.get(&path)?.json()?;
        if subscription["disabled_at"].is_string() {
            break subscription;
        }
        ensure!(Instant::now() < deadline, "never disabled: {subscription:#}");
    };
    ensure!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed for")),
        "{disabled:#}"
    );
    let attempted = failing.received().len();
    ensure!(attempted >= 3, "{attempted} attempts");
    // The pending delivery failed with it, after fewer attempts than the schedule allows.
    settle(&app, 10)?;
    let [delivery] = deliveries_to(&app, &failing.url())?
        .try_into()
        .map_err(|d| anyhow::anyhow!("{d:#?}"))?;
    assert_eq!(delivery["status"], "failed");
    ensure!(attempts(&delivery).len() < 17);
    std::thread::sleep(Duration::from_millis(500));
    app.dispatch()?;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(failing.received().len(), attempted);
    Ok(())
}

/// Delivered notifications and their deliveries and attempts are deleted once older than
/// `retention_days`, by the dispatch; pending and failed ones are kept; a deleted event's
/// title and description are erased from its notifications once none of them is pending.
#[e2e::test]
fn retention_deletes_what_was_delivered_and_erases_deleted_events() -> TestResult {
    // 0.0001 days: 8.64 s.
    let app = App::start_with(postgres(), |options| {
        options
            .variable("retention_days", "0.0001")
            .variable("delivery_schedule", "1h")
    })?;
    let receiver = WebhookReceiver::start();
    let updates = WebhookReceiver::answering(Answer::Status(500));
    app.subscribe(&receiver, None)?;
    app.subscribe(&updates, Some(&["event.updated"]))?;
    let kept = app.create("kept", "2024-11-15")?;
    let kept_path = format!("/events/{}", kept["id"]);
    let json_type = ("content-type", "application/json");
    for title in ["pending", "failed"] {
        let patched = app.send(
            "PATCH",
            &kept_path,
            &[json_type],
            Some(&json!({ "title": title }).to_string()),
        )?;
        assert_eq!(patched.status, 200);
    }
    let gone = app.create("gone", "2024-11-15")?;
    assert_eq!(
        app.send("DELETE", &format!("/events/{}", gone["id"]), &[], None)?
            .status,
        204
    );
    let id_of = |title: &str| -> Result<i64> {
        Ok(app
            .sql(&format!(
                "SELECT id FROM notifications WHERE title = '{title}' ORDER BY id LIMIT 1"
            ))?
            .parse()?)
    };
    let (pending, failed) = (id_of("pending")?, id_of("failed")?);
    let created_gone = id_of("gone")?;
    let deleted_gone: i64 = app
        .sql("SELECT id FROM notifications WHERE type = 'event.deleted'")?
        .parse()?;
    // The update "failed" gets its second and last attempt now rather than in an hour.
    updates.wait_for(10, |r| r.len() == 2)?;
    fail_last_attempt_now(&app, failed)?;
    receiver.wait_for(10, |r| r.len() == 5)?;
    app.dispatch_until(10, |n| n["status"] == "delivered", deleted_gone)?;

    // Within the retention: everything is kept, but the deleted event's content is erased.
    // The deletion got a delivery, so erasing is housekeeping at the start of a dispatch (not
    // fan-out's): asked for as the periodic trigger does.
    let erased = app.dispatch_until(10, |n| n["data"].is_null(), created_gone)?;
    assert_eq!(erased["status"], "delivered");
    assert_eq!(
        app.get(&format!("/notifications/{deleted_gone}"))?.json()?["data"],
        Value::Null
    );
    assert_eq!(
        app.count(&format!(
            "notifications WHERE event_id = {} AND (title IS NOT NULL OR description IS NOT NULL)",
            gone["id"]
        ))?,
        0
    );
    assert_problem(
        &app.send(
            "POST",
            &format!("/notifications/{created_gone}/redeliver"),
            &[],
            None,
        )?,
        409,
        &[],
    )?;
    assert_eq!(
        app.get(&format!("/notifications/{pending}"))?.json()?["data"]["title"],
        "pending"
    );
    assert_eq!(app.count("notifications")?, 5);

    // Past it: the delivered ones go, with their deliveries and attempts.
    let oldest: f64 = app
        .sql("SELECT extract(epoch FROM (now() AT TIME ZONE 'utc') - min(created_at)) FROM notifications")?
        .parse()?;
    std::thread::sleep(Duration::from_secs_f64((8.64 - oldest).max(0.0) + 0.5));
    app.dispatch()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.count("notifications")? > 2 {
        ensure!(Instant::now() < deadline, "the delivered notifications were kept");
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = app.sql("SELECT string_agg(id::text || ':' || status, ',' ORDER BY id) FROM notifications")?;
    assert_eq!(left, format!("{pending}:pending,{failed}:failed"));
    assert_eq!(
        app.count("deliveries")?,
        app.count(&format!(
            "deliveries WHERE notification_id IN ({pending}, {failed})"
        ))?
    );
    assert_eq!(app.count("deliveries")?, 4);
    assert_eq!(
        app.count("delivery_attempts")?,
        app.count("delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id")?
    );
    assert_problem(&app.get(&format!("/notifications/{created_gone}"))?, 404, &[])?;
    Ok(())
}

/// A dispatch that goes on (here held by an attempt to an endpoint that never answers; in
/// production by a steady stream of writes, for up to two minutes) does its housekeeping again
/// every few seconds: a deleted event's content is erased while the same dispatch holds the
/// lease, with no other dispatch asked for.
#[e2e::test]
fn housekeeping_keeps_pace_during_a_long_dispatch() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options.variable("delivery_timeout_ms", "12000")
    })?;
    let healthy = WebhookReceiver::start();
    let silent = WebhookReceiver::answering(Answer::Silence);
    app.subscribe(&healthy, None)?;
    app.subscribe(&silent, Some(&["event.updated"]))?;
    let kept = app.create("kept", "2024-11-15")?;
    let patched = app.send(
        "PATCH",
        &format!("/events/{}", kept["id"]),
        &[("content-type", "application/json")],
        Some(&json!({ "title": "kept, patched" }).to_string()),
    )?;
    assert_eq!(patched.status, 200);
    silent.wait_for(10, |r| r.len() == 1)?;
    let holder = app.sql("SELECT coalesce(holder, '') FROM dispatcher")?;
    ensure!(!holder.is_empty(), "no dispatch holds the lease");
    let gone = app.create("gone", "2024-11-15")?;
    assert_eq!(
        app.send("DELETE", &format!("/events/{}", gone["id"]), &[], None)?
            .status,
        204
    );
    healthy.wait_for(10, |r| r.len() == 4)?;
    let created_gone = notification_of(&app, &gone["id"], "event.created")?;
    let erased = wait_for_resource(&app, &format!("/notifications/{created_gone}"), 10, |n| {
        n["data"].is_null()
    })?;
    assert_eq!(erased["status"], "delivered");
    assert_eq!(
        app.sql("SELECT coalesce(holder, '') FROM dispatcher")?,
        holder,
        "another dispatch erased it"
    );
    assert_eq!(silent.received().len(), 1);
    Ok(())
}

/// A deleted event is erased by the fan-out of its deletion when nothing of it is left to send
/// (nobody takes the deletion, and its other notifications are all delivered): in the update
/// that marks the deletion fanned out, with no housekeeping, while the log shows the deletion
/// as it was written. When one of its notifications is still pending, or failed, the content
/// stays until the housekeeping erases it once none is pending.
#[e2e::test]
fn fan_out_erases_a_deleted_event_with_nothing_left_to_send() -> TestResult {
    let app = App::start_with(postgres(), |options| options.variable("delivery_schedule", "1h"))?;
    let receiver = WebhookReceiver::start();
    app.subscribe(&receiver, Some(&["event.created"]))?;
    let delete = |event: &Value| -> Result<()> {
        let response = app.send("DELETE", &format!("/events/{}", event["id"]), &[], None)?;
        ensure!(response.status == 204, "delete: {}", response.status);
        Ok(())
    };

    let settled = app.create("settled", "2024-11-15")?;
    let settled_created = notification_of(&app, &settled["id"], "event.created")?;
    wait_for_resource(&app, &format!("/notifications/{settled_created}"), 10, |n| {
        n["status"] == "delivered"
    })?;
    delete(&settled)?;
    let settled_deleted = notification_of(&app, &settled["id"], "event.deleted")?;
    let fanned_out = wait_for_resource(&app, &format!("/notifications/{settled_deleted}"), 10, |n| {
        n["status"] != "pending"
    })?;
    assert_eq!(fanned_out["status"], "delivered");
    assert_eq!(fanned_out["data"], Value::Null, "not erased as it was fanned out");
    assert_eq!(
        app.get(&format!("/notifications/{settled_created}"))?.json()?["data"],
        Value::Null
    );
    let logged = app
        .devhost
        .wait_for_output(|output| output.contains(&format!("\"notification_id\":{settled_deleted},")))?;
    let line = logged
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(&line[line.find('{')?..]).ok())
        .find(|line| line["notification_id"] == settled_deleted)
        .context("the deletion's log line")?;
    assert_eq!(line["type"], "event.deleted");
    assert_eq!(line["event"]["title"], "settled");

    // A subscription whose first attempt fails keeps the next event's creation pending for an
    // hour: its deletion, which nobody takes either, is not erased then.
    let failing = WebhookReceiver::answering(Answer::Status(500));
    app.subscribe(&failing, Some(&["event.created"]))?;
    let unsettled = app.create("unsettled", "2024-11-15")?;
    failing.wait_for(10, |r| r.len() == 1)?;
    delete(&unsettled)?;
    let unsettled_created = notification_of(&app, &unsettled["id"], "event.created")?;
    let unsettled_deleted = notification_of(&app, &unsettled["id"], "event.deleted")?;
    let fanned_out = wait_for_resource(&app, &format!("/notifications/{unsettled_deleted}"), 10, |n| {
        n["status"] != "pending"
    })?;
    assert_eq!(fanned_out["status"], "delivered");
    assert_eq!(fanned_out["data"]["title"], "unsettled");
    let created = app.get(&format!("/notifications/{unsettled_created}"))?.json()?;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["data"]["title"], "unsettled");
    // Its last attempt now rather than in an hour; once it has failed, the housekeeping (at the
    // start of a dispatch) erases the event's notifications.
    fail_last_attempt_now(&app, unsettled_created)?;
    app.dispatch_until(10, |n| n["data"].is_null(), unsettled_created)?;
    assert_eq!(
        app.get(&format!("/notifications/{unsettled_deleted}"))?.json()?["data"],
        Value::Null
    );

    // A failed notification could be redelivered: an event with one is not erased by fan-out
    // either, only by the housekeeping.
    let failed = app.create("failed", "2024-11-15")?;
    failing.wait_for(10, |r| r.len() == 3)?;
    let failed_created = notification_of(&app, &failed["id"], "event.created")?;
    fail_last_attempt_now(&app, failed_created)?;
    delete(&failed)?;
    let failed_deleted = notification_of(&app, &failed["id"], "event.deleted")?;
    let fanned_out = wait_for_resource(&app, &format!("/notifications/{failed_deleted}"), 10, |n| {
        n["status"] != "pending"
    })?;
    assert_eq!(fanned_out["data"]["title"], "failed");
    app.dispatch_until(10, |n| n["data"].is_null(), failed_deleted)?;
    assert_eq!(
        app.get(&format!("/notifications/{failed_created}"))?.json()?["data"],
        Value::Null
    );
    Ok(())
}

/// A deletion past `retention_days` whose event still has a notification pending is kept, with
/// the event's content, until the housekeeping erases the event (once none of its notifications
/// is pending), and only then goes. Deleted first, it would take with it the one row that says
/// the event is gone, and the pending notification's content would stay for good.
#[e2e::test]
fn retention_keeps_a_deletion_until_its_event_is_erased() -> TestResult {
    // 0.0001 days: 8.64 s.
    let app = App::start_with(postgres(), |options| {
        options
            .variable("retention_days", "0.0001")
            .variable("delivery_schedule", "1h")
    })?;
    let failing = WebhookReceiver::answering(Answer::Status(500));
    app.subscribe(&failing, Some(&["event.created"]))?;
    let witness = app.create("witness", "2024-11-15")?;
    let lingering = app.create("lingering", "2024-11-15")?;
    failing.wait_for(10, |r| r.len() == 2)?;
    let deleted = app.send("DELETE", &format!("/events/{}", lingering["id"]), &[], None)?;
    ensure!(deleted.status == 204, "delete: {}", deleted.status);
    let created = notification_of(&app, &lingering["id"], "event.created")?;
    let deletion = notification_of(&app, &lingering["id"], "event.deleted")?;
    let fanned_out = wait_for_resource(&app, &format!("/notifications/{deletion}"), 10, |n| {
        n["status"] != "pending"
    })?;
    assert_eq!(fanned_out["status"], "delivered");
    assert_eq!(fanned_out["data"]["title"], "lingering");
    // Nobody takes an update: delivered at fan-out, after the deletion, its going shows that a
    // housekeeping ran with both past the retention.
    let patched = app.send(
        "PATCH",
        &format!("/events/{}", witness["id"]),
        &[("content-type", "application/json")],
        Some(r#"{"title": "witness, patched"}"#),
    )?;
    ensure!(patched.status == 200, "patch: {}", patched.status);
    let update = notification_of(&app, &witness["id"], "event.updated")?;

    // Past the retention: the update goes, the deletion stays with its content, since its
    // event's creation is still pending.
    let age: f64 = app
        .sql(&format!(
            "SELECT extract(epoch FROM (now() AT TIME ZONE 'utc') - created_at) FROM notifications WHERE id = {update}"
        ))?
        .parse()?;
    std::thread::sleep(Duration::from_secs_f64((8.64 - age).max(0.0) + 0.5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.count(&format!("notifications WHERE id = {update}"))? > 0 {
        ensure!(Instant::now() < deadline, "the delivered update was kept");
        app.dispatch()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let kept = app.get(&format!("/notifications/{deletion}"))?.json()?;
    assert_eq!(kept["data"]["title"], "lingering", "{kept:#}");

    // The creation fails: the housekeeping erases the event, then the deletion goes.
    fail_last_attempt_now(&app, created)?;
    app.dispatch_until(10, |n| n["data"].is_null(), created)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.count(&format!("notifications WHERE id = {deletion}"))? > 0 {
        ensure!(Instant::now() < deadline, "the erased deletion was kept");
        app.dispatch()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        app.count(&format!(
            "notifications WHERE event_id = {} AND (title IS NOT NULL OR description IS NOT NULL)",
            lingering["id"]
        ))?,
        0
    );
    Ok(())
}

/// `sql/012_erase_what_retention_left.sql` erases the content an earlier retention left: the
/// notifications of an event that is gone with no deletion left (made here as that retention
/// left them: the event's row deleted in SQL, so no deletion exists), none of them pending.
/// A pending one, and a live event's, keep theirs.
#[e2e::test]
fn a_migration_erases_what_an_earlier_retention_left() -> TestResult {
    let app = App::start()?;
    let id_of = |event: &Value| event["id"].as_i64().context("id");
    let left = id_of(&app.create("left behind", "2024-11-15")?)?;
    let live = id_of(&app.create("live", "2024-11-15")?)?;
    settle(&app, 10)?;
    app.wait_until_no_dispatch()?;
    hold_dispatch(&app)?;
    let waiting = id_of(&app.create("waiting", "2024-11-15")?)?;
    app.sql(&format!("DELETE FROM events WHERE id IN ({left}, {waiting})"))?;

    app.sql(include_str!("../../../sql/012_erase_what_retention_left.sql"))?;
    let titles = app.sql(
        "SELECT string_agg(event_id || ':' || status || ':' || coalesce(title, 'erased'), ',' ORDER BY id)
         FROM notifications",
    )?;
    assert_eq!(
        titles,
        format!("{left}:delivered:erased,{live}:delivered:live,{waiting}:pending:waiting")
    );
    Ok(())
}

/// Events titled `titles`, created while `failing` (subscribed to creations, answering 500
/// with a schedule of "1h") makes each creation fail, then deleted together; their deletions
/// fanned out (nobody takes them) and not erased, since the creations could be redelivered, and
/// no housekeeping run since (the dispatch that fans them out does its housekeeping first).
/// Each event's id and its creation's.
fn deleted_after_failed_creations(
    app: &App,
    failing: &WebhookReceiver,
    titles: &[&str],
) -> Result<Vec<(i64, i64)>> {
    let mut events = Vec::new();
    for title in titles {
        let id = app.create(title, "2024-11-15")?["id"].as_i64().context("id")?;
        let created = notification_of(app, id, "event.created")?;
        failing.wait_for(10, |r| r.iter().any(|r| r.json()["data"]["title"] == *title))?;
        fail_last_attempt_now(app, created)?;
        events.push((id, created));
    }
    app.wait_until_no_dispatch()?;
    hold_dispatch(app)?;
    for (id, _) in &events {
        let deleted = app.send("DELETE", &format!("/events/{id}"), &[], None)?;
        ensure!(deleted.status == 204, "delete: {}", deleted.status);
    }
    let_dispatch(app)?;
    for ((id, _), title) in events.iter().zip(titles) {
        let deletion = notification_of(app, id, "event.deleted")?;
        let fanned_out = wait_for_resource(app, &format!("/notifications/{deletion}"), 10, |n| {
            n["status"] != "pending"
        })?;
        ensure!(fanned_out["data"]["title"] == *title, "{fanned_out:#}");
    }
    Ok(events)
}

/// A redelivery that comes while the housekeeping erases the event (played here in a session
/// of the test's, with the erasure's update, stopped before it commits) waits for the erasure
/// and is then refused: nothing is made pending without its content.
#[e2e::test]
fn a_redelivery_during_an_erasure_is_refused() -> TestResult {
    let app = App::start_with(postgres(), |options| options.variable("delivery_schedule", "1h"))?;
    let failing = WebhookReceiver::answering(Answer::Status(500));
    app.subscribe(&failing, Some(&["event.created"]))?;
    let [(id, created)] = deleted_after_failed_creations(&app, &failing, &["erased"])?[..] else {
        anyhow::bail!("one event expected")
    };
    let mut erasure = postgres().session(&app.database)?;
    erasure.run(&format!(
        "BEGIN;
         UPDATE notifications SET title = NULL, description = NULL
         WHERE event_id = {id} AND title IS NOT NULL;"
    ))?;
    std::thread::scope(|scope| -> Result<()> {
        let redelivery =
            scope.spawn(|| app.send("POST", &format!("/notifications/{created}/redeliver"), &[], None));
        eventually(10, "the redelivery waits for the erasure", || {
            Ok(app.waiting(Role::NotifyFn)? == 1)
        })?;
        erasure.run("COMMIT;")?;
        let answer = redelivery
            .join()
            .map_err(|_| anyhow::anyhow!("the redelivery panicked"))??;
        assert_problem(&answer, 409, &[])?;
        Ok(())
    })?;
    let notification = app.get(&format!("/notifications/{created}"))?.json()?;
    assert_eq!(notification["status"], "failed", "{notification:#}");
    assert_eq!(notification["data"], Value::Null);
    Ok(())
}

/// A redelivery in progress (played here in a session of the test's, with the redelivery's
/// statements, stopped before it commits) keeps the housekeeping from erasing its event, which
/// erases the other deleted events meanwhile. Once committed, the redelivery is sent with the
/// event's content, and only then is the event erased.
#[e2e::test]
fn an_erasure_passes_over_an_event_being_redelivered() -> TestResult {
    let app = App::start_with(postgres(), |options| options.variable("delivery_schedule", "1h"))?;
    let failing = WebhookReceiver::answering(Answer::Status(500));
    app.subscribe(&failing, Some(&["event.created"]))?;
    let [(_, created), (_, other)] =
        deleted_after_failed_creations(&app, &failing, &["redelivered", "other"])?[..]
    else {
        anyhow::bail!("two events expected")
    };
    let mut redelivery = postgres().session(&app.database)?;
    redelivery.run(&format!(
        "BEGIN;
         SELECT id FROM notifications WHERE id = {created} FOR NO KEY UPDATE;
         UPDATE deliveries SET status = 'pending', failures = 0,
             next_attempt_at = (now() AT TIME ZONE 'utc'), leased_until = NULL, claim = NULL
         WHERE notification_id = {created} AND status = 'failed';
         UPDATE notifications
         SET pending_deliveries = pending_deliveries + 1, failed_deliveries = failed_deliveries - 1
         WHERE id = {created};"
    ))?;
    // The housekeeping at the start of a dispatch erases the other event, not this one.
    app.dispatch_until(10, |n| n["data"].is_null(), other)?;
    let kept = app.get(&format!("/notifications/{created}"))?.json()?;
    assert_eq!(kept["data"]["title"], "redelivered", "{kept:#}");

    failing.script(&[Answer::Status(204)]);
    let attempts = failing.received().len();
    redelivery.run("COMMIT;")?;
    app.dispatch_until(10, |n| n["status"] == "delivered", created)?;
    let sent = failing.received();
    ensure!(
        sent.len() == attempts + 1,
        "{} attempts after the redelivery",
        sent.len() - attempts
    );
    assert_eq!(sent[attempts].json()["data"]["title"], "redelivered");
    app.dispatch_until(10, |n| n["data"].is_null(), created)?;
    Ok(())
}

/// Deleting a subscription while a dispatch has attempts to it in flight drops its
/// deliveries, pending ones included, leaves its notifications' statuses right, and neither
/// fails nor holds up the dispatch: the in-flight results are simply not recorded.
#[e2e::test]
fn a_subscription_deleted_mid_round_stops_without_failing_the_round() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options.variable("delivery_timeout_ms", "3000")
    })?;
    let silent = WebhookReceiver::answering(Answer::Silence);
    let healthy = WebhookReceiver::start();
    let id = app.subscribe(&silent, None)?["id"].as_i64().context("id")?;
    app.subscribe(&healthy, None)?;
    hold_dispatch(&app)?;
    for n in 0..10 {
        app.create(&format!("round {n}"), "2024-11-15")?;
    }
    let_dispatch(&app)?;
    silent.wait_for(10, |r| r.len() == 4)?;
    healthy.wait_for(10, |r| r.len() == 10)?;
    let holder = app.sql("SELECT coalesce(holder, '') FROM dispatcher")?;
    ensure!(!holder.is_empty(), "no dispatch is busy");
    assert_eq!(
        app.send("DELETE", &format!("/subscriptions/{id}"), &[], None)?
            .status,
        204
    );
    assert_eq!(app.count(&format!("deliveries WHERE subscription_id = {id}"))?, 0);
    assert_eq!(app.count("notifications WHERE status = 'delivered'")?, 10);
    // The dispatch goes on while the deleted subscription's attempts are still in flight ...
    app.create("meanwhile", "2024-11-15")?;
    healthy.wait_for(5, |r| r.len() == 11)?;
    // ... and after they ended, unrecorded.
    app.devhost
        .wait_for_output(|log| log.contains("its claim is no longer current"))?;
    app.create("afterwards", "2024-11-15")?;
    healthy.wait_for(10, |r| r.len() == 12)?;
    settle(&app, 10)?;
    assert_eq!(silent.received().len(), 4);
    assert_eq!(app.count("delivery_attempts")?, 12);
    ensure!(
        !app.devhost.output().contains("dispatch stopped"),
        "{}",
        app.devhost.output()
    );
    Ok(())
}

/// Expires the leases under an attempt in flight (the dispatcher's and the delivery's, the
/// retry due at once), as when a dispatcher stalls past its lease, and asks for a dispatch:
/// another dispatcher claims the delivery again.
fn steal_claim(app: &App) -> Result<()> {
    app.sql("UPDATE deliveries SET leased_until = (now() AT TIME ZONE 'utc') - interval '1 second', next_attempt_at = (now() AT TIME ZONE 'utc') WHERE status = 'pending'")?;
    app.sql("UPDATE dispatcher SET held_until = '-infinity'")?;
    app.dispatch()
}

/// A result is recorded under the token of the claim that made the attempt: once the lease
/// expired and another dispatcher claimed the delivery again, the first attempt's late result
/// changes nothing, whether the newer claim has delivered by then or is still under way.
#[e2e::test]
fn a_stale_claim_cannot_overwrite_a_newer_result() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options.variable("delivery_timeout_ms", "3000")
    })?;
    let receiver = WebhookReceiver::start();
    let id = app.subscribe(&receiver, None)?["id"].as_i64().context("id")?;
    let is_stale = |attempt: &Value| {
        attempt["status_code"].is_null()
            && attempt["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no result recorded"))
    };

    // The newer claim delivers before the stale attempt ends.
    receiver.script(&[Answer::Silence]);
    app.create("delivered first", "2024-11-15")?;
    receiver.wait_for(10, |r| r.len() == 1)?;
    steal_claim(&app)?;
    receiver.wait_for(10, |r| r.len() == 2)?;
    let first: i64 = app.sql("SELECT max(id) FROM notifications")?.parse()?;
    app.dispatch_until(10, |n| n["status"] == "delivered", first)?;
    app.devhost
        .wait_for_output(|log| log.contains("its claim is no longer current"))?;
    let detail = app.get(&format!("/notifications/{first}"))?.json()?;
    assert_eq!(detail["status"], "delivered");
    let delivery = &detail["deliveries"][0];
    assert_eq!(delivery["status"], "delivered");
    let [stale, newer] = attempts(delivery) else {
        anyhow::bail!("{delivery:#}");
    };
    ensure!(is_stale(stale), "{stale:#}");
    assert_eq!(newer["status_code"], 200);
    let health = app.get(&format!("/subscriptions/{id}"))?.json()?["health"].clone();
    assert_eq!(health["consecutive_failed_attempts"], 0, "{health:#}");
    assert_eq!(health["failing_since"], Value::Null);

    // The stale attempt ends while the newer claim's is still under way.
    app.wait_until_no_dispatch()?;
    receiver.script(&[Answer::Silence, Answer::Silence]);
    app.create("still under way", "2024-11-15")?;
    receiver.wait_for(10, |r| r.len() == 3)?;
    steal_claim(&app)?;
    receiver.wait_for(10, |r| r.len() == 4)?;
    let second: i64 = app.sql("SELECT max(id) FROM notifications")?.parse()?;
    let delivered = app.dispatch_until(20, |n| n["status"] == "delivered", second)?;
    let delivery = &delivered["deliveries"][0];
    let [stale, timed_out, newest] = attempts(delivery) else {
        anyhow::bail!("{delivery:#}");
    };
    ensure!(is_stale(stale), "{stale:#}");
    ensure!(
        timed_out["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no answer within")),
        "{timed_out:#}"
    );
    assert_eq!(newest["status_code"], 200);
    assert_eq!(receiver.received().len(), 5);
    Ok(())
}

/// An attempt counts when it is claimed: a dispatcher that stops in the middle of the last one
/// leaves the delivery failed once its lease expires, not to be attempted again forever.
#[e2e::test]
fn an_attempt_cut_short_by_a_stopped_dispatcher_still_counts() -> TestResult {
    let split = Split::start()?;
    let options = |options: DevhostOptions| {
        options
            .variable("delivery_schedule", "")
            .variable("delivery_timeout_ms", "60000")
    };
    let notify = split.notify(options)?;
    let receiver = WebhookReceiver::answering(Answer::Silence);
    notify.subscribe(&receiver, None)?;
    split.events.create("cut short", "2024-11-15")?;
    receiver.wait_for(10, |r| r.len() == 1)?;
    drop(notify);
    let notify = split.notify(options)?;
    notify.sql("UPDATE deliveries SET leased_until = (now() AT TIME ZONE 'utc') - interval '1 second'")?;
    notify.sql("UPDATE dispatcher SET holder = NULL, held_until = '-infinity'")?;
    let id: i64 = notify.sql("SELECT max(id) FROM notifications")?.parse()?;
    let failed = notify.dispatch_until(10, |n| n["status"] == "failed", id)?;
    let delivery = &failed["deliveries"][0];
    assert_eq!(delivery["status"], "failed");
    let [attempt] = attempts(delivery) else {
        anyhow::bail!("{delivery:#}");
    };
    ensure!(
        attempt["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no result recorded")),
        "{attempt:#}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.received().len(), 1);
    Ok(())
}

/// A subscriber that never answers holds `delivery_concurrency` attempts in flight and no
/// more, and the others' deliveries never wait for it.
#[e2e::test]
fn a_slow_endpoint_holds_only_its_own_slots() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options.variable("delivery_timeout_ms", "60000")
    })?;
    let silent = WebhookReceiver::answering(Answer::Silence);
    let healthy = WebhookReceiver::start();
    app.subscribe(&silent, None)?;
    app.subscribe(&healthy, None)?;
    hold_dispatch(&app)?;
    for n in 0..20 {
        app.create(&format!("backlog {n}"), "2024-11-15")?;
    }
    let_dispatch(&app)?;
    healthy.wait_for(10, |r| r.len() == 20)?;
    // With the silent subscriber's attempts in flight, a new change still arrives at once.
    let written = Instant::now();
    app.create("fresh", "2024-11-15")?;
    healthy.wait_for(10, |r| r.len() == 21)?;
    let latency = written.elapsed();
    ensure!(latency < Duration::from_secs(2), "took {latency:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(silent.received().len(), 4, "delivery_concurrency is 4");
    assert_eq!(
        app.count("deliveries WHERE status = 'pending' AND leased_until IS NOT NULL")?,
        4
    );
    Ok(())
}

/// The destination rules hold at send time too: a subscription the configuration no longer
/// allows is not sent to, and new ones like it are refused.
#[e2e::test]
fn a_destination_no_longer_allowed_is_not_sent_to() -> TestResult {
    let split = Split::start()?;
    let receiver = WebhookReceiver::start();
    split.notify(|options| options)?.subscribe(&receiver, None)?;
    let notify = split.notify(|options| options.variable("allow_private_webhooks", "false"))?;
    split.events.create("refused", "2024-11-15")?;
    let id: i64 = notify.sql("SELECT max(id) FROM notifications")?.parse()?;
    let detail = notify.dispatch_until(
        10,
        |n| n["deliveries"][0]["attempts"][0]["duration_ms"].is_number(),
        id,
    )?;
    let attempt = &detail["deliveries"][0]["attempts"][0];
    ensure!(
        attempt["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not sent: the URL must not point at")),
        "{attempt:#}"
    );
    std::thread::sleep(Duration::from_millis(300));
    ensure!(receiver.received().is_empty());
    for url in [
        "http://hooks/",
        "http://hooks.internal/",
        "http://db.default.svc.cluster.local/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[::ffff:10.0.0.1]/",
        "http://198.18.0.1/",
    ] {
        assert_problem(
            &notify.json_post("/subscriptions", &json!({ "url": url }))?,
            400,
            &["url"],
        )
        .with_context(|| url.to_owned())?;
    }
    Ok(())
}
