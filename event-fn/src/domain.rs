//! The event as the API accepts it: request bodies are parsed here into types that cannot hold
//! an invalid value, collecting every bad field with the reason.

use chrono::{Datelike, NaiveDate};
use serde_json::{Map, Value};

use http_kit::FieldError;

use crate::schedule::{EventTime, EventZone, Schedule, TimeFields};

pub const TITLE_MAX_CHARS: usize = 100;
pub const DESCRIPTION_MAX_CHARS: usize = 5000;

/// PostgreSQL's `text` cannot hold U+0000: text containing it is a client error, never a
/// failed statement.
pub fn reject_nul(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err("must not contain the NUL character (U+0000)".into());
    }
    Ok(())
}

/// A title: a string, not blank, at most 100 characters, no NUL; stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventTitle(String);

impl EventTitle {
    pub fn parse(raw: &str) -> Result<Self, String> {
        reject_nul(raw)?;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be blank".into());
        }
        if trimmed.chars().count() > TITLE_MAX_CHARS {
            return Err(format!("must be at most {TITLE_MAX_CHARS} characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description: at most 5,000 characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventDescription(String);

impl EventDescription {
    pub fn parse(raw: &str) -> Result<Self, String> {
        reject_nul(raw)?;
        if raw.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(format!("must be at most {DESCRIPTION_MAX_CHARS} characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A calendar date written exactly as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventDate(NaiveDate);

impl EventDate {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bytes = raw.as_bytes();
        let shaped = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shaped {
            return Err("must be a date written YYYY-MM-DD".into());
        }
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .filter(|date| date.year() >= 1)
            .map(Self)
            .ok_or_else(|| "is not a real calendar date".to_owned())
    }

    pub fn from_date(date: NaiveDate) -> Self {
        Self(date)
    }

    pub fn date(&self) -> NaiveDate {
        self.0
    }
}

/// `YYYY-MM-DD`: chrono's own rendering of a date (the same as `%Y-%m-%d` for the years 1 to
/// 9999 that `parse` accepts, without interpreting a format string for every date shown).
impl std::fmt::Display for EventDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl serde::Serialize for EventDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The content of an event, as `POST` creates it and `PUT` replaces it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventInput {
    pub title: EventTitle,
    pub description: Option<EventDescription>,
    pub date: EventDate,
    /// Absent fields serialize to nothing, so an all-day event's fingerprint is the same as
    /// before the time fields existed (idempotency records stay valid across the upgrade).
    #[serde(flatten)]
    pub schedule: Schedule,
}

/// A JSON merge patch (RFC 7396) of an event: absent fields stay, `null` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPatch {
    pub title: Option<EventTitle>,
    pub description: Option<Option<EventDescription>>,
    pub date: Option<EventDate>,
    pub start_time: Option<Option<EventTime>>,
    pub end_time: Option<Option<EventTime>>,
    pub time_zone: Option<Option<EventZone>>,
    pub end_date: Option<Option<EventDate>>,
}

impl EventPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.description.is_none() && !self.moves()
    }

    /// Whether the patch changes when the event happens: then the merged event must be checked
    /// as a whole (a new date can fall into a daylight-saving gap of the event's time).
    pub fn moves(&self) -> bool {
        self.date.is_some()
            || self.start_time.is_some()
            || self.end_time.is_some()
            || self.time_zone.is_some()
            || self.end_date.is_some()
    }

    /// The event `current` becomes with this patch, if it holds together.
    pub fn merged(&self, current: &EventInput) -> Result<EventInput, Vec<FieldError>> {
        let date = self.date.unwrap_or(current.date);
        let was = current.schedule.fields();
        let schedule = Schedule::check(
            date,
            TimeFields {
                start_time: self.start_time.unwrap_or(was.start_time),
                end_time: self.end_time.unwrap_or(was.end_time),
                time_zone: self.time_zone.clone().unwrap_or(was.time_zone),
                end_date: self.end_date.unwrap_or(was.end_date),
            },
        )?;
        Ok(EventInput {
            title: self.title.clone().unwrap_or_else(|| current.title.clone()),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| current.description.clone()),
            date,
            schedule,
        })
    }
}

const FIELDS: [&str; 7] = [
    "title",
    "description",
    "date",
    "start_time",
    "end_time",
    "time_zone",
    "end_date",
];

impl EventInput {
    /// Parses a full event: `title` and `date` required, the others optional or null.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let object = as_object(body)?;
        let mut errors = unknown_fields(object);
        let title = required(object, "title", &mut errors)
            .and_then(|v| field(v, "title", &mut errors, EventTitle::parse));
        let description = optional(object, "description", &mut errors, EventDescription::parse);
        let date = required(object, "date", &mut errors)
            .and_then(|v| field(v, "date", &mut errors, EventDate::parse));
        let times = TimeFields {
            start_time: optional(object, "start_time", &mut errors, EventTime::parse),
            end_time: optional(object, "end_time", &mut errors, EventTime::parse),
            time_zone: optional(object, "time_zone", &mut errors, EventZone::parse),
            end_date: optional(object, "end_date", &mut errors, EventDate::parse),
        };
        let (Some(title), Some(date)) = (title, date) else {
            return Err(errors);
        };
        // The rules between fields only once each field is valid: no second error for one
        // mistake.
        if !errors.is_empty() {
            return Err(errors);
        }
        let schedule = Schedule::check(date, times)?;
        Ok(Self {
            title,
            description,
            date,
            schedule,
        })
    }

    /// The canonical form of the input, to tell a retried request from a different one.
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl EventPatch {
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let object = as_object(body)?;
        let mut errors = unknown_fields(object);
        let mut patch = EventPatch::default();
        match object.get("title") {
            None => {}
            Some(Value::Null) => errors.push(FieldError::new("title", "cannot be removed: it is required")),
            Some(v) => patch.title = field(v, "title", &mut errors, EventTitle::parse),
        }
        patch.description = clearable(object, "description", &mut errors, EventDescription::parse);
        match object.get("date") {
            None => {}
            Some(Value::Null) => errors.push(FieldError::new("date", "cannot be removed: it is required")),
            Some(v) => patch.date = field(v, "date", &mut errors, EventDate::parse),
        }
        patch.start_time = clearable(object, "start_time", &mut errors, EventTime::parse);
        patch.end_time = clearable(object, "end_time", &mut errors, EventTime::parse);
        patch.time_zone = clearable(object, "time_zone", &mut errors, EventZone::parse);
        patch.end_date = clearable(object, "end_date", &mut errors, EventDate::parse);
        if errors.is_empty() { Ok(patch) } else { Err(errors) }
    }
}

/// An optional field of a full event: absent or null is `None`.
fn optional<T>(
    object: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    match object.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => field(v, name, errors, parse),
    }
}

/// An optional field of a merge patch: absent (`None`, keep), null (`Some(None)`, clear) or a
/// value; an invalid value is recorded and kept as absent.
fn clearable<T>(
    object: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
    parse: fn(&str) -> Result<T, String>,
) -> Option<Option<T>> {
    match object.get(name) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => field(v, name, errors, parse).map(Some),
    }
}

/// `q`: text the title contains (any case), at most as long as a title; empty is no search.
pub fn title_search(value: &str) -> Result<Option<String>, String> {
    if value.chars().count() > TITLE_MAX_CHARS {
        return Err(format!("must be at most {TITLE_MAX_CHARS} characters"));
    }
    reject_nul(value)?;
    Ok(Some(value.to_owned()).filter(|q| !q.is_empty()))
}

/// `from` and `to` bound a range of dates, both inclusive: `to` not before `from`.
pub fn range_error(from: Option<EventDate>, to: Option<EventDate>) -> Option<FieldError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => Some(FieldError::new("to", "must not be before from")),
        _ => None,
    }
}

/// Which events a calendar holds (`GET /events.ics`, a feed): by `date` from and to (both
/// inclusive) and text the title contains, as `GET /events` filters them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarFilter {
    pub from: Option<EventDate>,
    pub to: Option<EventDate>,
    pub title_contains: Option<String>,
}

const FEED_FIELDS: [&str; 3] = ["q", "from", "to"];

impl CalendarFilter {
    /// A feed's filter from a `POST /feeds` body: `q`, `from`, `to`, each optional or null.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let object = as_object(body)?;
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|key| !FEED_FIELDS.contains(&key.as_str()))
            .map(|key| FieldError::new(key, "is not a field of a feed"))
            .collect();
        let filter = CalendarFilter {
            from: optional(object, "from", &mut errors, EventDate::parse),
            to: optional(object, "to", &mut errors, EventDate::parse),
            title_contains: optional(object, "q", &mut errors, title_search).flatten(),
        };
        errors.extend(range_error(filter.from, filter.to));
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }
}

fn as_object(body: &Value) -> Result<&Map<String, Value>, Vec<FieldError>> {
    body.as_object()
        .ok_or_else(|| vec![FieldError::new("", "the body must be a JSON object")])
}

fn unknown_fields(object: &Map<String, Value>) -> Vec<FieldError> {
    object
        .keys()
        .filter(|key| !FIELDS.contains(&key.as_str()))
        .map(|key| FieldError::new(key, "is not a field of an event"))
        .collect()
}

fn required<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a Value> {
    match object.get(name) {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
        Some(value) => Some(value),
    }
}

/// Parses a string field with `parse`, recording why it is not acceptable.
fn field<T>(
    value: &Value,
    name: &str,
    errors: &mut Vec<FieldError>,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    let Some(text) = value.as_str() else {
        errors.push(FieldError::new(
            name,
            &format!("must be a string, not {}", json_type(value)),
        ));
        return None;
    };
    parse(text)
        .map_err(|reason| errors.push(FieldError::new(name, &reason)))
        .ok()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn titles() {
        assert_eq!(EventTitle::parse("  Weekly  ").unwrap().as_str(), "Weekly");
        assert!(EventTitle::parse("   ").is_err());
        assert!(EventTitle::parse("").is_err());
        assert!(EventTitle::parse(&"x".repeat(100)).is_ok());
        assert!(EventTitle::parse(&"x".repeat(101)).is_err());
        // Characters, not bytes: 100 three-byte characters fit.
        assert!(EventTitle::parse(&"€".repeat(100)).is_ok());
        assert!(EventTitle::parse(&"€".repeat(101)).is_err());
        assert!(EventTitle::parse("a\0b").is_err());
    }

    #[test]
    fn descriptions() {
        assert!(EventDescription::parse(&"é".repeat(5000)).is_ok());
        assert!(EventDescription::parse(&"é".repeat(5001)).is_err());
        assert!(EventDescription::parse("").is_ok());
        assert!(EventDescription::parse("\0").is_err());
    }

    #[test]
    fn dates() {
        // Every date accepted is shown as it was written, the first and last years included.
        for good in ["2024-02-29", "0001-01-01", "0099-12-31", "9999-12-31"] {
            assert_eq!(EventDate::parse(good).unwrap().to_string(), good);
        }
        for bad in [
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-1-1",
            "2024-1-01",
            "2024-01-01T00:00:00Z",
            "2024/01/01",
            "",
            "0000-01-01",
            "+2024-01-1",
            "２０２４-01-01",
        ] {
            assert!(EventDate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_input() {
        let input = EventInput::parse(
            &json!({"title": "Weekly Meeting", "description": "Project discussion", "date": "2024-11-15"}),
        )
        .unwrap();
        assert_eq!(input.title.as_str(), "Weekly Meeting");
        assert_eq!(input.description.unwrap().as_str(), "Project discussion");
        let input =
            EventInput::parse(&json!({"title": "x", "description": null, "date": "2024-11-15"})).unwrap();
        assert_eq!(input.description, None);
    }

    #[test]
    fn full_input_reports_every_bad_field() {
        let errors =
            EventInput::parse(&json!({"description": 5, "date": 20240101, "colour": "red"})).unwrap_err();
        let mut names = fields(errors);
        names.sort();
        assert_eq!(names, ["colour", "date", "description", "title"]);
        assert_eq!(fields(EventInput::parse(&json!([1])).unwrap_err()), [""]);
        assert_eq!(
            fields(EventInput::parse(&json!({"title": "t", "date": null})).unwrap_err()),
            ["date"]
        );
    }

    #[test]
    fn merge_patch() {
        let patch = EventPatch::parse(&json!({"description": null})).unwrap();
        assert_eq!(patch.description, Some(None));
        assert!(patch.title.is_none() && patch.date.is_none());
        let patch = EventPatch::parse(&json!({"title": " New ", "date": "2025-01-31"})).unwrap();
        assert_eq!(patch.title.unwrap().as_str(), "New");
        assert!(EventPatch::parse(&json!({})).unwrap().is_empty());
        assert_eq!(
            fields(EventPatch::parse(&json!({"title": null})).unwrap_err()),
            ["title"]
        );
        assert_eq!(
            fields(EventPatch::parse(&json!({"date": "2025-02-30"})).unwrap_err()),
            ["date"]
        );
        assert_eq!(fields(EventPatch::parse(&json!({"id": 4})).unwrap_err()), ["id"]);
    }

    #[test]
    fn a_patch_that_moves_the_event_is_checked_merged() {
        let current = EventInput::parse(
            &json!({"title": "t", "date": "2025-06-02", "start_time": "02:30", "time_zone": "Europe/Berlin"}),
        )
        .unwrap();
        let patch = EventPatch::parse(&json!({"title": "u"})).unwrap();
        assert!(!patch.moves());
        // The kept 02:30 does not exist on the new date.
        let patch = EventPatch::parse(&json!({"date": "2025-03-30"})).unwrap();
        assert!(patch.moves());
        assert_eq!(fields(patch.merged(&current).unwrap_err()), ["start_time"]);
        // null clears; all three cleared is all-day again.
        let patch = EventPatch::parse(&json!({"start_time": null, "time_zone": null})).unwrap();
        let merged = patch.merged(&current).unwrap();
        assert_eq!(merged.schedule, Schedule::default());
        assert_eq!(merged.title.as_str(), "t");
        let patch = EventPatch::parse(&json!({"time_zone": null})).unwrap();
        assert_eq!(fields(patch.merged(&current).unwrap_err()), ["time_zone"]);
        assert_eq!(
            fields(EventPatch::parse(&json!({"start_time": "24:00", "end_date": 5})).unwrap_err()),
            ["start_time", "end_date"]
        );
    }

    #[test]
    fn all_day_fingerprints_are_what_they_were_before_the_time_fields() {
        let input = EventInput::parse(&json!({"title": "A", "date": "2024-11-15"})).unwrap();
        assert_eq!(
            input.fingerprint(),
            r#"{"title":"A","description":null,"date":"2024-11-15"}"#
        );
    }

    #[test]
    fn fingerprint_ignores_formatting_but_not_content() {
        let a = EventInput::parse(&json!({"date": "2024-11-15", "title": "A "})).unwrap();
        let b = EventInput::parse(&json!({"title": "A", "date": "2024-11-15", "description": null})).unwrap();
        let c = EventInput::parse(&json!({"title": "B", "date": "2024-11-15"})).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
