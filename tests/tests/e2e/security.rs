//! Tokens and bodies (issue 12), through the compiled components on devhost: configured tokens
//! shorter than 32 bytes are a misconfiguration, only spaces and tabs surround a token, a
//! second token per realm for rotation, a read-only token, and bodies read only after the
//! token was checked and only up to 64 KiB.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{Devhost, HttpResponse};
use serde_json::json;

use e2e::{App, NOTIFY_TOKEN, TOKEN, TestResult, app_options, assert_problem, database_name, postgres};

const NEXT_TOKEN: &str = "e2e-next-api-token-of-at-least-32-bytes";
const NEXT_NOTIFY_TOKEN: &str = "e2e-next-notify-token-of-at-least-32-bytes";
const READ_TOKEN: &str = "e2e-read-only-token-of-at-least-32-bytes";
const LIMIT: usize = 64 * 1024;

/// `method path` with `Authorization: Bearer token`.
fn with_token(app: &App, method: &str, path: &str, token: &str) -> Result<HttpResponse> {
    HttpResponse::send(
        app.devhost
            .request(method, path)
            .header("authorization", format!("Bearer {token}")),
    )
}

fn dispatch_with(app: &App, token: &str) -> Result<HttpResponse> {
    with_token(app, "POST", "/notifications/dispatch", token)
}

/// A token variable set too short (or empty) answers every authenticated request with the
/// misconfiguration problem, even one presenting exactly that value, and logs the variable's
/// name, never its value.
#[e2e::test]
fn short_or_empty_tokens_are_a_misconfiguration() -> TestResult {
    let url = postgres().create_database()?;
    for (variable, value) in [
        ("api_token", "short-api-token-value"),
        ("api_token", ""),
        ("api_token_next", "short-next-token-value"),
        ("api_read_token", "short-read-token-value"),
        ("notify_token", "short-notify-token-value"),
        ("notify_token_next", "short-next-notify-value"),
    ] {
        let app = App {
            devhost: Devhost::start(app_options(&url, postgres().port()).variable(variable, value))?,
            database: database_name(&url)?,
        };
        let presented = if value.is_empty() { TOKEN } else { value };
        let mut responses = vec![
            with_token(&app, "GET", "/subscriptions", presented)?,
            dispatch_with(&app, presented)?,
        ];
        if variable == "notify_token_next" {
            // Only notify-fn reads it; event-fn serves on.
            assert_eq!(with_token(&app, "GET", "/events", TOKEN)?.status, 200);
        } else {
            responses.push(with_token(&app, "GET", "/events", presented)?);
            responses.push(with_token(&app, "GET", "/events", TOKEN)?);
        }
        for response in &responses {
            assert_problem(response, 500, &[]).with_context(|| format!("{variable}={value:?}"))?;
        }
        let log = app
            .devhost
            .wait_for_output(|log| log.contains(&format!("variable {variable} ")))?;
        ensure!(
            value.is_empty() || !log.contains(value),
            "the log shows the value of {variable}:\n{log}"
        );
        // The spec is public and needs no token: it is still served.
        assert_eq!(app.devhost.get("/openapi.yaml")?.status, 200);
    }
    Ok(())
}

/// RFC 9110 allows spaces and tabs around a field value; any other white space (U+00A0, which
/// `str::trim` removes) is part of the token, so `Bearer <token><U+00A0>` is not the token.
#[e2e::test]
fn only_spaces_and_tabs_surround_a_token() -> TestResult {
    let app = App::start()?;
    let send = |value: Vec<u8>| {
        let value = reqwest::header::HeaderValue::from_bytes(&value).context("a header value")?;
        HttpResponse::send(
            app.devhost
                .request("GET", "/events")
                .header("authorization", value),
        )
    };
    for accepted in [format!("Bearer  {TOKEN}"), format!("Bearer \t{TOKEN}\t ")] {
        let response = send(accepted.clone().into_bytes())?;
        assert_eq!(response.status, 200, "{accepted:?}: {}", response.body);
    }
    for refused in [
        format!("Bearer {TOKEN}\u{a0}"),
        format!("Bearer \u{a0}{TOKEN}"),
        "Bearer \u{a0}".to_owned(),
        format!("Bearer {TOKEN}\u{2003}"),
    ] {
        assert_problem(&send(refused.clone().into_bytes())?, 401, &[])
            .with_context(|| format!("{refused:?}"))?;
    }
    Ok(())
}

/// While `*_next` is set, a realm accepts both its tokens; once the operator has moved the new
/// one into the main variable and cleared `*_next`, the old one is refused.
#[e2e::test]
fn both_tokens_of_a_realm_during_rotation() -> TestResult {
    let url = postgres().create_database()?;
    let database = database_name(&url)?;
    let rolling = App {
        devhost: Devhost::start(
            app_options(&url, postgres().port())
                .variable("api_token_next", NEXT_TOKEN)
                .variable("notify_token_next", NEXT_NOTIFY_TOKEN),
        )?,
        database: database.clone(),
    };
    for token in [TOKEN, NEXT_TOKEN] {
        for path in ["/events", "/subscriptions", "/notifications"] {
            assert_eq!(with_token(&rolling, "GET", path, token)?.status, 200, "{path}");
        }
    }
    for token in [NOTIFY_TOKEN, NEXT_NOTIFY_TOKEN] {
        assert_eq!(dispatch_with(&rolling, token)?.status, 202);
    }
    // A realm's tokens are its own: the notify tokens do not open the API, nor the reverse.
    assert_problem(
        &with_token(&rolling, "GET", "/events", NEXT_NOTIFY_TOKEN)?,
        401,
        &[],
    )?;
    assert_problem(&dispatch_with(&rolling, NEXT_TOKEN)?, 401, &[])?;
    // Stopped between dispatches: one killed mid-dispatch would hold the dispatcher lease until
    // it expires.
    rolling.wait_until_no_dispatch()?;
    drop(rolling);

    let rolled = App {
        devhost: Devhost::start(
            app_options(&url, postgres().port())
                .variable("api_token", NEXT_TOKEN)
                .variable("notify_token", NEXT_NOTIFY_TOKEN),
        )?,
        database,
    };
    assert_eq!(with_token(&rolled, "GET", "/events", NEXT_TOKEN)?.status, 200);
    assert_eq!(dispatch_with(&rolled, NEXT_NOTIFY_TOKEN)?.status, 202);
    for path in ["/events", "/subscriptions"] {
        assert_problem(&with_token(&rolled, "GET", path, TOKEN)?, 401, &[])?;
    }
    assert_problem(&dispatch_with(&rolled, NOTIFY_TOKEN)?, 401, &[])?;
    // event-fn hands off with the new notify token: the write's notification is dispatched.
    let created = HttpResponse::send(
        rolled
            .devhost
            .request("POST", "/events")
            .header("authorization", format!("Bearer {NEXT_TOKEN}"))
            .header("content-type", "application/json")
            .body(r#"{"title": "rolled", "date": "2024-11-15"}"#),
    )?;
    assert_eq!(created.status, 201, "{}", created.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rolled.sql("SELECT count(*) FROM notifications WHERE fanned_out_at IS NULL")? != "0" {
        ensure!(
            Instant::now() < deadline,
            "the hand-off was refused:\n{}",
            rolled.devhost.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `api_read_token` reads events, subscriptions and notifications (`GET`, `HEAD`) and does
/// nothing else: every other method is a 403 problem, and nothing changes.
#[e2e::test]
fn a_read_only_token_only_reads() -> TestResult {
    let app = App::start_with(postgres(), |options| {
        options.variable("api_read_token", READ_TOKEN)
    })?;
    let event = app.create("Readable", "2024-11-15")?;
    let subscription = app.sql(
        "INSERT INTO subscriptions (url, secret) \
         VALUES ('https://hooks.example.invalid/x', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') RETURNING id",
    )?;
    let notification: i64 = app.sql("SELECT max(id) FROM notifications")?.parse()?;
    let event_path = format!("/events/{}", event["id"]);
    let subscription_path = format!("/subscriptions/{subscription}");
    let notification_path = format!("/notifications/{notification}");
    for path in [
        "/events",
        event_path.as_str(),
        "/subscriptions",
        subscription_path.as_str(),
        "/notifications",
        notification_path.as_str(),
    ] {
        let read = with_token(&app, "GET", path, READ_TOKEN)?;
        assert_eq!(read.status, 200, "GET {path}: {}", read.body);
        if !path.starts_with("/notifications") {
            // (A notification's deliveries change as the dispatch goes on.)
            assert_eq!(read.body, app.get(path)?.body, "GET {path}");
        }
    }
    for path in ["/events", event_path.as_str()] {
        assert_eq!(
            with_token(&app, "HEAD", path, READ_TOKEN)?.status,
            200,
            "HEAD {path}"
        );
    }
    let json_type = ("content-type", "application/json");
    let event_body = r#"{"title": "Changed", "date": "2024-11-16"}"#;
    for (method, path, body) in [
        ("POST", "/events", Some(event_body)),
        ("PUT", event_path.as_str(), Some(event_body)),
        ("PATCH", event_path.as_str(), Some(r#"{"title": "Changed"}"#)),
        ("DELETE", event_path.as_str(), None),
        ("OPTIONS", "/events", None),
        (
            "POST",
            "/subscriptions",
            Some(r#"{"url": "https://hooks.example.invalid/y"}"#),
        ),
        ("DELETE", subscription_path.as_str(), None),
        ("POST", &format!("{notification_path}/redeliver"), None),
    ] {
        let mut request = app
            .devhost
            .request(method, path)
            .header("authorization", format!("Bearer {READ_TOKEN}"))
            .header(json_type.0, json_type.1);
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        assert_problem(&HttpResponse::send(request)?, 403, &[])
            .with_context(|| format!("{method} {path}"))?;
    }
    // The internal route is not the API's: the read token does not open it.
    assert_problem(&dispatch_with(&app, READ_TOKEN)?, 401, &[])?;
    assert_eq!(app.get(&event_path)?.json()?["title"], "Readable");
    assert_eq!((app.count("events")?, app.count("subscriptions")?), (1, 1));
    Ok(())
}

/// The devhost's `host:port`.
fn address(app: &App) -> Result<String> {
    Ok(app
        .devhost
        .base_url()
        .strip_prefix("http://")
        .context("an http base URL")?
        .to_owned())
}

/// Sends `head` (the request line and headers, without the blank line), then lets `body`
/// write (it may fail once the server stops reading), and reads the response's status line
/// within `within`.
fn raw_exchange(
    app: &App,
    head: &str,
    body: impl FnOnce(&mut TcpStream) + Send + 'static,
    within: Duration,
) -> Result<(u16, String, Duration)> {
    let mut stream = TcpStream::connect(address(app)?)?;
    stream.set_read_timeout(Some(within))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let started = Instant::now();
    stream.write_all(format!("{head}\r\nHost: {}\r\n\r\n", address(app)?).as_bytes())?;
    let mut writer = stream.try_clone()?;
    let writing = std::thread::spawn(move || body(&mut writer));
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(error) => bail!("no response within {within:?}: {error}"),
        }
    }
    let elapsed = started.elapsed();
    // Whatever the body writer is doing, it stops when the connection goes.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = writing.join();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {text:?}"))?;
    Ok((status, text, elapsed))
}

/// A `Content-Length` over 64 KiB is a 413 before any of the body is read: the body never comes,
/// and the answer does not wait for it.
#[e2e::test]
fn a_declared_body_over_the_limit_is_refused_unread() -> TestResult {
    let app = App::start()?;
    for (path, token) in [("/events", TOKEN), ("/subscriptions", TOKEN)] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}",
            LIMIT + 1
        );
        let (status, response, _) = raw_exchange(&app, &head, |_| {}, Duration::from_secs(10))?;
        ensure!(status == 413, "{path}: {response}");
    }
    // Exactly the limit is read.
    let padded = padded_event(LIMIT);
    let (status, response, _) = raw_exchange(
        &app,
        &format!(
            "POST /events HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {LIMIT}"
        ),
        move |stream| {
            let _ = stream.write_all(padded.as_bytes());
        },
        Duration::from_secs(10),
    )?;
    ensure!(status == 201, "{response}");
    assert_eq!(app.count("events")?, 1);
    Ok(())
}

/// A valid event padded with spaces to `size` bytes of JSON.
fn padded_event(size: usize) -> String {
    let event = json!({"title": "padded", "date": "2024-11-15"}).to_string();
    format!("{event}{}", " ".repeat(size - event.len()))
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
    framed.extend_from_slice(data);
    framed.extend_from_slice(b"\r\n");
    framed
}

/// A body without `Content-Length` (chunked) is read up to 64 KiB: one byte more is a 413 at
/// once, without waiting for the rest; exactly 64 KiB is accepted.
#[e2e::test]
fn a_streamed_body_stops_at_the_limit() -> TestResult {
    let app = App::start()?;
    let head = format!(
        "POST /events HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked"
    );
    let over = padded_event(LIMIT + 1);
    let (status, response, _) = raw_exchange(
        &app,
        &head,
        move |stream| {
            for piece in over.as_bytes().chunks(1000) {
                if stream.write_all(&chunk(piece)).is_err() {
                    return;
                }
            }
            // No last chunk: the body never ends, and the answer must not wait for its end.
        },
        Duration::from_secs(10),
    )?;
    ensure!(status == 413, "{response}");
    let exact = padded_event(LIMIT);
    let (status, response, _) = raw_exchange(
        &app,
        &head,
        move |stream| {
            for piece in exact.as_bytes().chunks(1000) {
                let _ = stream.write_all(&chunk(piece));
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        },
        Duration::from_secs(10),
    )?;
    ensure!(status == 201, "{response}");
    assert_eq!(app.count("events")?, 1);
    Ok(())
}

/// A 100 MiB body streamed without a token is refused with 401 from the headers alone: at
/// once, and without devhost's memory growing with the body.
#[e2e::test]
fn an_unauthenticated_huge_body_is_refused_quickly_in_flat_memory() -> TestResult {
    let app = App::start()?;
    // Warm up: the component compiled and instantiated, the pools made.
    app.create("warm", "2024-11-15")?;
    let before = app.devhost.resident_kib()?;
    let ((), peak) = app.devhost.peak_resident_kib(|| refuse_huge_bodies(&app))?;
    ensure!(
        peak < before + 16 * 1024,
        "devhost grew from {before} KiB to {peak} KiB while refusing 300 MiB of bodies"
    );
    // And it still serves.
    assert_eq!(app.get("/events")?.status, 200);
    Ok(())
}

/// Streams 100 MiB without a token to each component, and declares as much once: each a quick
/// 401.
fn refuse_huge_bodies(app: &App) -> Result<()> {
    for path in ["/events", "/subscriptions"] {
        let head =
            format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked");
        let (status, response, elapsed) = raw_exchange(
            app,
            &head,
            |stream| {
                let megabyte = chunk(&vec![b' '; 1024 * 1024]);
                for _ in 0..100 {
                    if stream.write_all(&megabyte).is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n");
            },
            Duration::from_secs(10),
        )?;
        ensure!(status == 401, "{path}: {response}");
        ensure!(
            elapsed < Duration::from_secs(3),
            "{path}: the 401 took {elapsed:?}"
        );
    }
    // The same size declared up front: refused as quickly.
    let (status, response, elapsed) = raw_exchange(
        app,
        &format!(
            "POST /events HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            100 * 1024 * 1024
        ),
        |stream| {
            let megabyte = vec![b' '; 1024 * 1024];
            for _ in 0..100 {
                if stream.write_all(&megabyte).is_err() {
                    return;
                }
            }
        },
        Duration::from_secs(10),
    )?;
    ensure!(status == 401, "{response}");
    ensure!(elapsed < Duration::from_secs(3), "the 401 took {elapsed:?}");
    Ok(())
}
