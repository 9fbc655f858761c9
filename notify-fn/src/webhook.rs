//! What a webhook receiver gets: a CloudEvents 1.0 JSON event, signed as the Standard Webhooks
//! specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

use event_contract::{ChangeType, EventData};
use serde::Serialize;
use standardwebhooks::Webhook;

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
