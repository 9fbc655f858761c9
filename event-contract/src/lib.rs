//! What event-fn and notify-fn agree on, and nothing else: the published form of an event (the
//! API's representation and a notification's `data`) and the kinds of change.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

/// An event as clients and webhook receivers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// A stored UTC timestamp as RFC 3339 with microseconds.
pub fn rfc3339_utc(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The kind of change a notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Created,
    Updated,
    Deleted,
}

impl ChangeType {
    pub const ALL: [ChangeType; 3] = [ChangeType::Created, ChangeType::Updated, ChangeType::Deleted];

    /// The notification `type` (also the CloudEvents `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Created => "event.created",
            ChangeType::Updated => "event.updated",
            ChangeType::Deleted => "event.deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// As its notification `type`.
impl Serialize for ChangeType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_types_round_trip() {
        for t in ChangeType::ALL {
            assert_eq!(ChangeType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ChangeType::parse("event.exploded"), None);
    }

    #[test]
    fn change_types_serialize_as_their_type() {
        let json = serde_json::to_string(&ChangeType::ALL).expect("serializable");
        assert_eq!(json, r#"["event.created","event.updated","event.deleted"]"#);
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let at = chrono::NaiveDate::from_ymd_opt(2024, 11, 15)
            .and_then(|d| d.and_hms_micro_opt(9, 5, 3, 42))
            .expect("valid");
        assert_eq!(rfc3339_utc(at), "2024-11-15T09:05:03.000042Z");
    }
}
