//! Spin 4.0 (issue 16): on Spin 4.0.0-4.0.2 a PostgreSQL `query` that returns no rows never
//! returns, so no query of the components may return none. devhost plays Spin 4.0 with
//! `DEVHOST_EMPTY_QUERY_TRAP=1` (such a query traps the instance, naming the statement); every
//! not-found and empty-list path runs here that way, and answers exactly as on Spin 3.6 (devhost
//! without the option).

use anyhow::{Context, Result, ensure};
use e2e::{Answer, DevhostOptions, HttpResponse, WebhookReceiver};
use serde_json::{Value, json};

use e2e::{App, NOTIFY_TOKEN, TestResult, assert_problem, postgres};

/// devhost as Spin 4.0.0-4.0.2 would be, but loud: a query without rows traps (the suite's
/// default, said here because these tests are about it; `devhost::empty_query_trap_names_the_statement`
/// shows the trap fires).
fn spin_4_0(options: DevhostOptions) -> DevhostOptions {
    options.env("DEVHOST_EMPTY_QUERY_TRAP", "1")
}

/// devhost as Spin 3.6: a query without rows answers no rows.
fn spin_3_6(options: DevhostOptions) -> DevhostOptions {
    options.env("DEVHOST_EMPTY_QUERY_TRAP", "0")
}

const TRAP: &str = "--empty-query-trap";

/// What a request answered, comparable between two apps: the status, the `Allow` and `Link`
/// headers and the body without its timestamps.
#[derive(Debug, PartialEq)]
struct Answered {
    request: String,
    status: u16,
    allow: Option<String>,
    link: Option<String>,
    body: Value,
}

/// A request: method, path, headers, body.
type Step<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

/// Sends each request of `script` to `app`, in order.
fn run(app: &App, script: &[Step]) -> Result<Vec<Answered>> {
    script
        .iter()
        .map(|(method, path, headers, body)| {
            let response = app.send(method, path, headers, *body)?;
            Ok(Answered {
                request: format!("{method} {path}"),
                status: response.status,
                allow: response.header("allow").map(str::to_owned),
                link: response.header("link").map(str::to_owned),
                body: without_timestamps(response.json().unwrap_or(Value::Null)),
            })
        })
        .collect()
}

fn without_timestamps(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(key, _)| !key.ends_with("_at"))
                .map(|(key, value)| (key, without_timestamps(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_timestamps).collect()),
        other => other,
    }
}

/// Runs `script` on an app playing Spin 4.0 and on one as Spin 3.6 (each on a fresh database
/// prepared by `setup`): both must answer the same, and the Spin 4.0 one without a trap.
fn same_on_both(setup: impl Fn(&App) -> Result<()>, script: &[Step]) -> Result<Vec<Answered>> {
    let spin_4 = App::start_with(postgres(), spin_4_0)?;
    let spin_3 = App::start_with(postgres(), spin_3_6)?;
    setup(&spin_4)?;
    setup(&spin_3)?;
    let on_4 = run(&spin_4, script)?;
    let on_3 = run(&spin_3, script)?;
    ensure!(
        !spin_4.devhost.output().contains(TRAP),
        "a query returned no rows:\n{}",
        spin_4.devhost.output()
    );
    for (four, three) in on_4.iter().zip(&on_3) {
        ensure!(
            four == three,
            "Spin 4.0 answered {four:#?}\nSpin 3.6 answered {three:#?}"
        );
    }
    Ok(on_4)
}

fn status_of(answers: &[Answered], request: &str) -> Option<u16> {
    answers.iter().find(|a| a.request == request).map(|a| a.status)
}

#[e2e::test]
fn events_not_found_and_empty_answer_as_on_spin_3_6() -> TestResult {
    let json_type: &[(&str, &str)] = &[("content-type", "application/json")];
    let merge: &[(&str, &str)] = &[("content-type", "application/merge-patch+json")];
    let keyed: &[(&str, &str)] = &[("content-type", "application/json"), ("idempotency-key", "k-1")];
    let event = r#"{"title": "Planning", "date": "2024-11-15"}"#;
    let answers = same_on_both(
        |_| Ok(()),
        &[
            ("GET", "/events", &[], None),
            ("GET", "/events/999999", &[], None),
            ("HEAD", "/events/999999", &[], None),
            ("OPTIONS", "/events/999999", &[], None),
            ("PUT", "/events/999999", json_type, Some(event)),
            ("PATCH", "/events/999999", merge, Some(r#"{"title": "x"}"#)),
            ("PATCH", "/events/999998", merge, Some("{}")),
            ("DELETE", "/events/999999", &[], None),
            // The idempotency look-ups: first use, replay, reuse with another body.
            ("POST", "/events", keyed, Some(event)),
            ("POST", "/events", keyed, Some(event)),
            (
                "POST",
                "/events",
                keyed,
                Some(r#"{"title": "Other", "date": "2024-11-15"}"#),
            ),
            ("GET", "/events?q=nothing-matches", &[], None),
            ("GET", "/events?from=2030-01-01", &[], None),
            ("GET", "/events?limit=1", &[], None),
            ("GET", "/events?limit=1&cursor=MjAyNC0xMS0xNXwx", &[], None),
            ("GET", "/events/1", &[("if-none-match", "\"e1v1\"")], None),
            (
                "PUT",
                "/events/1",
                &[("content-type", "application/json"), ("if-match", "\"e1v9\"")],
                Some(event),
            ),
            ("DELETE", "/events/1", &[("if-match", "\"e1v9\"")], None),
            ("DELETE", "/events/1", &[], None),
            ("GET", "/events", &[], None),
        ],
    )?;
    assert_eq!(answers[0].body, json!([]));
    for request in [
        "GET /events/999999",
        "HEAD /events/999999",
        "OPTIONS /events/999999",
        "PUT /events/999999",
        "PATCH /events/999999",
        "PATCH /events/999998",
        "DELETE /events/999999",
    ] {
        assert_eq!(status_of(&answers, request), Some(404), "{request}");
    }
    let posts: Vec<u16> = answers
        .iter()
        .filter(|a| a.request == "POST /events")
        .map(|a| a.status)
        .collect();
    assert_eq!(posts, [201, 201, 422]);
    for empty in [11, 12, 14] {
        assert_eq!(
            (answers[empty].status, &answers[empty].body),
            (200, &json!([])),
            "{empty}"
        );
    }
    assert_eq!(answers[13].body.as_array().map(Vec::len), Some(1));
    assert_eq!(answers[15].status, 304);
    assert_eq!(
        (answers[16].status, answers[17].status, answers[18].status),
        (412, 412, 204)
    );
    assert_eq!(answers[19].body, json!([]));
    Ok(())
}

#[e2e::test]
fn notifications_not_found_and_empty_answer_as_on_spin_3_6() -> TestResult {
    // One notification, of an event nobody subscribes to: the hand-off's dispatch fans it out
    // to no delivery and marks it delivered.
    let setup = |app: &App| -> Result<()> {
        app.create("Lonely", "2024-11-15")?;
        let done = eventually(|| Ok(app.sql("SELECT status FROM notifications")? == "delivered"))?;
        ensure!(done, "the notification was never fanned out");
        Ok(())
    };
    let answers = same_on_both(
        setup,
        &[
            ("GET", "/subscriptions", &[], None),
            ("GET", "/subscriptions/999999", &[], None),
            ("DELETE", "/subscriptions/999999", &[], None),
            ("GET", "/notifications/999999", &[], None),
            ("POST", "/notifications/999999/redeliver", &[], None),
            ("GET", "/notifications?event_id=999999", &[], None),
            ("GET", "/notifications?status=failed", &[], None),
            ("GET", "/notifications?limit=1&cursor=MQ", &[], None),
            ("GET", "/notifications/1", &[], None),
            ("POST", "/notifications/1/redeliver", &[], None),
        ],
    )?;
    assert_eq!((answers[0].status, &answers[0].body), (200, &json!([])));
    for not_found in &answers[1..=4] {
        assert_eq!(not_found.status, 404, "{not_found:?}");
    }
    for empty in &answers[5..=7] {
        assert_eq!((empty.status, &empty.body), (200, &json!([])), "{empty:?}");
    }
    assert_eq!(answers[8].status, 200);
    assert_eq!(answers[8].body["deliveries"], json!([]));
    assert_eq!(answers[9].status, 202);
    Ok(())
}

fn dispatch(app: &App) -> Result<()> {
    let response = HttpResponse::send(
        app.devhost
            .request("POST", "/notifications/dispatch")
            .header("authorization", format!("Bearer {NOTIFY_TOKEN}")),
    )?;
    assert_problem_free(&response, 202)
}

fn assert_problem_free(response: &HttpResponse, status: u16) -> Result<()> {
    ensure!(
        response.status == status,
        "expected {status}, got {} {}",
        response.status,
        response.body
    );
    Ok(())
}

/// Waits until `holder` (empty: nobody) holds the dispatcher lease.
fn wait_for_holder(app: &App, holder: &str) -> Result<()> {
    let held = eventually(|| Ok(app.sql("SELECT coalesce(holder, '') FROM dispatcher")? == holder))?;
    ensure!(
        held,
        "the dispatcher is not held by {holder:?}; devhost:\n{}",
        app.devhost.output()
    );
    Ok(())
}

/// A dispatch with an empty outbox and nothing due takes the lease, fans out nothing, claims
/// nothing and releases the lease; then one with a notification nobody subscribes to.
#[e2e::test]
fn a_dispatch_with_nothing_due() -> TestResult {
    let app = App::start_with(postgres(), spin_4_0)?;
    let requests = || -> Result<i64> { Ok(app.sql("SELECT requests FROM dispatcher")?.parse()?) };
    let before = requests()?;
    dispatch(&app)?;
    ensure!(
        eventually(|| Ok(requests()? > before))?,
        "the dispatch was never counted"
    );
    wait_for_holder(&app, "")?;
    app.create("Nobody listens", "2024-11-15")?;
    let delivered = eventually(|| Ok(app.sql("SELECT status FROM notifications")? == "delivered"))?;
    ensure!(delivered, "the notification was not fanned out");
    wait_for_holder(&app, "")?;
    // Once more, with everything done.
    dispatch(&app)?;
    wait_for_holder(&app, "")?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    ensure!(!app.devhost.output().contains(TRAP), "{}", app.devhost.output());
    Ok(())
}

/// A dispatch whose lease passes to another while it attempts a delivery: it neither releases
/// the other's lease nor goes on, and renewing its lost lease answers (no rows on Spin 4.0).
#[e2e::test]
fn a_dispatch_that_lost_its_lease() -> TestResult {
    let app = App::start_with(postgres(), spin_4_0)?;
    let receiver = WebhookReceiver::start();
    let subscription = app.send(
        "POST",
        "/subscriptions",
        &[("content-type", "application/json")],
        Some(&json!({ "url": receiver.url() }).to_string()),
    )?;
    assert_problem_free(&subscription, 201)?;
    receiver.set_secret(subscription.json()?["secret"].as_str().context("secret")?);
    // The attempt is never answered: the dispatch waits for its timeout (1 s).
    receiver.script(&[Answer::Silence]);
    app.create("Slow", "2024-11-15")?;
    receiver.wait_for(10, |r| !r.is_empty())?;
    ensure!(
        !app.sql("SELECT coalesce(holder, '') FROM dispatcher")?.is_empty(),
        "no dispatch is busy"
    );
    app.sql("UPDATE dispatcher SET holder = 'another', held_until = (now() AT TIME ZONE 'utc') + interval '1 hour'")?;
    // After the attempt, its release of the lease does nothing and its renewal finds the lease
    // gone: it says so and stops.
    app.devhost
        .wait_for_output(|log| log.contains("lease passed to another dispatch"))?;
    assert_eq!(app.count("delivery_attempts")?, 1);
    assert_eq!(app.sql("SELECT holder FROM dispatcher")?, "another");
    ensure!(!app.devhost.output().contains(TRAP), "{}", app.devhost.output());
    // The API still answers, and a not-found too.
    assert_problem(&app.get("/notifications/999999")?, 404, &[])?;
    Ok(())
}

/// Polls `done` for up to ten seconds: whether it came true.
fn eventually(done: impl Fn() -> Result<bool>) -> Result<bool> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if done()? {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
