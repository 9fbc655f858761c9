//! What a webhook receiver gets, and how much of its answer notify-fn takes: a CloudEvents 1.0
//! JSON event, signed as the Standard Webhooks specification says (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`), sent complete with its length; of the answer,
//! the status and at most `MAX_KEPT_BODY` bytes of body, all within the attempt's time limit.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use event_contract::{ChangeType, EventData, rfc3339_utc};
use futures::StreamExt;
use http_kit::with_timeout;
use serde::Serialize;
use spin_sdk::http::{IncomingResponse, Method, Request, send};
use standardwebhooks::Webhook;

use crate::model::{AttemptOutcome, Job, MAX_KEPT_BODY};

/// CloudEvents' structured content mode over HTTP: the whole event, attributes and data, is the
/// JSON body, so a receiver needs no CloudEvents-specific headers and the signature covers
/// every attribute. (Binary mode would put the attributes in `ce-*` headers, which the Standard
/// Webhooks signature does not cover.)
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The `User-Agent` of every webhook request: the product and its version.
pub const USER_AGENT: &str = concat!("event-platform-notify/", env!("CARGO_PKG_VERSION"));

#[derive(Serialize)]
pub struct CloudEvent<'a> {
    pub specversion: &'static str,
    pub id: String,
    pub source: &'static str,
    #[serde(rename = "type")]
    pub kind: ChangeType,
    pub time: String,
    pub datacontenttype: &'static str,
    pub data: &'a EventData,
}

impl<'a> CloudEvent<'a> {
    pub fn new(notification_id: i64, kind: ChangeType, time: String, data: &'a EventData) -> Self {
        Self {
            specversion: "1.0",
            id: notification_id.to_string(),
            source: "/events",
            kind,
            time,
            datacontenttype: "application/json",
            data,
        }
    }
}

/// The `webhook-id` of a notification: the same on every attempt, so receivers can de-duplicate.
pub fn message_id(notification_id: i64) -> String {
    format!("ntf_{notification_id}")
}

/// The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for each
/// secret, space-separated (two while a rotated secret is still honoured), made by the
/// Standard Webhooks reference crate.
pub fn signatures(secrets: &[&str], message_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let signed: Result<Vec<String>, _> = secrets
        .iter()
        .map(|secret| Webhook::new(secret).and_then(|webhook| webhook.sign(message_id, timestamp, body)))
        .collect();
    Ok(signed.map_err(|e| format!("cannot sign: {e}"))?.join(" "))
}

/// POSTs the job's notification as a signed CloudEvent and reads the answer: its status and
/// the start of its body, everything within `timeout` (a receiver that trickles its body is as
/// late as one that never answers). The rest of the body is never read: dropping the response
/// closes the connection. Redirects are not followed (`wasi:http` never does).
pub async fn deliver(job: &Job, timeout: Duration) -> AttemptOutcome {
    let notification = &job.notification;
    let Some(event) = &notification.event else {
        return AttemptOutcome::NoAnswer("not sent: the content was erased (its event was deleted)".into());
    };
    let cloud_event = CloudEvent::new(
        notification.id,
        notification.kind,
        rfc3339_utc(notification.created_at),
        event,
    );
    let body = match serde_json::to_vec(&cloud_event) {
        Ok(body) => body,
        Err(error) => return AttemptOutcome::NoAnswer(format!("cannot serialize the event: {error}")),
    };
    let id = message_id(notification.id);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default() as i64;
    let secrets: Vec<&str> = job.secrets.iter().map(String::as_str).collect();
    let signature = match signatures(&secrets, &id, timestamp, &body) {
        Ok(signature) => signature,
        Err(error) => return AttemptOutcome::NoAnswer(error),
    };
    let request = Request::builder()
        .method(Method::Post)
        .uri(&job.url)
        // The body is complete: with its length declared it is not sent chunked, which many
        // receivers (Python's http.server, WSGI servers, gateways) cannot read.
        .header("content-length", body.len().to_string())
        .header("content-type", CONTENT_TYPE)
        .header("user-agent", USER_AGENT)
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .build();
    exchange(request, timeout).await
}

async fn exchange(request: Request, timeout: Duration) -> AttemptOutcome {
    let started = Instant::now();
    let response = match with_timeout(send::<_, IncomingResponse>(request), timeout).await {
        Some(Ok(response)) => response,
        Some(Err(error)) => return AttemptOutcome::NoAnswer(error.to_string()),
        None => return AttemptOutcome::NoAnswer(format!("no answer within {} ms", timeout.as_millis())),
    };
    let status = response.status();
    match with_timeout(body_start(&response), timeout.saturating_sub(started.elapsed())).await {
        Some(body) => AttemptOutcome::Answered { status, body },
        None => AttemptOutcome::NoAnswer(format!(
            "answered {status}, but no end of its body came within {} ms",
            timeout.as_millis()
        )),
    }
}

/// The first `MAX_KEPT_BODY` bytes of the body (fewer when it ends sooner, or breaks off), as
/// text PostgreSQL can store.
async fn body_start(response: &IncomingResponse) -> String {
    let mut kept = Vec::new();
    let mut stream = response.take_body_stream();
    while kept.len() < MAX_KEPT_BODY {
        match stream.next().await {
            Some(Ok(chunk)) => kept.extend(chunk),
            Some(Err(_)) | None => break,
        }
    }
    kept.truncate(MAX_KEPT_BODY);
    String::from_utf8_lossy(&kept).replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_signature() {
        // The example of the Standard Webhooks specification.
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let signature =
            signatures(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], id, 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // Two secrets, two signatures, the first secret's first.
        let both = signatures(
            &[
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ],
            id,
            1614265330,
            body,
        )
        .unwrap();
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature);
        assert!(parts[1].starts_with("v1,") && parts[1] != signature);
        assert!(signatures(&["whsec_not base64!"], id, 1, body).is_err());
    }

    #[test]
    fn cloud_event_shape() {
        let data = EventData {
            id: 4,
            title: "t".into(),
            description: None,
            date: "2024-11-15".into(),
            times: Default::default(),
            created_at: "2024-11-15T00:00:00.000000Z".into(),
            updated_at: "2024-11-15T00:00:00.000000Z".into(),
        };
        let event = CloudEvent::new(
            9,
            ChangeType::Created,
            "2024-11-15T00:00:01.000000Z".into(),
            &data,
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["id"], "9");
        assert_eq!(json["type"], "event.created");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["data"]["id"], 4);
        assert_eq!(message_id(9), "ntf_9");
    }
}
