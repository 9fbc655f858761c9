//! `GET /events` parameters: filters, page size and the opaque keyset cursor.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::{EventDate, TITLE_MAX_CHARS, reject_nul};
use crate::problem::FieldError;

pub const DEFAULT_LIMIT: u8 = 50;
pub const MAX_LIMIT: u8 = 200;

/// The position after the last event of a page: pages continue at (date, id) after it, so a
/// walk sees every event once however many are inserted meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub date: EventDate,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.date, self.id))
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let invalid = || "is not a cursor this API issued".to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (date, id) = text.split_once('|').ok_or_else(invalid)?;
        let date = EventDate::parse(date).map_err(|_| invalid())?;
        let id = id
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0 && !text.contains('+'))
            .ok_or_else(invalid)?;
        Ok(Self { date, id })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub from: Option<EventDate>,
    pub to: Option<EventDate>,
    pub title_contains: Option<String>,
    pub limit: u8,
    pub cursor: Option<Cursor>,
}

impl ListQuery {
    /// Parses the query string; unknown parameters are ignored, bad values named.
    pub fn parse(query: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut list = ListQuery {
            from: None,
            to: None,
            title_contains: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let mut reject = |detail: String| errors.push(FieldError::new(&name, &detail));
            match name.as_ref() {
                "from" => list.from = EventDate::parse(&value).map_err(&mut reject).ok(),
                "to" => list.to = EventDate::parse(&value).map_err(&mut reject).ok(),
                "q" if value.chars().count() > TITLE_MAX_CHARS => {
                    reject(format!("must be at most {TITLE_MAX_CHARS} characters"))
                }
                "q" => match reject_nul(&value) {
                    Ok(()) => list.title_contains = Some(value.into_owned()).filter(|q| !q.is_empty()),
                    Err(detail) => reject(detail),
                },
                "limit" => match value.parse::<u8>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => list.limit = limit,
                    _ => reject(format!("must be a whole number from 1 to {MAX_LIMIT}")),
                },
                "cursor" => list.cursor = Cursor::decode(&value).map_err(&mut reject).ok(),
                _ => {}
            }
        }
        if let (Some(from), Some(to)) = (list.from, list.to)
            && from > to
        {
            errors.push(FieldError::new("to", "must not be before from"));
        }
        if errors.is_empty() { Ok(list) } else { Err(errors) }
    }

    /// The query string of the page after `cursor`, with the same filters.
    pub fn next_page(&self, cursor: Cursor) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(from) = self.from {
            query.append_pair("from", &from.to_string());
        }
        if let Some(to) = self.to {
            query.append_pair("to", &to.to_string());
        }
        if let Some(q) = &self.title_contains {
            query.append_pair("q", q);
        }
        query.append_pair("limit", &self.limit.to_string());
        query.append_pair("cursor", &cursor.encode());
        query.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(query: &str) -> Vec<String> {
        ListQuery::parse(query)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn defaults() {
        let q = ListQuery::parse("").unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert!(q.from.is_none() && q.to.is_none() && q.cursor.is_none() && q.title_contains.is_none());
        assert!(ListQuery::parse("q=").unwrap().title_contains.is_none());
        assert!(ListQuery::parse("unknown=1").is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(fields("limit=0"), ["limit"]);
        assert_eq!(fields("limit=201"), ["limit"]);
        assert_eq!(fields("limit=abc"), ["limit"]);
        assert_eq!(fields("limit=-1"), ["limit"]);
        assert_eq!(fields("from=2024-02-30&to=x"), ["from", "to"]);
        assert_eq!(fields("from=2024-03-01&to=2024-02-01"), ["to"]);
        assert_eq!(fields("cursor=nope!"), ["cursor"]);
        assert_eq!(fields(&format!("q={}", "x".repeat(101))), ["q"]);
        assert_eq!(fields("q=a%00b"), ["q"]);
    }

    #[test]
    fn cursor_round_trip_and_tampering() {
        let cursor = Cursor {
            date: EventDate::parse("2024-11-15").unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for forged in [
            "MjAyNC0xMS0xNXw",
            "MjAyNC0xMS0xNXwtMQ",
            "MjAyNC0xMy0wMXwx",
            "eA",
            "",
        ] {
            assert!(Cursor::decode(forged).is_err(), "{forged}");
        }
    }

    #[test]
    fn next_page_keeps_filters() {
        let q = ListQuery::parse("from=2024-01-01&q=a%20b&limit=10").unwrap();
        let cursor = Cursor {
            date: EventDate::parse("2024-01-02").unwrap(),
            id: 7,
        };
        let next = ListQuery::parse(&q.next_page(cursor)).unwrap();
        assert_eq!(next.cursor, Some(cursor));
        assert_eq!(next.from, q.from);
        assert_eq!(next.title_contains.as_deref(), Some("a b"));
        assert_eq!(next.limit, 10);
    }
}
