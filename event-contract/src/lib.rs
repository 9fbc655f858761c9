//! What event-fn and notify-fn agree on, and nothing else: the published form of an event (the
//! API's representation and a notification's `data`) and the kinds of change.

use chrono::format::{Fixed, Item, Numeric, Pad};
use chrono::{NaiveDateTime, NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

/// An event as clients and webhook receivers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// When on `date` (issue 15); all null for an all-day event.
    #[serde(flatten)]
    pub times: EventTimes,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// The optional time fields of an event: null for an all-day event on `date`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTimes {
    /// `HH:MM` (or `HH:MM:SS`), local time in `time_zone`.
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    /// An IANA name, e.g. `Europe/Berlin`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `YYYY-MM-DD`: the last day of an event that ends on a later day than `date`.
    #[serde(default)]
    pub end_date: Option<String>,
}

/// A time of day as events show it: `HH:MM`, with `:SS` only when the seconds are not zero.
pub fn time_of_day(time: NaiveTime) -> String {
    let items = if time.second() == 0 {
        &HOURS_MINUTES[..]
    } else {
        &HOURS_MINUTES_SECONDS[..]
    };
    time.format_with_items(items.iter()).to_string()
}

/// A stored UTC timestamp as RFC 3339 with microseconds.
pub fn rfc3339_utc(at: NaiveDateTime) -> String {
    at.format_with_items(RFC3339_MICROSECONDS.iter()).to_string()
}

// The patterns above as chrono's items, written out as constants: formatting with a pattern
// parses it on every call, and a page of events shows two timestamps each (bench/README.md).
// The tests check each against its pattern.

/// `%H:%M`
const HOURS_MINUTES: [Item<'static>; 3] = [
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
];

/// `%H:%M:%S`
const HOURS_MINUTES_SECONDS: [Item<'static>; 5] = [
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Second, Pad::Zero),
];

/// `%Y-%m-%dT%H:%M:%S%.6fZ`
const RFC3339_MICROSECONDS: [Item<'static>; 13] = [
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Literal("-"),
    Item::Numeric(Numeric::Day, Pad::Zero),
    Item::Literal("T"),
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Literal(":"),
    Item::Numeric(Numeric::Second, Pad::Zero),
    Item::Fixed(Fixed::Nanosecond6),
    Item::Literal("Z"),
];

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
    fn times_of_day_keep_seconds_only_when_there_are_some() {
        let at = |h, m, s| NaiveTime::from_hms_opt(h, m, s).expect("valid");
        assert_eq!(time_of_day(at(9, 5, 0)), "09:05");
        assert_eq!(time_of_day(at(23, 59, 59)), "23:59:59");
    }

    #[test]
    fn the_time_fields_are_members_of_the_event() {
        let data = EventData {
            id: 1,
            title: "t".into(),
            description: None,
            date: "2024-11-15".into(),
            times: EventTimes {
                start_time: Some("09:00".into()),
                time_zone: Some("Europe/Berlin".into()),
                ..EventTimes::default()
            },
            created_at: "c".into(),
            updated_at: "u".into(),
        };
        let json = serde_json::to_value(&data).expect("serializable");
        assert_eq!(json["start_time"], "09:00");
        assert_eq!(json["end_time"], serde_json::Value::Null);
        let back: EventData = serde_json::from_value(json).expect("deserializable");
        assert_eq!(back, data);
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let at = chrono::NaiveDate::from_ymd_opt(2024, 11, 15)
            .and_then(|d| d.and_hms_micro_opt(9, 5, 3, 42))
            .expect("valid");
        assert_eq!(rfc3339_utc(at), "2024-11-15T09:05:03.000042Z");
    }

    #[test]
    fn the_items_are_their_patterns() {
        use chrono::format::StrftimeItems;
        for (pattern, items) in [
            ("%H:%M", &HOURS_MINUTES[..]),
            ("%H:%M:%S", &HOURS_MINUTES_SECONDS[..]),
            ("%Y-%m-%dT%H:%M:%S%.6fZ", &RFC3339_MICROSECONDS[..]),
        ] {
            assert_eq!(
                StrftimeItems::new(pattern).collect::<Vec<_>>(),
                items,
                "{pattern}"
            );
        }
    }
}
