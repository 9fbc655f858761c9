//! Events as an iCalendar object (RFC 5545) that calendar apps subscribe to: a `VCALENDAR` to
//! publish (`METHOD:PUBLISH`) with one `VEVENT` per event.
//!
//! Every property is a content line ended by CRLF and folded at 75 octets without splitting a
//! UTF-8 character; text values are escaped. `DTSTAMP` is the event's last change, not the time
//! of the request, so an unchanged calendar is byte for byte the same and its ETag holds.

use chrono::format::{Item, Numeric, Pad};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::schedule::Span;
use crate::store::Event;

/// The longest content line, in octets, without its CRLF (RFC 5545 section 3.1).
const LINE_OCTETS: usize = 75;

/// The product that wrote the calendar.
const PRODID: &str = "-//event-management//event-fn//EN";

/// How often a subscriber should look again (RFC 7986 `REFRESH-INTERVAL`, and its older
/// Microsoft/Apple spelling `X-PUBLISHED-TTL`).
const REFRESH: &str = "PT1H";

/// Tells a subscriber that the calendar holds only the first events of what it selects.
pub const TRUNCATED_PROPERTY: &str = "X-EVENT-MANAGEMENT-TRUNCATED";

/// A calendar of `events`, named `name`; `truncated` when more events matched than it holds.
pub fn calendar(name: &str, events: &[Event], truncated: bool) -> String {
    let mut out = Lines::default();
    out.line("BEGIN", "VCALENDAR");
    out.line("VERSION", "2.0");
    out.line("PRODID", PRODID);
    out.line("CALSCALE", "GREGORIAN");
    out.line("METHOD", "PUBLISH");
    out.line("NAME", &escape(name));
    out.line("X-WR-CALNAME", &escape(name));
    out.line("REFRESH-INTERVAL;VALUE=DURATION", REFRESH);
    out.line("X-PUBLISHED-TTL", REFRESH);
    if truncated {
        out.line(TRUNCATED_PROPERTY, "TRUE");
    }
    for event in events {
        vevent(&mut out, event);
    }
    out.line("END", "VCALENDAR");
    out.0
}

fn vevent(out: &mut Lines, event: &Event) {
    out.line("BEGIN", "VEVENT");
    out.line("UID", &uid(event.id));
    out.line("DTSTAMP", &utc(event.updated_at));
    out.line("CREATED", &utc(event.created_at));
    out.line("LAST-MODIFIED", &utc(event.updated_at));
    // Version 1 is the event as created; every change adds one.
    out.line("SEQUENCE", &(event.version - 1).max(0).to_string());
    out.line("SUMMARY", &escape(event.title.as_str()));
    if let Some(description) = &event.description {
        out.line("DESCRIPTION", &escape(description.as_str()));
    }
    match event.schedule.span(event.date) {
        Span::AllDay { start, end } => {
            out.line("DTSTART;VALUE=DATE", &day(start));
            out.line("DTEND;VALUE=DATE", &day(end));
        }
        Span::Timed { start, end } => {
            out.line("DTSTART", &instant(start));
            if let Some(end) = end {
                out.line("DTEND", &instant(end));
            }
        }
    }
    out.line("END", "VEVENT");
}

/// The event's UID: its id never changes, nor does this.
pub fn uid(id: i64) -> String {
    format!("event-{id}@event-management")
}

fn utc(at: NaiveDateTime) -> String {
    at.format_with_items(UTC_DATE_TIME.iter()).to_string()
}

fn instant(at: DateTime<Utc>) -> String {
    utc(at.naive_utc())
}

fn day(date: NaiveDate) -> String {
    date.format_with_items(DATE.iter()).to_string()
}

// RFC 5545's forms as chrono's items, written out as constants: formatting with a pattern parses
// it on every call, several times per event (as event_contract's timestamps). The tests check
// each against its pattern.

/// `%Y%m%d` (a DATE)
const DATE: [Item<'static>; 3] = [
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Numeric(Numeric::Day, Pad::Zero),
];

/// `%Y%m%dT%H%M%SZ` (a DATE-TIME in UTC)
const UTC_DATE_TIME: [Item<'static>; 8] = [
    Item::Numeric(Numeric::Year, Pad::Zero),
    Item::Numeric(Numeric::Month, Pad::Zero),
    Item::Numeric(Numeric::Day, Pad::Zero),
    Item::Literal("T"),
    Item::Numeric(Numeric::Hour, Pad::Zero),
    Item::Numeric(Numeric::Minute, Pad::Zero),
    Item::Numeric(Numeric::Second, Pad::Zero),
    Item::Literal("Z"),
];

/// A TEXT value (RFC 5545 section 3.3.11): backslash, semicolon and comma escaped, each line
/// break as `\n`. Other control characters are not allowed in a value and are left out.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            ';' => escaped.push_str("\\;"),
            ',' => escaped.push_str("\\,"),
            '\r' => {
                chars.next_if_eq(&'\n');
                escaped.push_str("\\n");
            }
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push(c),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

/// Content lines being written.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, name: &str, value: &str) {
        fold(&format!("{name}:{value}"), &mut self.0);
    }
}

/// Appends `line` folded (RFC 5545 section 3.1): at most 75 octets per physical line, each
/// continuation starting with a space that counts toward its 75, never splitting a UTF-8
/// character; every physical line ends with CRLF.
pub fn fold(line: &str, out: &mut String) {
    let mut room = LINE_OCTETS;
    let mut used = 0;
    for c in line.chars() {
        if used + c.len_utf8() > room {
            out.push_str("\r\n ");
            room = LINE_OCTETS - 1;
            used = 0;
        }
        out.push(c);
        used += c.len_utf8();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_items_are_their_patterns() {
        use chrono::format::StrftimeItems;
        for (pattern, items) in [("%Y%m%d", &DATE[..]), ("%Y%m%dT%H%M%SZ", &UTC_DATE_TIME[..])] {
            assert_eq!(
                StrftimeItems::new(pattern).collect::<Vec<_>>(),
                items,
                "{pattern}"
            );
        }
    }

    fn folded(line: &str) -> String {
        let mut out = String::new();
        fold(line, &mut out);
        out
    }

    fn physical_lines(text: &str) -> Vec<&str> {
        let body = text.strip_suffix("\r\n").expect("ends with CRLF");
        body.split("\r\n").collect()
    }

    #[test]
    fn short_lines_are_not_folded() {
        assert_eq!(folded("SUMMARY:Weekly"), "SUMMARY:Weekly\r\n");
        let exactly = format!("SUMMARY:{}", "x".repeat(67));
        assert_eq!(exactly.len(), 75);
        assert_eq!(folded(&exactly), format!("{exactly}\r\n"));
    }

    #[test]
    fn long_lines_fold_at_75_octets_with_a_leading_space() {
        let line = format!("SUMMARY:{}", "x".repeat(200));
        let text = folded(&line);
        let lines = physical_lines(&text);
        assert_eq!(lines[0].len(), 75);
        assert!(lines[1..].iter().all(|l| l.starts_with(' ') && l.len() <= 75));
        assert_eq!(lines[1].len(), 75);
        let unfolded: String = text.replace("\r\n ", "");
        assert_eq!(unfolded, format!("{line}\r\n"));
    }

    #[test]
    fn a_four_byte_character_across_the_boundary_moves_whole_to_the_next_line() {
        // 73 octets, then a 4-byte character that would end at octet 77: it starts line two.
        let line = format!("SUMMARY:{}😀tail", "x".repeat(65));
        assert_eq!(line.find('😀'), Some(73));
        let text = folded(&line);
        let lines = physical_lines(&text);
        assert_eq!(lines[0], format!("SUMMARY:{}", "x".repeat(65)));
        assert_eq!(lines[0].len(), 73);
        assert_eq!(lines[1], " 😀tail");
        assert_eq!(text.replace("\r\n ", ""), format!("{line}\r\n"));
        // Exactly at the boundary: octets 72..75 fit, nothing moves.
        let fits = format!("SUMMARY:{}😀", "x".repeat(63));
        assert_eq!(fits.len(), 75);
        assert_eq!(folded(&fits), format!("{fits}\r\n"));
    }

    #[test]
    fn every_line_of_a_long_multibyte_text_is_valid_utf8_within_75_octets() {
        let line = format!("SUMMARY:{}", "€😀é".repeat(40));
        let text = folded(&line);
        for l in physical_lines(&text) {
            assert!(l.len() <= 75, "{} octets", l.len());
        }
        assert_eq!(text.replace("\r\n ", ""), format!("{line}\r\n"));
    }

    #[test]
    fn text_escaping() {
        assert_eq!(escape(r"a\b;c,d"), r"a\\b\;c\,d");
        assert_eq!(escape("one\ntwo\r\nthree\rfour"), r"one\ntwo\nthree\nfour");
        assert_eq!(escape("tab\there\u{7}bell"), "tab\there".to_owned() + "bell");
        assert_eq!(escape("Grüße 😀"), "Grüße 😀");
        assert_eq!(escape(r"\n"), r"\\n");
    }
}
