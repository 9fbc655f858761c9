//! `GET /events` parameters: filters, page size and the opaque keyset cursor.

use http_kit::page::{DEFAULT_LIMIT, decode_cursor, encode_cursor, not_a_cursor, parse_limit};
use http_kit::{FieldError, parse_id};

use crate::domain::{EventDate, range_error, title_search};

/// The position after the last event of a page: pages continue at (date, id) after it, so a
/// walk sees every event once however many are inserted meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub date: EventDate,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        encode_cursor(&format!("{}|{}", self.date, self.id))
    }

    pub fn decode(cursor: &str) -> Result<Self, String> {
        let position = decode_cursor(cursor)?;
        let (date, id) = position.split_once('|').ok_or_else(not_a_cursor)?;
        let date = EventDate::parse(date).map_err(|_| not_a_cursor())?;
        let id = parse_id(id).ok_or_else(not_a_cursor)?;
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
                "q" => list.title_contains = title_search(&value).map_err(&mut reject).ok().flatten(),
                "limit" => match parse_limit(&value) {
                    Ok(limit) => list.limit = limit,
                    Err(detail) => reject(detail),
                },
                "cursor" => list.cursor = Cursor::decode(&value).map_err(&mut reject).ok(),
                _ => {}
            }
        }
        errors.extend(range_error(list.from, list.to));
        if errors.is_empty() { Ok(list) } else { Err(errors) }
    }

    /// The filters as query parameters, for the link to the next page.
    pub fn filters(&self) -> Vec<(&'static str, String)> {
        let mut filters = Vec::new();
        if let Some(from) = self.from {
            filters.push(("from", from.to_string()));
        }
        if let Some(to) = self.to {
            filters.push(("to", to.to_string()));
        }
        if let Some(q) = &self.title_contains {
            filters.push(("q", q.clone()));
        }
        filters
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
        let link = http_kit::page::next_link("/events", &q.filters(), q.limit, &cursor.encode());
        let next_query = link
            .strip_prefix("</events?")
            .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
            .unwrap();
        let next = ListQuery::parse(next_query).unwrap();
        assert_eq!(next.cursor, Some(cursor));
        assert_eq!(next.from, q.from);
        assert_eq!(next.title_contains.as_deref(), Some("a b"));
        assert_eq!(next.limit, 10);
    }
}
