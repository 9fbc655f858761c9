//! What a webhook receiver gets: a CloudEvents 1.0 JSON event, signed as the Standard Webhooks
//! specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use event_contract::{ChangeType, EventData};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";

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

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the secret's decoded bytes.
pub fn signature(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD
        .decode(key)
        .map_err(|e| format!("the signing secret is not base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_signature() {
        // The example of the Standard Webhooks specification.
        let signature = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
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
