//! The write path's hand-off to notify-fn (issue 14): a write answers its client before it
//! hands off, and hands off only when no dispatcher holds the lease, with the lease's release
//! and a write's decision forced to interleave both ways.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{
    Answer, App, HttpResponse, NOTIFY_TOKEN, Received, Role, StubServer, TestResult, WebhookReceiver,
    eventually, postgres,
};
use serde_json::json;

/// The app with event-fn's hand-offs going to `notify` (a stub), waiting for it up to
/// `timeout_ms`.
fn app_handing_off_to(notify: &StubServer, timeout_ms: &str) -> Result<App> {
    let notify_url = format!("http://127.0.0.1:{}", notify.port());
    App::start_with(postgres(), |options| {
        options
            .variable("notify_url", &notify_url)
            .variable("notify_timeout_ms", timeout_ms)
    })
}

/// Sends a request and how long its whole answer (status, headers and body) took.
fn timed(send: impl FnOnce() -> Result<HttpResponse>) -> Result<(HttpResponse, Duration)> {
    let started = Instant::now();
    let response = send()?;
    Ok((response, started.elapsed()))
}

/// notify-fn never answers the hand-off: every write still gets its whole answer at once, and
/// the hand-off is made after it, one per change.
#[e2e::test]
fn writes_answer_before_the_hand_off() -> TestResult {
    let notify = StubServer::answering(Answer::Silence);
    let app = app_handing_off_to(&notify, "20000")?;
    // Well under the 20 s the hand-off may wait, with room for a loaded machine.
    let prompt = Duration::from_secs(5);
    let (created, took) = timed(|| app.post(&json!({"title": "t", "date": "2024-11-15"})))?;
    ensure!(created.status == 201, "{} {}", created.status, created.body);
    ensure!(took < prompt, "POST answered after {took:?}");
    let id = created.json()?["id"].as_i64().context("id")?;
    let path = format!("/events/{id}");
    let writes: [(&str, &str, u16); 3] = [
        ("PUT", r#"{"title": "u", "date": "2024-11-16"}"#, 200),
        ("PATCH", r#"{"title": "v"}"#, 200),
        ("DELETE", "", 204),
    ];
    for (method, body, status) in writes {
        let body = (!body.is_empty()).then_some(body);
        let (response, took) =
            timed(|| app.send(method, &path, &[("content-type", "application/json")], body))?;
        ensure!(
            response.status == status,
            "{method}: {} {}",
            response.status,
            response.body
        );
        ensure!(took < prompt, "{method} answered after {took:?}");
    }
    // Each change handed off after its answer, and notify-fn has answered none of them.
    let received = notify.wait_for(10, |r| r.len() == 4)?;
    for request in &received {
        ensure!(
            request.method == "POST" && request.path == "/notifications/dispatch",
            "{request:?}"
        );
        ensure!(
            request.headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {NOTIFY_TOKEN}")),
            "{request:?}"
        );
    }
    Ok(())
}

/// The dispatcher lease's holder ("" when nobody holds it).
fn holder(app: &App) -> Result<String> {
    app.sql("SELECT coalesce(holder, '') FROM dispatcher")
}

/// The app with a subscribed receiver, and the lease given to `holder` until now `until` (an
/// interval added or taken away: in the past, a holder that vanished).
fn app_with_lease_held(holder: &str, until: &str) -> Result<(App, WebhookReceiver)> {
    let app = App::start()?;
    let receiver = WebhookReceiver::start();
    app.subscribe(&receiver, None)?;
    app.sql(&format!(
        "UPDATE dispatcher SET holder = '{holder}', held_until = (now() AT TIME ZONE 'utc') {until}"
    ))?;
    Ok((app, receiver))
}

/// Whether the receiver got a notification of an event titled `title`.
fn got(received: &[Received], title: &str) -> bool {
    received.iter().any(|r| r.json()["data"]["title"] == title)
}

/// The lease's holder vanished (its lease expired without a release): the next write finds no
/// dispatcher and hands off, and that hand-off's dispatch delivers it.
#[e2e::test]
fn a_write_after_the_lease_expired_hands_off() -> TestResult {
    let (app, receiver) = app_with_lease_held("crashed", "- interval '1 second'")?;
    app.create("After the crash", "2024-11-15")?;
    let received = receiver.wait_for(10, |r| got(r, "After the crash"))?;
    ensure!(received.iter().all(|r| r.signature_valid));
    ensure!(
        holder(&app)? != "crashed",
        "the lease stayed with the vanished holder"
    );
    app.wait_until_no_dispatch()
}

/// A write that found the lease held and has not committed yet, while the holder tries to give
/// the lease up: the holder keeps it until the write commits, then delivers the write's
/// notification; the write makes no hand-off. The test stops the write (the real event-fn) on a
/// lock of its own, on the event's row, after the write has share-locked the lease; then it
/// stops the holder (the real notify-fn) after its last fan-out, lets the write commit, and lets
/// the holder go on to its release, which must find the write's notification.
#[e2e::test]
fn a_release_waits_for_a_write_that_saw_the_lease() -> TestResult {
    let notify = StubServer::answering(Answer::Status(202));
    let app = App::start_with(postgres(), |options| {
        options
            .variable("notify_url", &format!("http://127.0.0.1:{}", notify.port()))
            .variable("delivery_timeout_ms", "2000")
    })?;
    let receiver = WebhookReceiver::start();
    app.subscribe(&receiver, None)?;
    let event = app.create("Created", "2024-11-15")?;
    let id = event["id"].as_i64().context("id")?;
    notify.wait_for(10, |r| r.len() == 1)?;

    // A dispatch holds the lease: its first attempt waits for a receiver that never answers.
    receiver.script(&[Answer::Silence]);
    let mut session = postgres().session(&app.database)?;
    session.run(&format!(
        "BEGIN; SELECT id FROM events WHERE id = {id} FOR UPDATE;"
    ))?;
    app.dispatch()?;
    receiver.wait_for(10, |r| !r.is_empty())?;
    let busy = holder(&app)?;
    ensure!(!busy.is_empty(), "no dispatch holds the lease");

    std::thread::scope(|scope| -> Result<()> {
        let patch = scope.spawn(|| {
            app.send(
                "PATCH",
                &format!("/events/{id}"),
                &[("content-type", "application/json")],
                Some(r#"{"title": "Patched"}"#),
            )
        });
        // The write has read the lease (held) and waits for the event's row.
        eventually(10, "the write waits for the event's row", || {
            Ok(app.waiting(Role::EventFn)? == 1)
        })?;
        // The attempt times out, its retry is delivered: the holder is idle and tries to give
        // the lease up, again and again, while the write is uncommitted.
        receiver.wait_for(10, |r| r.len() >= 2)?;
        std::thread::sleep(Duration::from_millis(500));
        ensure!(
            holder(&app)? == busy,
            "the lease was given up while a write that saw it held was uncommitted"
        );
        // The holder's next look writes the attempt log (a claim, or the record of its last
        // attempt) after its fan-out: it waits there while the write commits, so the write's
        // notification is committed after the holder's last fan-out and before its release.
        let mut attempt_log = postgres().session(&app.database)?;
        attempt_log.run("BEGIN; LOCK TABLE delivery_attempts IN SHARE MODE;")?;
        eventually(10, "the holder waits for the attempt log", || {
            Ok(app.waiting(Role::NotifyFn)? == 1)
        })?;
        session.run("COMMIT;")?;
        let patched = patch
            .join()
            .map_err(|_| anyhow::anyhow!("the PATCH panicked"))??;
        ensure!(patched.status == 200, "{} {}", patched.status, patched.body);
        attempt_log.run("COMMIT;")?;
        Ok(())
    })?;
    let received = receiver.wait_for(10, |r| got(r, "Patched"))?;
    ensure!(received.iter().all(|r| r.signature_valid));
    app.wait_until_no_dispatch()?;
    ensure!(
        notify.received().len() == 1,
        "the write handed off: {:?}",
        notify.received()
    );
    Ok(())
}

/// A release that holds the dispatcher row `FOR UPDATE` when a write comes: the write waits
/// for it, then finds the lease given up and hands off, and that hand-off delivers it. For each
/// of the three writes (each takes the lease in its own function). The test plays the release in
/// its own session, with notify-fn's statements, stopped before it commits; the write is the
/// real event-fn.
#[e2e::test]
fn a_write_during_a_release_hands_off() -> TestResult {
    for (method, status) in [("POST", 201), ("PATCH", 200), ("DELETE", 204)] {
        let (app, receiver) = app_with_lease_held("releasing", "+ interval '1 hour'")?;
        // The event to change, with no notification: one waiting to be fanned out would keep
        // the release from giving the lease up.
        let id = app.sql(
            "INSERT INTO events (title, date) VALUES ('During the release', '2024-11-15') RETURNING id",
        )?;
        let requests_before: i64 = app.sql("SELECT requests FROM dispatcher")?.parse()?;
        let mut session = postgres().session(&app.database)?;
        session.run(
            "BEGIN;
             SELECT holder FROM dispatcher WHERE holder = 'releasing' FOR UPDATE SKIP LOCKED;
             UPDATE dispatcher SET holder = NULL, held_until = '-infinity'
             WHERE holder = 'releasing'
               AND NOT EXISTS (SELECT 1 FROM notifications WHERE fanned_out_at IS NULL);",
        )?;
        std::thread::scope(|scope| -> Result<()> {
            let write = scope.spawn(|| match method {
                "POST" => app.post(&json!({"title": "During the release", "date": "2024-11-15"})),
                "PATCH" => app.send(
                    "PATCH",
                    &format!("/events/{id}"),
                    &[("content-type", "application/json")],
                    Some(r#"{"description": "Patched during the release"}"#),
                ),
                _ => app.send("DELETE", &format!("/events/{id}"), &[], None),
            });
            eventually(10, "the write waits for the release", || {
                Ok(app.waiting(Role::EventFn)? == 1)
            })?;
            session.run("COMMIT;")?;
            let written = write
                .join()
                .map_err(|_| anyhow::anyhow!("the {method} panicked"))??;
            ensure!(
                written.status == status,
                "{method}: {} {}",
                written.status,
                written.body
            );
            Ok(())
        })?;
        let received = receiver.wait_for(10, |r| got(r, "During the release"))?;
        ensure!(received.iter().all(|r| r.signature_valid));
        let requests: i64 = app.sql("SELECT requests FROM dispatcher")?.parse()?;
        ensure!(requests > requests_before, "{method}: no hand-off was counted");
        app.wait_until_no_dispatch()?;
    }
    Ok(())
}
