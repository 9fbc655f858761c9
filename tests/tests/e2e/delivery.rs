//! Webhook delivery (issue 11): the wire format every receiver accepts, per-endpoint isolation,
//! hostile receivers, fencing, backlog semantics, endpoint health, secret rotation, retention
//! and destinations refused at send time.

use anyhow::{Context, Result, ensure};
use e2e::{App, Framing, Received, TestResult, WebhookReceiver};
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
