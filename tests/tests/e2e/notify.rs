//! Notifications (issue 4): the outbox, signed webhook delivery with retries, dispatch, the
//! subscription and notification APIs, and event-fn and notify-fn deployed apart.

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use e2e::{
    Answer, App, Devhost, HttpResponse, NOTIFY_TOKEN, TOKEN, TestResult, WebhookReceiver, app_options,
    assert_problem, database_name, postgres,
};
use serde_json::{Value, json};

fn notification_types(app: &App) -> Result<Vec<String>> {
    let rows = app.sql("SELECT coalesce(string_agg(type, ',' ORDER BY id), '') FROM notifications")?;
    Ok(rows
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

fn only_notification_id(app: &App) -> Result<i64> {
    Ok(app.sql("SELECT max(id) FROM notifications")?.parse()?)
}

#[e2e::test]
fn one_notification_per_committed_change() -> TestResult {
    let app = App::start()?;
    // This test reads the outbox as the writes left it. A dispatch's housekeeping erases a
    // deleted event's content once none of its notifications is pending (at once, with no
    // subscriber), and a write's hand-off goes out after its answer, so it may start a dispatch
    // after a later write: a lease held by nobody keeps every dispatch away.
    app.sql("UPDATE dispatcher SET holder = 'nobody', held_until = (now() AT TIME ZONE 'utc') + interval '1 hour'")?;
    let created = app.post(&json!({"title": "t", "date": "2024-11-15"}))?;
    let etag = created.header("etag").context("etag")?.to_owned();
    let path = format!("/events/{}", created.json()?["id"]);
    let json_type = ("content-type", "application/json");
    assert_eq!(
        app.send(
            "PUT",
            &path,
            &[json_type],
            Some(r#"{"title": "u", "date": "2024-11-16"}"#)
        )?
        .status,
        200
    );
    assert_eq!(
        app.send("PATCH", &path, &[json_type], Some(r#"{"description": "d"}"#))?
            .status,
        200
    );
    // Rejected writes leave no notification: invalid, stale, unknown, replayed.
    assert_eq!(app.post(&json!({"title": "", "date": "2024-11-15"}))?.status, 400);
    assert_eq!(
        app.send(
            "PUT",
            &path,
            &[json_type, ("if-match", &etag)],
            Some(r#"{"title": "x", "date": "2024-11-16"}"#)
        )?
        .status,
        412
    );
    assert_eq!(app.send("DELETE", "/events/999999", &[], None)?.status, 404);
    assert_eq!(app.send("PATCH", &path, &[json_type], Some("{}"))?.status, 200);
    let keyed = [json_type, ("idempotency-key", "k")];
    assert_eq!(
        app.send(
            "POST",
            "/events",
            &keyed,
            Some(r#"{"title": "k", "date": "2024-11-15"}"#)
        )?
        .status,
        201
    );
    assert_eq!(
        app.send(
            "POST",
            "/events",
            &keyed,
            Some(r#"{"title": "k", "date": "2024-11-15"}"#)
        )?
        .status,
        201
    );
    assert_eq!(app.send("DELETE", &path, &[], None)?.status, 204);
    assert_eq!(
        notification_types(&app)?,
        [
            "event.created",
            "event.updated",
            "event.updated",
            "event.created",
            "event.deleted"
        ]
    );
    // Each carries the event as it is after the change; a delete its last state.
    let last = app.sql(
        "SELECT title || '|' || description || '|' || date FROM notifications ORDER BY id DESC LIMIT 1",
    )?;
    assert_eq!(last, "u|d|2024-11-16");

    let before = app.count("notifications")?;
    std::thread::scope(|scope| {
        for n in 0..50 {
            let app = &app;
            scope.spawn(move || app.create(&format!("concurrent {n}"), "2024-12-01"));
        }
    });
    assert_eq!(app.count("events")?, 51);
    assert_eq!(app.count("notifications")? - before, 50);
    assert_eq!(app.sql("SELECT count(DISTINCT event_id) FROM notifications WHERE type = 'event.created' AND date = '2024-12-01'")?, "50");
    Ok(())
}

#[e2e::test]
fn signed_cloudevents_reach_subscribers() -> TestResult {
    let app = App::start()?;
    let receiver = WebhookReceiver::start();
    let deletions = WebhookReceiver::start();
    app.subscribe(&receiver, None)?;
    app.subscribe(&deletions, Some(&["event.deleted"]))?;
    let created = app.post(&json!({"title": "Launch", "description": "go", "date": "2024-11-15"}))?;
    assert_eq!(created.status, 201);
    let event = created.json()?;
    // The hand-off delivers without waiting for a periodic dispatch.
    let received = receiver.wait_for(10, |r| !r.is_empty())?;
    let delivery = &received[0];
    assert!(delivery.signature_valid, "{delivery:?}");
    let cloud_event = delivery.json();
    let notification_id = only_notification_id(&app)?;
    assert_eq!(cloud_event["specversion"], "1.0");
    assert_eq!(cloud_event["id"], notification_id.to_string());
    assert_eq!(cloud_event["type"], "event.created");
    assert_eq!(cloud_event["source"], "/events");
    assert_eq!(cloud_event["datacontenttype"], "application/json");
    assert!(cloud_event["time"].as_str().unwrap_or_default().ends_with('Z'));
    assert_eq!(cloud_event["data"], event);
    assert_eq!(delivery.webhook_id, format!("ntf_{notification_id}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    assert!(
        (delivery.timestamp.parse::<i64>()? - now).abs() < 60,
        "{}",
        delivery.timestamp
    );
    // The type filter: the deletions subscriber saw nothing of a creation.
    assert!(deletions.received().is_empty());
    // The log line.
    let log_line = |log: &str| {
        log.lines()
            .filter_map(|line| line.strip_prefix("[notify-fn] "))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["notification_id"] == notification_id)
    };
    let log = app.devhost.wait_for_output(|log| log_line(log).is_some())?;
    let line = log_line(&log).context("the log line")?;
    assert_eq!(line["type"], "event.created");
    assert_eq!(line["event"], event);
    let notification = app.dispatch_until(10, |n| n["status"] == "delivered", notification_id)?;
    assert_eq!(notification["deliveries"][0]["attempts"][0]["status_code"], 200);
    assert_eq!(notification["data"], event);

    let path = format!("/events/{}", event["id"]);
    assert_eq!(app.send("DELETE", &path, &[], None)?.status, 204);
    let deleted = deletions.wait_for(10, |r| !r.is_empty())?;
    assert!(deleted[0].signature_valid);
    assert_eq!(deleted[0].json()["type"], "event.deleted");
    assert_eq!(deleted[0].json()["data"]["title"], "Launch");
    receiver.wait_for(10, |r| r.len() == 2)?;
    Ok(())
}

#[e2e::test]
fn retries_keep_the_webhook_id() -> TestResult {
    let app = App::start()?;
    let receiver = WebhookReceiver::start();
    app.subscribe(&receiver, None)?;
    receiver.script(&[Answer::Status(500), Answer::Status(503)]);
    app.create("flaky", "2024-11-15")?;
    let notification_id = only_notification_id(&app)?;
    let notification = app.dispatch_until(20, |n| n["status"] == "delivered", notification_id)?;
    let received = receiver.received();
    assert_eq!(received.len(), 3, "{received:#?}");
    assert!(
        received
            .iter()
            .all(|r| r.signature_valid && r.webhook_id == format!("ntf_{notification_id}"))
    );
    let statuses: Vec<Value> = notification["deliveries"][0]["attempts"]
        .as_array()
        .context("attempts")?
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(statuses, [json!(500), json!(503), json!(200)]);
    let attempts = notification["deliveries"][0]["attempts"]
        .as_array()
        .context("attempts")?;
    assert!(attempts[0]["next_attempt_at"].is_string() && attempts[2]["next_attempt_at"].is_null());
    assert_eq!(notification["deliveries"][0]["status"], "delivered");
    Ok(())
}

#[e2e::test]
fn unanswered_deliveries_fail_and_can_be_redelivered() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options
            .variable("delivery_timeout_ms", "300")
            .variable("delivery_schedule", "100ms")
    })?;
    let receiver = WebhookReceiver::start();
    app.subscribe(&receiver, None)?;
    receiver.script(&[Answer::Silence, Answer::Silence]);
    app.create("silent", "2024-11-15")?;
    let notification_id = only_notification_id(&app)?;
    let failed = app.dispatch_until(20, |n| n["status"] == "failed", notification_id)?;
    let attempts = failed["deliveries"][0]["attempts"]
        .as_array()
        .context("attempts")?;
    assert_eq!(attempts.len(), 2, "{failed:#}");
    assert!(
        attempts
            .iter()
            .all(|a| a["status_code"].is_null()
                && a["error"].as_str().unwrap_or_default().contains("no answer"))
    );
    assert_eq!(failed["deliveries"][0]["status"], "failed");
    let listed = app.get("/notifications?status=failed")?.json()?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let redeliver = app.send(
        "POST",
        &format!("/notifications/{notification_id}/redeliver"),
        &[],
        None,
    )?;
    assert_eq!(redeliver.status, 202);
    let delivered = app.dispatch_until(20, |n| n["status"] == "delivered", notification_id)?;
    assert_eq!(
        delivered["deliveries"][0]["attempts"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.answer == Answer::Status(200))
            .count(),
        1
    );
    assert_problem(
        &app.send("POST", "/notifications/999999/redeliver", &[], None)?,
        404,
        &[],
    )?;
    Ok(())
}

#[e2e::test]
fn two_dispatchers_never_send_an_attempt_twice() -> TestResult {
    let url = postgres().create_database()?;
    let database = database_name(&url)?;
    // Writes hand off to nowhere, so everything waits for the dispatchers.
    let writer = App {
        devhost: Devhost::start(
            app_options(&url, postgres().port())
                .component("event-fn")
                .variable("notify_url", "http://127.0.0.1:1"),
        )?,
        database: database.clone(),
    };
    let dispatchers: Vec<App> = (0..2)
        .map(|_| {
            Ok(App {
                devhost: Devhost::start(app_options(&url, postgres().port()).component("notify-fn"))?,
                database: database.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let receiver = WebhookReceiver::start();
    dispatchers[0].subscribe(&receiver, None)?;
    for n in 0..40 {
        writer.create(&format!("e{n}"), "2024-11-15")?;
    }
    // The dispatcher lease would let one dispatch at a time work: expire it over and over, so
    // that dispatches overlap and only the claims on deliveries keep them apart.
    let expiring = std::sync::atomic::AtomicBool::new(true);
    let received = std::thread::scope(|scope| {
        scope.spawn(|| {
            while expiring.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = dispatchers[0].sql("UPDATE dispatcher SET held_until = '-infinity'");
            }
        });
        // Each of them asks again as soon as its dispatch ends, as the periodic trigger would:
        // a dispatch whose lease was taken over finishes its attempts and stops, so without a
        // next request the deliveries left would wait for one that never comes.
        for dispatcher in &dispatchers {
            for _ in 0..4 {
                let expiring = &expiring;
                scope.spawn(move || {
                    while expiring.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = dispatcher.dispatch();
                    }
                });
            }
        }
        let received = receiver.wait_for(20, |r| r.len() >= 40);
        expiring.store(false, std::sync::atomic::Ordering::Relaxed);
        received
    })?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let received_after = receiver.received();
    assert_eq!(received_after.len(), received.len());
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for delivery in &received_after {
        assert!(delivery.signature_valid);
        *per_id.entry(delivery.webhook_id.clone()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 40);
    assert!(per_id.values().all(|count| *count == 1), "{per_id:?}");
    assert_eq!(
        dispatchers[1].sql("SELECT count(*) FROM delivery_attempts")?,
        "40"
    );
    Ok(())
}

/// While another dispatch holds the dispatcher lease, a write makes no hand-off (the holder
/// sees its notification) and a dispatch request is only counted (that dispatch makes another
/// pass for it); a holder that vanished loses the lease when it expires.
#[e2e::test]
fn one_dispatch_at_a_time_and_a_vanished_one_is_replaced() -> TestResult {
    let app = App::start()?;
    let receiver = WebhookReceiver::start();
    app.subscribe(&receiver, None)?;
    app.sql("UPDATE dispatcher SET holder = 'another', held_until = (now() AT TIME ZONE 'utc') + interval '1 hour'")?;
    let requests_before: i64 = app.sql("SELECT requests FROM dispatcher")?.parse()?;
    app.create("Held", "2024-11-15")?;
    // A hand-off goes out after the write's answer: give it time to be counted, if it were made.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        app.sql("SELECT requests FROM dispatcher")?.parse::<i64>()?,
        requests_before,
        "the write handed off while the lease was held"
    );
    app.dispatch()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sql("SELECT requests FROM dispatcher")?.parse::<i64>()? == requests_before {
        ensure!(
            std::time::Instant::now() < deadline,
            "the dispatch request was never counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        app.sql("SELECT count(*) FROM notifications WHERE fanned_out_at IS NULL")?,
        "1"
    );
    assert!(receiver.received().is_empty());
    assert_eq!(app.sql("SELECT holder FROM dispatcher")?, "another");

    // The holder vanished: once its lease has expired, the next dispatch takes over.
    app.sql("UPDATE dispatcher SET held_until = (now() AT TIME ZONE 'utc') - interval '1 second'")?;
    app.dispatch()?;
    let received = receiver.wait_for(10, |r| !r.is_empty())?;
    assert_eq!(received[0].json()["data"]["title"], "Held");
    // ... and gives the lease up when done.
    app.wait_until_no_dispatch()
}

/// A write while a dispatch is busy makes no hand-off, and the busy dispatch, which looks for
/// notifications waiting to be fanned out, makes another pass for it: the second event arrives
/// with no other dispatch asked for.
#[e2e::test]
fn a_write_during_a_pass_gets_another_pass() -> TestResult {
    // The attempt's timeout is the window in which the first dispatch is busy: long enough for
    // the checks below on a loaded machine (the test ends as soon as the second event arrives).
    let app = App::start_with(postgres(), |options| {
        options.variable("delivery_timeout_ms", "60000")
    })?;
    let receiver = WebhookReceiver::start();
    app.subscribe(&receiver, Some(&["event.created"]))?;
    // The first delivery is never answered: the pass waits for the attempt's timeout.
    receiver.script(&[Answer::Silence]);
    app.create("First", "2024-11-15")?;
    receiver.wait_for(10, |r| !r.is_empty())?;
    let busy = app.sql("SELECT coalesce(holder, '') FROM dispatcher")?;
    ensure!(!busy.is_empty(), "no dispatch is busy");
    let requests_before: i64 = app.sql("SELECT requests FROM dispatcher")?.parse()?;
    app.create("Second", "2024-11-15")?;
    let received = receiver.wait_for(10, |r| r.iter().any(|d| d.json()["data"]["title"] == "Second"))?;
    assert!(received.iter().all(|d| d.signature_valid));
    // The second write found the lease held and made no hand-off (one would have been counted,
    // after the write's answer: given time).
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        app.sql("SELECT requests FROM dispatcher")?.parse::<i64>()?,
        requests_before,
        "the second write handed off"
    );
    // The busy dispatch delivered it: it still holds the lease (its first attempt goes on).
    assert_eq!(app.sql("SELECT coalesce(holder, '') FROM dispatcher")?, busy);
    Ok(())
}

#[e2e::test]
fn split_deployment_with_notify_fn_down() -> TestResult {
    let url = postgres().create_database()?;
    let database = database_name(&url)?;
    let notify_address = format!("127.0.0.1:{}", e2e::free_port());
    let notify_options = || {
        app_options(&url, postgres().port())
            .component("notify-fn")
            .listen(&notify_address)
    };
    let notify = App {
        devhost: Devhost::start(notify_options())?,
        database: database.clone(),
    };
    let events = App {
        devhost: Devhost::start(
            app_options(&url, postgres().port())
                .component("event-fn")
                .variable("notify_url", &format!("http://{notify_address}")),
        )?,
        database: database.clone(),
    };
    // Only each function's own routes are served.
    assert_eq!(events.get("/subscriptions")?.status, 404);
    assert_eq!(notify.get("/events")?.status, 404);
    let receiver = WebhookReceiver::start();
    notify.subscribe(&receiver, None)?;
    // Up: the hand-off over HTTP delivers at once.
    events.create("while up", "2024-11-15")?;
    receiver.wait_for(10, |r| r.len() == 1)?;
    // Stopped between dispatches (one killed mid-dispatch holds the dispatcher lease until it
    // expires, and tests have no periodic trigger to go on after that).
    notify.wait_until_no_dispatch()?;

    drop(notify);
    let started = std::time::Instant::now();
    for n in 0..5 {
        events.create(&format!("while down {n}"), "2024-11-15")?;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "writes waited on the absent notify-fn"
    );
    assert_eq!(events.count("notifications")?, 6);
    assert_eq!(receiver.received().len(), 1);

    let notify = App {
        devhost: Devhost::start(notify_options())?,
        database,
    };
    notify.dispatch()?;
    let received = receiver.wait_for(10, |r| r.len() == 6)?;
    assert!(received.iter().all(|r| r.signature_valid));
    let titles: Vec<String> = received
        .iter()
        .map(|r| r.json()["data"]["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        (0..5).all(|n| titles.contains(&format!("while down {n}"))),
        "{titles:?}"
    );
    Ok(())
}

#[e2e::test]
fn subscription_api_validation_and_auth() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options.variable("allow_private_webhooks", "false")
    })?;
    let created = app.json_post(
        "/subscriptions",
        &json!({"url": "https://hooks.example.com/in", "types": ["event.created"]}),
    )?;
    assert_eq!(created.status, 201, "{}", created.body);
    let subscription = created.json()?;
    let id = subscription["id"].as_i64().context("id")?;
    assert_eq!(
        created.header("location"),
        Some(format!("/subscriptions/{id}").as_str())
    );
    assert!(
        subscription["secret"]
            .as_str()
            .unwrap_or_default()
            .starts_with("whsec_")
    );
    assert_eq!(subscription["types"], json!(["event.created"]));
    let other = app
        .json_post("/subscriptions", &json!({"url": "https://hooks.example.com/all"}))?
        .json()?;
    assert_ne!(other["secret"], subscription["secret"]);
    assert_eq!(other["types"], Value::Null);
    // The secret is shown only at creation.
    let listed = app.get("/subscriptions")?.json()?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(
        listed
            .as_array()
            .context("array")?
            .iter()
            .all(|s| s.get("secret").is_none())
    );
    let read = app.get(&format!("/subscriptions/{id}"))?;
    assert_eq!(read.status, 200);
    assert!(read.json()?.get("secret").is_none());
    assert_eq!(
        app.send("DELETE", &format!("/subscriptions/{id}"), &[], None)?
            .status,
        204
    );
    assert_problem(&app.get(&format!("/subscriptions/{id}"))?, 404, &[])?;
    assert_problem(&app.get("/subscriptions/abc")?, 404, &[])?;

    for (body, field) in [
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "ftp://files.example.com/"}), "url"),
        (json!({"url": "http://127.0.0.1:8080/hook"}), "url"),
        (json!({"url": "http://169.254.169.254/latest/meta-data"}), "url"),
        (json!({"url": "http://localhost/hook"}), "url"),
        (
            json!({"url": "https://hooks.example.com", "types": ["event.exploded"]}),
            "types",
        ),
        (json!({"types": ["event.created"]}), "url"),
        (
            json!({"url": "https://hooks.example.com", "secret": "mine"}),
            "secret",
        ),
    ] {
        assert_problem(&app.json_post("/subscriptions", &body)?, 400, &[field])
            .with_context(|| body.to_string())?;
    }
    assert_problem(
        &app.send(
            "POST",
            "/subscriptions",
            &[("content-type", "text/plain")],
            Some("{}"),
        )?,
        415,
        &[],
    )?;
    assert_eq!(app.count("subscriptions")?, 1);

    // The public API needs the API token; the internal route only the notify token.
    let anonymous = HttpResponse::send(app.devhost.request("GET", "/subscriptions"))?;
    assert_problem(&anonymous, 401, &[])?;
    let internal_with_public = HttpResponse::send(
        app.devhost
            .request("POST", "/notifications/dispatch")
            .header("authorization", format!("Bearer {TOKEN}")),
    )?;
    assert_problem(&internal_with_public, 401, &[])?;
    let public_with_internal = HttpResponse::send(
        app.devhost
            .request("GET", "/subscriptions")
            .header("authorization", format!("Bearer {NOTIFY_TOKEN}")),
    )?;
    assert_problem(&public_with_internal, 401, &[])?;
    let dispatch_get = HttpResponse::send(
        app.devhost
            .request("GET", "/notifications/dispatch")
            .header("authorization", format!("Bearer {NOTIFY_TOKEN}")),
    )?;
    assert_problem(&dispatch_get, 405, &[])?;
    Ok(())
}

#[e2e::test]
fn notification_api_filters_and_pages() -> TestResult {
    let app = App::start()?;
    let first = app.create("a", "2024-11-15")?["id"].as_i64().context("id")?;
    app.create("b", "2024-11-15")?;
    app.send(
        "PATCH",
        &format!("/events/{first}"),
        &[("content-type", "application/json")],
        Some(r#"{"title": "a2"}"#),
    )?;
    let all = app.get("/notifications")?.json()?;
    assert_eq!(all.as_array().map(Vec::len), Some(3));
    let of_first = app.get(&format!("/notifications?event_id={first}"))?.json()?;
    let types: Vec<&str> = of_first
        .as_array()
        .context("array")?
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert_eq!(types, ["event.created", "event.updated"]);
    assert_eq!(of_first[1]["data"]["title"], "a2");
    // Nobody subscribes: delivered as soon as dispatch has logged them.
    let last = only_notification_id(&app)?;
    app.dispatch_until(10, |n| n["status"] == "delivered", last)?;
    assert_eq!(
        app.get("/notifications?status=delivered")?
            .json()?
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let page = app.get("/notifications?limit=2")?;
    assert_eq!(page.json()?.as_array().map(Vec::len), Some(2));
    let link = page.header("link").context("link")?;
    let next = link.trim_start_matches('<').split('>').next().context("uri")?;
    let rest = app.get(next)?.json()?;
    assert_eq!(rest.as_array().map(Vec::len), Some(1));
    assert_eq!(rest[0]["id"], last);
    for query in ["status=lost", "event_id=x", "limit=0", "cursor=%%%"] {
        let field = query.split('=').next().unwrap_or_default();
        assert_problem(&app.get(&format!("/notifications?{query}"))?, 400, &[field])
            .with_context(|| query.to_owned())?;
    }
    assert_problem(&app.get("/notifications/999999")?, 404, &[])?;
    assert_problem(&app.send("DELETE", "/notifications", &[], None)?, 405, &[])?;
    Ok(())
}

#[e2e::test]
fn receiver_rejects_bad_signatures() -> TestResult {
    // The receiver the tests trust must itself refuse a forged delivery.
    let receiver = WebhookReceiver::start();
    receiver.set_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let client = reqwest::blocking::Client::new();
    let send = |signature: &str| {
        client
            .post(receiver.url())
            .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
            .header("webhook-timestamp", "1614265330")
            .header("webhook-signature", signature)
            .body(r#"{"test": 2432232314}"#)
            .send()
            .map(|r| r.status().as_u16())
    };
    assert_eq!(send("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")?, 200);
    assert_eq!(send("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE")?, 401);
    assert_eq!(send("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")?, 401);
    Ok(())
}
